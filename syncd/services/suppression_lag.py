"""How long opt-outs take to reach the suppression list: ``syncd_suppression_lag_seconds``.

For each number a record puts on the list (a synced record's DoNotCall flag,
source ``do_not_call``; a suppression source's query, labelled with the
source's name) the time from the record's SystemModstamp to the addition is
observed, and an addition later than ``suppression.max_lag`` is counted in
``syncd_suppression_late_total`` (alert ``SyncdSuppressionLate``). History is
not measured: a backfill's reads, and opt-outs made before syncd started
watching the sync or the source (its first poll or read, ``sync_state.created_at``).

``max_lag`` is the configuration's, set once at start-up by
:func:`syncd.bootstrap.bootstrap` (:func:`set_max_lag`); the intake paths that
add numbers run deep inside the poll and need no extra argument for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from syncd.adapters.suppression_store import SuppressionEntry
from syncd.domain.suppression import DO_NOT_CALL, QUERY, lag_of
from syncd.metrics import SUPPRESSION_LAG, SUPPRESSION_LATE

#: The default of ``suppression.max_lag``.
DEFAULT_MAX_LAG = timedelta(hours=1)

_max_lag = DEFAULT_MAX_LAG
_lock = threading.Lock()


def set_max_lag(value: timedelta) -> None:
    """Use ``value`` (``suppression.max_lag``) from now on in this process."""
    global _max_lag
    with _lock:
        _max_lag = value


def max_lag() -> timedelta:
    with _lock:
        return _max_lag


def lag_label(entry: SuppressionEntry, source_name: str | None = None) -> str | None:
    """The metrics' ``source`` label of an entry a record added, or None (not measured)."""
    if entry.source == DO_NOT_CALL:
        return DO_NOT_CALL
    if entry.source == QUERY:
        return source_name
    return None


def observe_additions(
    entries: Iterable[SuppressionEntry],
    source_name: str | None = None,
    *,
    since: datetime | None = None,
) -> int:
    """Observe each entry's lag (those seen from ``since`` on); how many were late."""
    limit = max_lag()
    late = 0
    for entry in entries:
        label = lag_label(entry, source_name)
        if label is None or (since is not None and entry.seen_at < since):
            continue
        lag = lag_of(entry.seen_at, entry.added_at, limit)
        SUPPRESSION_LAG.labels(label).observe(lag.seconds)
        if lag.late:
            SUPPRESSION_LATE.labels(label).inc()
            late += 1
    return late
