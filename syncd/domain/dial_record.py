"""The record of every dial decision: its inputs, and the version of the rules (pure).

When the send gate lets a lead go to ``sending`` it writes one ``dial_decisions``
row saying why the number could be called at that moment
(docs/safety.md#the-record-of-every-dial-decision). This module builds the two
values of that row that need thought:

* :func:`dial_inputs`, the ``inputs`` JSON: exactly the keys ``do_not_call``,
  ``consent``, ``suppression``, ``frequency``, ``duplicate_window_seconds`` and
  ``calling_hours``; ``syncd explain`` and ``syncd audit export`` read them;
* :func:`rules_version`, the ``rules_version``: the first 16 hex digits of the
  SHA-256 of the canonical JSON (:func:`canonical_json`) of the sync's effective
  rules. The same rules give the same version in every process and release (keys
  sorted, no spaces, UTF-8, no floats that JSON cannot state); a change of any
  value, a default included, gives another. The body is kept once per version in
  ``rules_versions``, so each row names the rules it was decided by without
  copying them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from syncd.domain.consent import ConsentCheck, ConsentRule
from syncd.domain.frequency import Cap

#: Hex digits of the SHA-256 kept as the version (64 bits: collisions are not a concern
#: for the handful of rule sets one deployment goes through).
VERSION_LENGTH = 16


def canonical_json(body: Mapping[str, Any]) -> str:
    """``body`` as one stable JSON text: sorted keys, no whitespace, non-ASCII kept."""
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def rules_version(body: Mapping[str, Any]) -> str:
    """The version of the effective rules ``body``: 16 hex digits of its canonical SHA-256."""
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()[:VERSION_LENGTH]


def seconds(value: timedelta) -> int | float:
    """A duration in seconds, as an integer when it is whole (``86400``, not ``86400.0``)."""
    total = value.total_seconds()
    return int(total) if total.is_integer() else total


def dial_inputs(
    *,
    do_not_call: bool,
    consent: tuple[ConsentRule, ConsentCheck] | None,
    suppression_checked: bool,
    frequency: Sequence[tuple[Cap, int]],
    duplicate_window: timedelta,
    calling_hours: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """The ``inputs`` of one dial decision: what each rule read when the lead was let through.

    ``consent``: the sync's rule and what it read (None: the rule is off);
    ``frequency``: each cap with the sends of the number it counted before this
    one; ``calling_hours``: the local rules' evidence, as given (None: none asked).
    A lead let through is never on the suppression list, so ``listed`` is false.
    """
    return {
        "do_not_call": do_not_call,
        "consent": None if consent is None else _consent(*consent, now),
        "suppression": {"checked": suppression_checked, "listed": False},
        "frequency": [{**_cap(cap), "sent": sent} for cap, sent in frequency],
        "duplicate_window_seconds": seconds(duplicate_window),
        "calling_hours": None if calling_hours is None else dict(calling_hours),
    }


# A claim describes the same few rules and caps for every lead it sends: once is enough.
@lru_cache(maxsize=256)
def _cap(cap: Cap) -> Mapping[str, Any]:
    return {"cap": cap.describe(), "count": cap.count, "per_seconds": seconds(cap.per)}


@lru_cache(maxsize=64)
def _describe(rule: ConsentRule) -> str:
    return rule.describe()


def _consent(rule: ConsentRule, check: ConsentCheck, now: datetime) -> dict[str, Any]:
    age = check.age(now)
    return {
        "rule": _describe(rule),
        "value": check.value,
        "age_seconds": None if age is None else age.total_seconds(),
    }
