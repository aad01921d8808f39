"""The reconciliation sweep: every record the sync's query matches, compared with its leads.

"Never silently lost" covers every record a poll reads; a record can match the
query without any poll reading it (docs/design.md#never-silently-lost). So
``syncd reconcile`` and the scheduled sweep (``syncs[].reconcile``):

1. :func:`plan_reconcile` settles the range (by default up to where the regular
   poll's window begins) and counts its records (``SELECT COUNT()``); above
   ``salesforce.bulk_query_above`` the read is a Bulk API 2.0 query job, as a
   backfill's is;
2. :func:`sweep` reads only the Ids (and cursor) of the matching records page by
   page and compares each page with the sync's leads (:mod:`syncd.domain.reconcile`):
   missed records, the states of the matched ones, and afterwards the leads in
   the range whose records no longer match (confirmed by a read by Id, so a
   record that merely changed during the sweep is not reported). The sweep
   writes nothing;
3. with ``queue``, :func:`take_in` reads the missed records by Id with the sync's
   fields and ``where`` and runs them through the poll's page work
   (:class:`~syncd.services.poll.Poller`: mapping, rules, the blast-radius
   guard, the ledger), 200 Ids a page, each page one transaction. Delivery
   sends them through the send gate like any other lead; nothing here sends.

A sweep stopped or killed part way has written nothing, or whole pages of its
intake only; the missed records not taken in yet are still missed, so a rerun
finishes the job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import poll_store, reconcile_store
from syncd.adapters.canonical_source import CanonicalSource
from syncd.adapters.salesforce import SalesforceSource, SalesforceSourceError
from syncd.adapters.salesforce_bulk import BulkQuerySource
from syncd.config.models import SalesforceConfig, SyncConfig
from syncd.domain.api_usage import usage_over_limit
from syncd.domain.guard import Holding
from syncd.domain.reconcile import Tally, no_longer_matched, sweep_range
from syncd.domain.soql import SALESFORCE_ID, build_count_query, build_ids_query, build_sweep_query
from syncd.domain.window import PollWindow
from syncd.logs import get_logger
from syncd.services.operator_audit import audit_sync_run
from syncd.services.poll import Poller, PollMode, PollResult, RecordSource
from syncd.services.poll_report import count_records

log = get_logger("syncd.reconcile")

DEFAULT_REASON = "reconcile"
#: Ids per read by Id (18 characters each: far below Salesforce's query length limit).
ID_CHUNK = 200
_MODE = PollMode(actor="reconcile", advances_watermark=False)

SweepStatus = Literal["ok", "paused", "error", "stopped"]


@dataclass
class ReconcileResult:
    """What one sweep found, and what its intake did with the missed records."""

    sync: str
    window: PollWindow
    bulk: bool = False
    status: SweepStatus = "ok"
    error: str | None = None
    pages: int = 0
    fetched: int = 0
    missed: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    #: The intake of the missed records (``queue``), when it ran.
    intake: PollResult | None = None
    duration_seconds: float = 0.0

    @property
    def matched(self) -> int:
        return sum(self.states.values())

    @property
    def complete(self) -> bool:
        """The whole range was compared (and the intake, if any, read every missed record)."""
        if self.status != "ok":
            return False
        return self.intake is None or self.intake.status == "ok"


class ReconcileRuntime(Protocol):
    """What a sweep needs of the wired daemon (:class:`syncd.bootstrap.Runtime` has it)."""

    @property
    def session_factory(self) -> sessionmaker[Session]: ...

    @property
    def now(self) -> Callable[[], datetime]: ...

    def source(self, sync: str) -> SalesforceSource: ...

    def reader(self, sync: SyncConfig, name: str | None = None) -> CanonicalSource: ...


@dataclass(frozen=True)
class ReconcilePlan:
    """What a sweep reads: the range, how many records it holds, how, and through which source."""

    sync: SyncConfig
    window: PollWindow
    #: The records in the range (``SELECT COUNT()``), or None if Salesforce would not say.
    total: int | None
    #: Read with a Bulk API 2.0 query job (above ``salesforce.bulk_query_above``).
    bulk: bool
    #: The name of the Salesforce session it uses (the scheduled sweep has its own).
    source_name: str

    @property
    def range(self) -> str:
        return f"{self.window.start.isoformat()} .. {self.window.end.isoformat()}"


def plan_reconcile(
    runtime: ReconcileRuntime,
    sync: SyncConfig,
    salesforce: SalesforceConfig,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    length: timedelta | None = None,
    source_name: str | None = None,
) -> ReconcilePlan:
    """The range (see :func:`~syncd.domain.reconcile.sweep_range`) and its record count.

    Raises :class:`~syncd.domain.reconcile.EmptyRange` when there is nothing to sweep.
    """
    now = runtime.now()
    with runtime.session_factory() as session:
        state = poll_store.get_state(session, sync.name)
    configured = sync.cursor_policy.start_at
    start_at = state.start_at if state is not None else (now if configured == "now" else configured)
    watermark = state.watermark if state is not None else None
    resume = sync.cursor_policy.resume_from(start_at, watermark, now)
    window = sweep_range(
        since=since, until=until, start_at=start_at, resume_from=resume, length=length
    )
    name = source_name or sync.name
    total: int | None
    try:
        total = runtime.source(name).count(build_count_query(sync.query_spec, window))
    except SalesforceSourceError as exc:
        log.warning("cannot count the records to reconcile", sync=sync.name, error=str(exc))
        total = None
    above = salesforce.bulk_query_above
    bulk = total is not None and bool(above) and total > above
    return ReconcilePlan(sync, window, total, bulk, name)


# --------------------------------------------------------------------------- the sweep


class Sweeper:
    """One sweep: the Ids of ``pages``' query compared with the leads, page by page."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        pages: RecordSource,
        by_id: RecordSource,
        sync: SyncConfig,
        window: PollWindow,
        *,
        stop: threading.Event | None = None,
        max_api_usage_percent: int = 80,
        on_page: Callable[[ReconcileResult], None] | None = None,
        bulk: bool = False,
    ) -> None:
        self.session_factory = session_factory
        self.pages = pages
        self.by_id = by_id
        self.sync = sync
        self.stop = stop
        self.max_api_usage_percent = max_api_usage_percent
        self.on_page = on_page
        self.tally = Tally()
        self.result = ReconcileResult(sync.name, window, bulk=bulk)

    def run(self) -> ReconcileResult:
        """Sweep the window; Salesforce or database trouble becomes the result's status."""
        try:
            if self.read():
                self.confirm_unmatched()
        except SalesforceSourceError as exc:
            self.fail(f"{type(exc).__name__}: {exc}")
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            self.fail(f"database error: {type(cause).__name__}: {str(cause).splitlines()[0]}")
        result = self.result
        result.missed = list(self.tally.missed)
        result.states = dict(sorted(self.tally.states.items()))
        return result

    def fail(self, message: str) -> None:
        self.result.status = "error"
        self.result.error = message
        log.error("reconcile error", sync=self.sync.name, error=message)

    def read(self) -> bool:
        """Compare every page; False when stopped or paused before the end."""
        soql = build_sweep_query(self.sync.query_spec, self.result.window)
        pages = self.pages.query_pages(soql)
        try:
            for records in pages:
                ids = [str(record.get("Id") or "") for record in records]
                with self.session_factory() as session:
                    known = reconcile_store.known_states(session, self.sync.name, ids)
                self.tally.add_page(ids, known)
                self.result.pages += 1
                self.result.fetched += len(records)
                self.result.missed = self.tally.missed
                if self.on_page is not None:
                    self.on_page(self.result)
                if self.halted():
                    return False
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        # A Bulk job aborted on stop yields no page at all: that is no clean sweep.
        return not self.halted()

    def halted(self) -> bool:
        """The API-usage guard or a stop ends the sweep (status ``paused``/``stopped``)."""
        reason = usage_over_limit(self.pages.api_usage(), self.max_api_usage_percent)
        if reason is not None:
            self.result.status, self.result.error = "paused", reason
            return True
        if self.stop is not None and self.stop.is_set():
            self.result.status = "stopped"
            return True
        return False

    def confirm_unmatched(self) -> None:
        """Leads stored in the range whose records the sweep did not return, and that a
        read by Id with the sync's ``where`` does not find either."""
        window = self.result.window
        with self.session_factory() as session:
            in_range = reconcile_store.leads_in_range(
                session, self.sync.name, window.start, window.end
            )
        candidates = [c for c in self.tally.unlisted(in_range) if SALESFORCE_ID.fullmatch(c)]
        found: set[str] = set()
        for start in range(0, len(candidates), ID_CHUNK):
            chunk = candidates[start : start + ID_CHUNK]
            for page in self.by_id.query_pages(build_ids_query(self.sync.query_spec, chunk)):
                found.update(_asked_id(record, chunk) for record in page)
        self.result.unmatched = no_longer_matched(candidates, found)


def _asked_id(record: dict[str, Any], asked: Sequence[str]) -> str:
    """The record's Id as asked for (a 15-character Id matches its 18-character form)."""
    value = str(record.get("Id") or "")
    if value in asked:
        return value
    return next((a for a in asked if len(a) == 15 and value.startswith(a)), value)


def sweep(
    session_factory: sessionmaker[Session],
    pages: RecordSource,
    by_id: RecordSource,
    sync: SyncConfig,
    window: PollWindow,
    *,
    stop: threading.Event | None = None,
    max_api_usage_percent: int = 80,
    on_page: Callable[[ReconcileResult], None] | None = None,
    bulk: bool = False,
) -> ReconcileResult:
    """Compare the Ids ``pages`` matches over ``window`` with the sync's leads; writes nothing.

    ``by_id`` (REST) confirms the leads whose records the sweep did not return.
    Never raises for Salesforce or database trouble: it is the result's status.
    """
    started = time.monotonic()
    sweeper = Sweeper(
        session_factory,
        pages,
        by_id,
        sync,
        window,
        stop=stop,
        max_api_usage_percent=max_api_usage_percent,
        on_page=on_page,
        bulk=bulk,
    )
    result = sweeper.run()
    result.duration_seconds = time.monotonic() - started
    return result


# --------------------------------------------------------------------------- the intake


class _Intake(Poller):
    """The missed records read by Id through the poll's page work; the watermark stays."""

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
        ids: Sequence[str],
        since: datetime,
        on_page: Callable[[PollResult], None] | None,
    ) -> None:
        super().__init__(
            session_factory,
            _Sized(source, len(ids)),
            sync,
            now,
            dry_run,
            stop,
            max_api_usage_percent,
            timedelta(0),
            _MODE,
        )
        self.ids = list(ids)
        self.since = since
        self.on_page = on_page

    def run(self) -> PollResult:
        # A read by Id may find a record changed since the sweep: up to now is in the window.
        window = PollWindow(self.since, max(self.since, self.now()))
        self.start_guard(self.guard_limit())
        self.read_safely(window)
        self.finish_guard()
        return self.result

    def read(self, window: PollWindow) -> None:
        """Read the Ids a chunk a page, each page applied in one transaction."""
        for start in range(0, len(self.ids), ID_CHUNK):
            soql = build_ids_query(self.sync.query_spec, self.ids[start : start + ID_CHUNK])
            for records in self.source.query_pages(soql):
                self.page_at = self.now()
                if self.guard.holding is Holding.UNDECIDED:
                    self.decide_hold()
                self.result.pages += 1
                self.result.fetched += len(records)
                self.apply(records, window)
            reason = self.over_usage()
            if reason is not None:
                self.pause(reason)
                return
            if self.stop is not None and self.stop.is_set():
                return
        self.complete = True

    def pause(self, reason: str, length: timedelta | None = None) -> None:
        """Salesforce limits stop the intake; regular polling decides on its own."""
        self.result.status = "paused"
        self.result.error = reason

    def apply(self, records: list[dict[str, Any]], window: PollWindow) -> None:
        super().apply(records, window)
        if self.on_page is not None:
            self.on_page(self.result)


class _Sized:
    """A record source that announces how many records the intake reads in all.

    The blast-radius guard decides before the first page from the read's size
    (:meth:`~syncd.services.poll.Poller.decide_hold`); the intake knows it: the
    missed Ids, which some may no longer match.
    """

    def __init__(self, source: RecordSource, size: int) -> None:
        self.source = source
        self.size = size

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        return self.source.query_pages(soql)

    def api_usage(self) -> tuple[int, int] | None:
        return self.source.api_usage()

    def last_query_size(self) -> int:
        return self.size


def take_in(
    session_factory: sessionmaker[Session],
    source: RecordSource,
    sync: SyncConfig,
    ids: Sequence[str],
    *,
    since: datetime,
    now: Callable[[], datetime],
    dry_run: bool = False,
    stop: threading.Event | None = None,
    max_api_usage_percent: int = 80,
    on_page: Callable[[PollResult], None] | None = None,
) -> PollResult:
    """Read ``ids`` by Id (with the sync's ``where``) and run them through the poll's page work.

    Mapping, rules, the blast-radius guard (a take-in above the sync's limit
    holds its leads for ``syncd release``) and the ledger, as for a backfill;
    ``dry_run`` writes nothing and previews. Records that no longer match are
    simply not read. ``since`` is the swept range's start (a record without a
    cursor value is taken as stamped there).
    """
    started = time.monotonic()
    intake = _Intake(
        session_factory,
        source,
        sync,
        now,
        dry_run,
        stop,
        max_api_usage_percent,
        ids=ids,
        since=since,
        on_page=on_page,
    )
    result = intake.run()
    result.duration_seconds = time.monotonic() - started
    if not dry_run:
        count_records(sync.name, result)
    return result


# --------------------------------------------------------------------------- the whole sweep


def open_pages(
    runtime: ReconcileRuntime,
    plan: ReconcilePlan,
    salesforce: SalesforceConfig,
    stop: threading.Event | None = None,
) -> RecordSource:
    """REST pages, or a Bulk API 2.0 query job for a large range (aborted on ``stop``).

    Only Ids and the cursor are read, so the records need no canonical form.
    """
    source = runtime.source(plan.source_name)
    if not plan.bulk:
        return source
    return BulkQuerySource(source, page_size=salesforce.page_size, stop=stop)


def record_reconcile(runtime: ReconcileRuntime, plan: ReconcilePlan, who: str, reason: str) -> None:
    """One ``operator_actions`` row, written before the first write (a killed run is listed too)."""
    audit_sync_run(
        runtime.session_factory,
        at=runtime.now(),
        actor=who,
        action="reconcile",
        sync_name=plan.sync.name,
        reason=reason.strip() or DEFAULT_REASON,
        detail=plan.range,
    )


def run_reconcile(
    runtime: ReconcileRuntime,
    plan: ReconcilePlan,
    salesforce: SalesforceConfig,
    *,
    queue: bool = False,
    dry_run: bool = False,
    who: str = "syncd",
    reason: str = DEFAULT_REASON,
    stop: threading.Event | None = None,
    on_page: Callable[[ReconcileResult], None] | None = None,
    on_intake: Callable[[PollResult], None] | None = None,
) -> ReconcileResult:
    """Sweep the planned range; with ``queue`` take the missed records in (after an audit row,
    unless a dry run, which writes nothing and previews the intake instead)."""
    source = runtime.source(plan.source_name)
    result = sweep(
        runtime.session_factory,
        open_pages(runtime, plan, salesforce, stop),
        source,
        plan.sync,
        plan.window,
        stop=stop,
        max_api_usage_percent=salesforce.max_api_usage_percent,
        on_page=on_page,
        bulk=plan.bulk,
    )
    if not queue or not result.missed or result.status != "ok":
        return result
    if not dry_run:
        record_reconcile(runtime, plan, who, reason)
    result.intake = take_in(
        runtime.session_factory,
        runtime.reader(plan.sync, plan.source_name),
        plan.sync,
        result.missed,
        since=plan.window.start,
        now=runtime.now,
        dry_run=dry_run,
        stop=stop,
        max_api_usage_percent=salesforce.max_api_usage_percent,
        on_page=on_intake,
    )
    if stop is not None and stop.is_set():
        result.status = "stopped"  # some missed records may not be taken in yet
    return result
