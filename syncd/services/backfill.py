"""Backfill: read a past range of a sync through the poll's page work, watermark untouched.

``syncd backfill`` asks for it. :func:`plan_backfill` settles the range (by
default up to where the regular poll's window begins, so the two do not read
the same records) and counts its records; :func:`run_backfill` writes the
operator action to the audit trail before the first page, picks REST pages or
a Bulk API 2.0 query job by that count, and reads the range with
:func:`backfill_sync`.

Pages go through the same :meth:`~syncd.services.poll.Poller.apply` as a
regular poll (mapping, rules, outbox, known records skipped), so whatever
checks new leads there checks backfilled ones too, and a backfill can be run
again: records already read are known and skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import poll_store
from syncd.adapters.canonical_source import CanonicalSource
from syncd.adapters.orm import utcnow
from syncd.adapters.salesforce import SalesforceSource, SalesforceSourceError
from syncd.adapters.salesforce_bulk import BulkQuerySource
from syncd.config.models import SalesforceConfig, SyncConfig
from syncd.domain.soql import build_count_query
from syncd.domain.window import PollWindow, floor_second
from syncd.logs import get_logger
from syncd.services.operator_audit import audit_sync_run
from syncd.services.poll import Poller, PollMode, PollResult, RecordSource
from syncd.services.poll_report import count_records

log = get_logger("syncd.backfill")

DEFAULT_REASON = "backfill"
_MODE = PollMode(actor="backfill", advances_watermark=False)


class _Backfill(Poller):
    """A poll of a fixed window that leaves the sync's watermark, pause and poll history alone."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        source: RecordSource,
        sync: SyncConfig,
        now: Callable[[], datetime],
        dry_run: bool,
        stop: threading.Event | None,
        max_api_usage_percent: int,
        *,
        window: PollWindow,
        on_page: Callable[[PollResult], None] | None,
        guarded: bool = True,
    ) -> None:
        # No pause of its own: Salesforce's limits stop a backfill (see pause).
        super().__init__(
            session_factory,
            source,
            sync,
            now,
            dry_run,
            stop,
            max_api_usage_percent,
            timedelta(0),
            _MODE,
        )
        self.window = window
        self.on_page = on_page
        self.guarded = guarded

    def run(self) -> PollResult:
        self.result.window_from, self.result.window_to = self.window.start, self.window.end
        # The blast-radius guard applies to a backfill as to a poll, unless the
        # operator confirmed ``syncd backfill --release``.
        self.start_guard(self.guard_limit() if self.guarded else None)
        self.read_safely(self.window)
        self.finish_guard()
        return self.result

    def read(self, window: PollWindow) -> None:
        """Read the window; stopped part way (even by a Bulk job aborted before its first
        page) it is not complete, so the guard keeps whatever it holds held."""
        super().read(window)
        if self.stop is not None and self.stop.is_set():
            self.complete = False

    def pause(self, reason: str, length: timedelta | None = None) -> None:
        """Salesforce limits: stop the backfill; regular polling decides on its own."""
        self.result.status = "paused"
        self.result.error = reason

    def apply(self, records: list[dict[str, Any]], window: PollWindow) -> None:
        super().apply(records, window)
        if self.on_page is not None:
            self.on_page(self.result)


def backfill_sync(
    session_factory: sessionmaker[Session],
    source: RecordSource,
    sync: SyncConfig,
    window: PollWindow,
    *,
    now: Callable[[], datetime] = utcnow,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    max_api_usage_percent: int = 80,
    on_page: Callable[[PollResult], None] | None = None,
    guarded: bool = True,
) -> PollResult:
    """Read ``window`` of ``sync`` through the poll path, without moving its watermark.

    The sync's blast-radius guard holds the new leads of a backfill that finds more
    than its limit, as for a poll; ``guarded=False`` (an operator's confirmed
    ``--release``) queues them all.

    Each page commits on its own, so a backfill stopped or killed part way can
    simply be run again: records already read are known and skipped. Status
    "paused" means Salesforce's limits stopped it (polling itself is not
    paused); "error" that Salesforce or the database failed. ``on_page`` is
    called with the running totals after each page.
    """
    started = time.monotonic()
    backfill = _Backfill(
        session_factory,
        source,
        sync,
        now,
        dry_run,
        stop,
        max_api_usage_percent,
        window=window,
        on_page=on_page,
        guarded=guarded,
    )
    result = backfill.run()
    result.duration_seconds = time.monotonic() - started
    if not dry_run:
        count_records(sync.name, result)
    return result


# --------------------------------------------------------------------------- the operator's command


class BackfillRuntime(Protocol):
    """What a backfill needs of the wired daemon (:class:`syncd.bootstrap.Runtime` has it)."""

    @property
    def session_factory(self) -> sessionmaker[Session]: ...

    @property
    def now(self) -> Callable[[], datetime]: ...

    def source(self, sync: str) -> SalesforceSource: ...

    def reader(self, sync: SyncConfig, name: str | None = None) -> CanonicalSource: ...


class NothingToBackfill(ValueError):
    """The range is empty: its start is not before its end."""

    def __init__(self, start: datetime, end: datetime) -> None:
        super().__init__(
            f"nothing to backfill: --since {start.isoformat()} is not before {end.isoformat()}"
        )


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill will read: the range, how many records it holds, and how."""

    sync: SyncConfig
    window: PollWindow
    #: The records in the range (``SELECT COUNT()``), or None if Salesforce would not say.
    total: int | None
    #: Read with a Bulk API 2.0 query job (above ``salesforce.bulk_query_above``).
    bulk: bool

    @property
    def range(self) -> str:
        return f"{self.window.start.isoformat()} .. {self.window.end.isoformat()}"


def default_until(runtime: BackfillRuntime, sync: SyncConfig) -> datetime:
    """Where the regular poll's own window begins (so the two do not read the same records)."""
    with runtime.session_factory() as session:
        state = poll_store.get_state(session, sync.name)
    start_at = state.start_at if state is not None else None
    watermark = state.watermark if state is not None else None
    return sync.cursor_policy.resume_from(start_at, watermark, runtime.now())


def count_in_window(runtime: BackfillRuntime, sync: SyncConfig, window: PollWindow) -> int | None:
    """Records in the window (``SELECT COUNT()``), or None if Salesforce would not say."""
    try:
        return runtime.source(sync.name).count(build_count_query(sync.query_spec, window))
    except SalesforceSourceError as exc:
        log.warning("cannot count the records to backfill", sync=sync.name, error=str(exc))
        return None


def plan_backfill(
    runtime: BackfillRuntime,
    sync: SyncConfig,
    salesforce: SalesforceConfig,
    since: datetime,
    until: datetime | None,
) -> BackfillPlan:
    """``[since, until)`` in whole seconds and its record count; NothingToBackfill if empty."""
    start = floor_second(since)
    end = floor_second(until or default_until(runtime, sync))
    if end <= start:
        raise NothingToBackfill(start, end)
    window = PollWindow(start, end)
    total = count_in_window(runtime, sync, window)
    above = salesforce.bulk_query_above
    bulk = total is not None and bool(above) and total > above
    return BackfillPlan(sync, window, total, bulk)


def record_backfill(runtime: BackfillRuntime, plan: BackfillPlan, who: str, reason: str) -> None:
    """One ``operator_actions`` row, written before the first write (a killed run is listed too)."""
    audit_sync_run(
        runtime.session_factory,
        at=runtime.now(),
        actor=who,
        action="backfill",
        sync_name=plan.sync.name,
        reason=reason.strip() or DEFAULT_REASON,
        detail=plan.range,
    )


def open_reader(
    runtime: BackfillRuntime,
    plan: BackfillPlan,
    salesforce: SalesforceConfig,
    stop: threading.Event | None = None,
) -> RecordSource:
    """REST pages, or a Bulk API 2.0 query job for a large range (aborted on ``stop``).

    Either way the records come in one canonical form, so a record read both ways
    maps to the same lead.
    """
    if not plan.bulk:
        return runtime.reader(plan.sync)
    source = runtime.source(plan.sync.name)
    bulk = BulkQuerySource(source, page_size=salesforce.page_size, stop=stop)
    return CanonicalSource(bulk, source.describe_fields, plan.sync)


def run_backfill(
    runtime: BackfillRuntime,
    plan: BackfillPlan,
    salesforce: SalesforceConfig,
    *,
    who: str,
    reason: str,
    dry_run: bool = False,
    release: bool = False,
    stop: threading.Event | None = None,
    on_page: Callable[[PollResult], None] | None = None,
) -> PollResult:
    """Audit (unless a dry run), then read the planned range through the poll path.

    ``release`` (an operator's confirmed ``--release``) queues every new lead,
    even above the sync's blast-radius guard.
    """
    if not dry_run:
        record_backfill(runtime, plan, who, reason + (" (--release)" if release else ""))
    return backfill_sync(
        runtime.session_factory,
        open_reader(runtime, plan, salesforce, stop),
        plan.sync,
        plan.window,
        now=runtime.now,
        dry_run=dry_run,
        stop=stop,
        max_api_usage_percent=salesforce.max_api_usage_percent,
        on_page=on_page,
        guarded=not release,
    )
