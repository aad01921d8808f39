"""The poll use case: Salesforce records in, leads in the outbox.

The rules: docs/design.md#polling-salesforce and #mapping-and-safety-rules.

One poll of one sync: plan the window from the saved watermark, run the
query, and for every page in ONE transaction upsert the page's leads and move
the watermark to the largest cursor value in that page. A crash or an error
mid-poll therefore leaves the watermark exactly behind the last committed
page, and the next poll carries on from there.

Records read twice (equal cursor values on a page boundary, the lookback)
are recognised by (sync, Salesforce Id) and their digest: unchanged records
cost no write. A changed record is evaluated again while its lead is still
``queued``/``invalid``/``skipped``. Once delivery has had the lead, the change
is still kept (digest, DoNotCall flag, and the payload for a lead that was not
sent) with an audit-trail note, so the send gate and ``requeue`` see it; the
poll never sends such a lead again by itself.

Page by page on PostgreSQL the (agent, number) pairs the page may queue are
locked (:mod:`syncd.adapters.number_locks`) before the duplicate-phone lookup,
so two syncs or replicas never both queue one number for one agent.

The blast-radius guard (:mod:`syncd.domain.guard`, docs/holding-and-calling-hours.md):
a poll with more new leads ready to call than its limit puts them all in
``held``, which delivery never claims. Because delivery runs while the poll
commits page by page, the poll decides before its first page is written
(:meth:`_Poller.hold_from_start`); a held lead whose record changes stays
``held`` (or becomes invalid/skipped), never ``queued``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import ledger
from syncd.adapters import poll_store as store
from syncd.adapters.number_locks import lock_numbers
from syncd.adapters.orm import utcnow
from syncd.adapters.salesforce import SalesforceLimitExceeded, SalesforceSourceError
from syncd.config.models import SyncConfig
from syncd.domain.api_usage import usage_over_limit
from syncd.domain.guard import GUARD_HISTORY, over_limit, poll_limit
from syncd.domain.mapping import MappedLead, Mapper
from syncd.domain.page_plan import (
    ExistingLead,
    PagePlan,
    pairs_to_lock,
    phones_to_check,
    plan_page,
    reevaluated_ids,
)
from syncd.domain.rules import AgentPhone
from syncd.domain.soql import build_poll_query
from syncd.domain.states import LeadState
from syncd.domain.window import PollWindow, plan_window
from syncd.logs import get_logger
from syncd.metrics import (
    DO_NOT_CALL_UNRECOGNISED,
    LAST_SUCCESSFUL_POLL,
    PAUSED,
    POLL_DURATION,
    POLLS,
    RECORDS_POLLED,
)

log = get_logger(__name__)

PollStatus = Literal["ok", "paused", "error"]
HELD_NOTE = "held by the blast-radius guard"
_QUEUED = LeadState.QUEUED.value
_HELD = LeadState.HELD.value
#: Dry runs keep at most this many preview rows (the counts stay exact).
PREVIEW_LIMIT = 10_000
#: New leads in one poll after which PostgreSQL's statistics are refreshed (then
#: again each time the poll has doubled what it had inserted at the last refresh).
ANALYZE_AFTER_NEW = 5_000
#: How long polling waits after Salesforce's concurrent-request limit (it passes in seconds).
CONCURRENT_LIMIT_PAUSE = timedelta(seconds=30)


class RecordSource(Protocol):
    """What the poller needs from Salesforce (:class:`SalesforceSource` has it)."""

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]: ...

    def api_usage(self) -> tuple[int, int] | None: ...

    # Optional: ``last_query_size() -> int | None``, the running query's record count
    # (Salesforce's ``totalSize``). Without it the blast-radius guard holds every new
    # lead until the poll ends (see _Poller.hold_from_start).


@dataclass(frozen=True)
class PreviewRow:
    """What a dry run would do with one record (no phone, no names)."""

    salesforce_id: str
    state: str
    agent_id: str | None
    note: str | None
    change: Literal["new", "updated"]


@dataclass
class PollResult:
    sync: str
    status: PollStatus = "ok"
    window_from: datetime | None = None
    window_to: datetime | None = None
    pages: int = 0
    fetched: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    skipped: int = 0
    queued: int = 0
    eligible: int = 0
    held: int = 0
    limit: int | None = None
    watermark: datetime | None = None
    error: str | None = None
    duration_seconds: float = 0.0
    preview: list[PreviewRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != "error"


# --------------------------------------------------------------------------- the use case


class _Poller:
    #: A regular poll moves the sync's watermark with each page; a backfill does not.
    advances_watermark = True

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        source: RecordSource,
        sync: SyncConfig,
        now: Callable[[], datetime],
        dry_run: bool,
        stop: threading.Event | None,
        max_api_usage_percent: int,
        limit_pause: timedelta,
    ) -> None:
        self.session_factory = session_factory
        self.source = source
        self.sync = sync
        self.now = now
        self.dry_run = dry_run
        self.stop = stop
        self.max_api_usage_percent = max_api_usage_percent
        self.limit_pause = limit_pause
        self.mapper = Mapper(sync)
        self.result = PollResult(sync=sync.name)
        self.run_id: int | None = None
        # Dry runs write nothing, so earlier pages' outcomes are remembered here.
        self.seen: dict[str, ExistingLead] = {}
        self.taken: set[AgentPhone] = set()
        self.analyze_at = ANALYZE_AFTER_NEW
        self.beyond_window = 0
        # The blast-radius guard (see _Poller.guard_page).
        self.limit: int | None = None
        self.holding: bool | None = None  # decided at the first page
        self.new_ids: list[str] | None = []  # this poll's new leads ready to call, while few
        self.complete = False
        # Set by the stream's entry points (end of module): a given window (and then
        # ``advances_watermark`` False: the poll watermark stays where polls left it).
        self.fixed_window: PollWindow | None = None
        # The stream's guard: a rolling window of this length (see limit_window).
        self.window_guard: timedelta | None = None
        #: Who reads, for the audit trail of reads the ledger ignores as older.
        self.actor = "poll"

    def configured_start(self) -> datetime:
        start = self.sync.start_at
        return self.now() if start == "now" else start

    def load_state(self) -> store.CursorState:
        if self.dry_run:
            with self.session_factory() as session:
                found = store.get_state(session, self.sync.name)
            return found or store.CursorState(self.configured_start(), None, None, None)
        with self.session_factory.begin() as session:
            return store.ensure_state(session, self.sync.name, self.configured_start(), self.now())

    def run(self) -> PollResult:
        state = self.load_state()
        self.result.watermark = state.watermark
        now = self.now()
        if state.paused_until is not None and state.paused_until > now:
            self.result.status = "paused"
            self.result.error = state.pause_reason
            self.record_run(None)
            return self.result
        window = self.fixed_window or plan_window(
            start_at=state.start_at,
            watermark=state.watermark,
            lookback=self.sync.lookback,
            lag=self.sync.lag,
            now=now,
        )
        if window is not None:
            self.result.window_from, self.result.window_to = window.start, window.end
            self.limit = self.result.limit = self.guard_limit()
            if self.limit is None:
                self.new_ids = None
        if not self.dry_run:
            with self.session_factory.begin() as session:
                self.run_id = store.start_poll_run(
                    session,
                    self.sync.name,
                    now,
                    window.start if window else None,
                    window.end if window else None,
                )
        if window is not None:
            self.read_safely(window)
        self.finish_guard()
        self.record_run(self.run_id)
        return self.result

    def read_safely(self, window: PollWindow) -> None:
        """Read the window; Salesforce or database trouble becomes the result's status."""
        try:
            self.read(window)
        except SalesforceLimitExceeded as exc:
            self.pause(str(exc), CONCURRENT_LIMIT_PAUSE if exc.kind == "concurrent" else None)
        except SalesforceSourceError as exc:
            self.fail(f"{type(exc).__name__}: {exc}")
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            self.fail(f"database error: {type(cause).__name__}: {str(cause).splitlines()[0]}")
        except Exception as exc:  # never crash the scheduler; make it visible instead
            log.exception("poll failed unexpectedly", sync=self.sync.name)
            self.fail(f"unexpected error: {type(exc).__name__}: {exc}")

    def fail(self, message: str) -> None:
        self.result.status = "error"
        self.result.error = message
        log.error("poll error", sync=self.sync.name, error=message)

    def pause(self, reason: str, length: timedelta | None = None) -> None:
        """Pause polling for ``length`` (default: ``limit_pause``, the daily-limit pause)."""
        self.result.status = "paused"
        self.result.error = reason
        if self.dry_run:
            return
        now = self.now()
        until = now + (self.limit_pause if length is None else length)
        with self.session_factory.begin() as session:
            entering = store.enter_pause(session, self.sync.name, until, reason[:500], now)
        PAUSED.labels(scope="polling", name=self.sync.name).set(1)
        if entering:
            log.warning(
                "polling paused",
                sync=self.sync.name,
                reason=reason,
                until=until.isoformat(),
            )

    def over_usage(self) -> str | None:
        return usage_over_limit(self.source.api_usage(), self.max_api_usage_percent)

    def read(self, window: PollWindow) -> None:
        soql = build_poll_query(self.sync, window)
        pages = self.source.query_pages(soql)
        try:
            for records in pages:
                if self.holding is None:
                    self.holding = self.hold_from_start()
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
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
            if self.beyond_window:
                log.warning(
                    "records stamped after the poll window ignored for the watermark",
                    sync=self.sync.name,
                    count=self.beyond_window,
                    window_to=window.end.isoformat(),
                )

    def apply(self, records: list[dict[str, Any]], window: PollWindow) -> None:
        mapped = [self.mapper.map(record) for record in records]
        missing = sum(1 for lead in mapped if not lead.salesforce_id)
        if missing:
            log.warning("records without Id ignored", sync=self.sync.name, count=missing)
        ids = [lead.salesforce_id for lead in mapped if lead.salesforce_id]
        if self.dry_run:
            with self.session_factory() as session:
                plan = self.plan(session, mapped, ids, window, lock=False)
            self.result.eligible += sum(1 for new in plan.inserts if new.state == _QUEUED)
            self.result.eligible += len(plan.revived())
            self.remember(plan)
        else:
            with self.session_factory.begin() as session:
                plan = self.plan(session, mapped, ids, window, lock=True)
                now = self.now()
                if self.window_guard is not None:
                    self.limit_window(session, now)
                self.guard_page(session, plan, now)
                ledger.insert_new(session, self.sync.name, plan.inserts, now)
                ledger.apply_reads(session, plan.changes, now)
                ledger.record_reads(session, plan.recorded, now)
                ledger.restamp(session, plan.restamped)
                ledger.note_stale(session, plan.stale, now, self.actor)
                if self.window_guard is not None and not self.holding and self.result.eligible:
                    store.record_admission(session, self.sync.name, self.result.eligible, now)
                if plan.watermark is not None and self.advances_watermark:
                    store.advance_watermark(session, self.sync.name, plan.watermark, now)
        self.count(plan)
        self.beyond_window += plan.beyond_window
        if not self.dry_run and self.result.new >= self.analyze_at:
            self.analyze_at = 2 * self.result.new
            with self.session_factory.begin() as session:
                if store.refresh_statistics(session):
                    log.info("table statistics refreshed", sync=self.sync.name, new=self.result.new)

    def plan(
        self,
        session: Session,
        mapped: list[MappedLead],
        ids: list[str],
        window: PollWindow,
        *,
        lock: bool,
    ) -> PagePlan:
        lock = lock and session.get_bind().dialect.name == "postgresql"
        existing = store.existing_leads(session, self.sync.name, ids, lock=lock)
        if self.seen:
            existing.update((sf_id, self.seen[sf_id]) for sf_id in ids if sf_id in self.seen)
        recent: set[AgentPhone] = set()
        duplicate_window = self.sync.rules.duplicate_phone_window
        if duplicate_window > timedelta(0):
            if lock:
                # Held until the page commits: no other sync or replica checks and
                # queues one of these numbers for the same agent meanwhile.
                lock_numbers(session, pairs_to_lock(mapped, existing))
            phones = phones_to_check(mapped)
            if phones:
                recent = store.recent_phones(
                    session,
                    phones,
                    self.now() - duplicate_window,
                    reevaluated_ids(mapped, existing),
                    agents={lead.agent_id for lead in mapped if lead.agent_id},
                )
            recent |= self.taken
        return plan_page(mapped, existing, recent, self.sync, window.start, window.end)

    # ------------------------------------------------------------------ the guard

    def guard_limit(self) -> int | None:
        """The most new leads this poll may queue (see :mod:`syncd.domain.guard`)."""
        guard = self.sync.guard
        history: list[int] = []
        if guard.max_factor is not None:
            with self.session_factory() as session:
                history = store.guard_history(session, self.sync.name, GUARD_HISTORY)
        return poll_limit(
            max_new_per_poll=guard.max_new_per_poll,
            max_factor=guard.max_factor,
            min_history=guard.min_history,
            factor_floor=guard.factor_floor,
            history=history,
        )

    def hold_from_start(self) -> bool:
        """Whether this poll's new leads are held from its first page on.

        Not when the query's size is known (Salesforce's ``totalSize``, fixed
        when the query runs) and within the limit: the new leads ready to call
        are some of those records, so they cannot exceed it. Otherwise (a
        larger window, or a source that cannot tell) every new lead ready to
        call is inserted ``held``, and :meth:`finish_guard` releases them when
        the whole window turned out to be within the limit.
        """
        if self.limit is None:
            return False
        size_of = getattr(self.source, "last_query_size", None)
        size = size_of() if callable(size_of) else None
        hold = not isinstance(size, int) or size > self.limit
        if hold and not self.dry_run:
            log.info(
                "new leads held until the poll ends",
                sync=self.sync.name,
                records=size,
                limit=self.limit,
            )
        return hold

    def limit_window(self, session: Session, now: datetime) -> None:
        """The stream's guard: this page may queue what the rolling window has left.

        Stream intake has no poll to count over, so ``guard.max_new_per_poll``
        applies per ``guard.stream_window``: the leads each intake made sendable
        are stored (``intake_admissions``), and a page that would take the
        window's total over the limit holds all of its leads ready to call.
        """
        assert self.window_guard is not None
        limit = self.sync.guard.max_new_per_poll
        if limit is None:
            self.limit = None
            return
        admitted = store.admitted_since(session, self.sync.name, now - self.window_guard)
        self.limit = self.result.limit = max(0, limit - admitted)
        self.holding = None

    def guard_page(self, session: Session, plan: PagePlan, now: datetime) -> None:
        """Hold the page's new leads when the poll holds, in the page's transaction.

        Delivery claims only ``queued`` leads and runs while the poll commits
        page by page, so the guard must decide before a new lead is ever
        committed as ``queued``: :meth:`hold_from_start` does, from the query's
        size, before the first page. Should a source return more records than
        it announced, the page that crosses the limit still moves the poll's
        earlier new leads from ``queued`` to ``held`` in its own transaction
        and says so in an error if delivery had already claimed some.
        """
        revived = {change.salesforce_id for change in plan.revived()}
        fresh = [new.salesforce_id for new in plan.inserts if new.state == _QUEUED]
        fresh += sorted(revived)
        if self.window_guard is not None and self.holding is None:
            self.holding = over_limit(len(fresh), self.limit)
            if self.holding:
                self.result.held += len(fresh)
                log.error(
                    "stream intake held by the blast-radius guard",
                    sync=self.sync.name,
                    leads=len(fresh),
                    left_in_window=self.limit,
                    window=str(self.window_guard),
                    hint=f"check `syncd leads --state held --sync {self.sync.name}`, then "
                    f"`syncd release` or `syncd discard`",
                )
        self.result.eligible += len(fresh)
        crossing = not self.holding and over_limit(self.result.eligible, self.limit)
        if self.holding or crossing:
            plan.inserts = [
                replace(new, state=_HELD) if new.state == _QUEUED else new for new in plan.inserts
            ]
            plan.changes = [
                replace(change, state=_HELD) if change.salesforce_id in revived else change
                for change in plan.changes
            ]
            plan.decided = [
                (lead, LeadState.HELD, note, change)
                if state is LeadState.QUEUED and (change == "new" or lead.salesforce_id in revived)
                else (lead, state, note, change)
                for lead, state, note, change in plan.decided
            ]
        if crossing:
            self.holding = True
            earlier = self.new_ids or []
            moved = len(
                ledger.move_by_salesforce_id(
                    session,
                    self.sync.name,
                    earlier,
                    source=_QUEUED,
                    target=_HELD,
                    reason=f"{HELD_NOTE}: the poll crossed its limit of {self.limit}",
                    now=now,
                )
            )
            self.result.queued -= moved
            if moved < len(earlier):
                log.error(
                    "new leads of a held poll were claimed before it crossed its limit",
                    sync=self.sync.name,
                    claimed=len(earlier) - moved,
                )
        if self.new_ids is not None:
            self.new_ids += fresh
            if over_limit(len(self.new_ids), self.limit):
                self.new_ids = None  # held for good: no need to remember them

    def finish_guard(self) -> None:
        """Log a held poll, or release the leads held only while the poll's size was unknown."""
        result = self.result
        if self.limit is None:
            return
        if over_limit(result.eligible, self.limit):
            result.held = result.eligible
            if self.dry_run:
                result.queued -= result.eligible
                result.preview = [
                    replace(row, state=_HELD)
                    if row.change == "new" and row.state == _QUEUED
                    else row
                    for row in result.preview
                ]
                return
            name = self.sync.name
            log.error(
                "poll held by the blast-radius guard",
                sync=self.sync.name,
                new=result.eligible,
                limit=self.limit,
                hint=f"check `syncd leads --state held --sync {name}`, then "
                f"`syncd release --sync {name}` or `syncd discard --sync {name}`",
            )
            return
        if self.dry_run or not self.holding or not self.new_ids:
            return
        if not self.complete or result.status != "ok":
            result.held = len(self.new_ids)
            log.error(
                "poll ended early while holding its new leads: they stay held",
                sync=self.sync.name,
                held=result.held,
                limit=self.limit,
            )
            return
        try:
            with self.session_factory.begin() as session:
                released = len(
                    ledger.move_by_salesforce_id(
                        session,
                        self.sync.name,
                        self.new_ids,
                        source=_HELD,
                        target=_QUEUED,
                        reason=f"released by its poll: {result.eligible} new leads, "
                        f"within the limit of {self.limit}",
                        now=self.now(),
                    )
                )
        except SQLAlchemyError as exc:
            result.held = len(self.new_ids)
            log.error("cannot release the poll's held leads", sync=self.sync.name, error=str(exc))
            return
        result.queued += released

    def remember(self, plan: PagePlan) -> None:
        for lead, state, _note, _change in plan.decided:
            self.seen[lead.salesforce_id] = ExistingLead(-1, state.value, lead.digest, lead.stamp)
            if state is LeadState.QUEUED and lead.agent_id and lead.phone_e164:
                self.taken.add((lead.agent_id, lead.phone_e164))

    def count(self, plan: PagePlan) -> None:
        result = self.result
        result.unchanged += plan.unchanged
        result.updated += len(plan.recorded)
        if plan.unrecognised and not self.dry_run:
            DO_NOT_CALL_UNRECOGNISED.labels(sync=self.sync.name).inc(len(plan.unrecognised))
            log.warning(
                "DoNotCall value not recognised: leads held back",
                sync=self.sync.name,
                records=len(plan.unrecognised),
                salesforce_ids=plan.unrecognised[:20],
                field=self.sync.rules.do_not_call_field,
                callable_values=self.sync.rules.do_not_call_callable_values,
            )
        for lead, state, note, change in plan.decided:
            if change == "new":
                result.new += 1
            else:
                result.updated += 1
            if state is LeadState.INVALID:
                result.invalid += 1
            elif state is LeadState.SKIPPED:
                result.skipped += 1
            elif state is LeadState.HELD:
                pass  # counted by finish_guard: held for good, or released and queued
            else:
                result.queued += 1
            if self.dry_run and len(result.preview) < PREVIEW_LIMIT:
                result.preview.append(
                    PreviewRow(lead.salesforce_id, state.value, lead.agent_id, note, change)
                )
        if plan.watermark is not None and (
            result.watermark is None or plan.watermark > result.watermark
        ):
            result.watermark = plan.watermark  # for a dry run: where it would be

    def record_run(self, run_id: int | None) -> None:
        """Close the poll_runs row, remember the outcome, log one line, set metrics."""
        result = self.result
        now = self.now()
        if not self.dry_run:
            try:
                with self.session_factory.begin() as session:
                    if run_id is None:
                        run_id = store.start_poll_run(
                            session,
                            self.sync.name,
                            now,
                            result.window_from,
                            result.window_to,
                            status=result.status,
                        )
                    store.finish_poll_run(
                        session,
                        run_id,
                        status=result.status,
                        finished_at=now,
                        pages=result.pages,
                        fetched=result.fetched,
                        new=result.new,
                        updated=result.updated,
                        unchanged=result.unchanged,
                        invalid=result.invalid,
                        skipped=result.skipped,
                        eligible=result.eligible,
                        held=result.held,
                        watermark_after=result.watermark,
                        error=result.error,
                    )
                    store.record_outcome(session, self.sync.name, result.status, result.error, now)
            except SQLAlchemyError as exc:
                log.error("cannot record the poll", sync=self.sync.name, error=str(exc)[:300])
                if result.status == "ok":
                    result.status = "error"
                    result.error = "cannot record the poll in the database"
        POLLS.labels(sync=self.sync.name, status=result.status).inc()
        if result.status == "ok" and not self.dry_run:
            LAST_SUCCESSFUL_POLL.labels(sync=self.sync.name).set(time.time())
            PAUSED.labels(scope="polling", name=self.sync.name).set(0)
        for name in ("new", "updated", "unchanged", "invalid", "skipped"):
            value = getattr(result, name)
            if value:
                RECORDS_POLLED.labels(sync=self.sync.name, result=name).inc(value)


def poll_sync(
    session_factory: sessionmaker[Session],
    source: RecordSource,
    sync: SyncConfig,
    *,
    now: Callable[[], datetime] = utcnow,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    max_api_usage_percent: int = 80,
    limit_pause: timedelta = timedelta(minutes=15),
) -> PollResult:
    """Poll ``sync`` once; never raises for Salesforce or database trouble.

    ``dry_run`` reads the database and Salesforce but writes nothing: no
    sync_state, no leads, no poll_runs row, no watermark move; the result's
    ``preview`` says what a real poll would do with each new or changed record.
    """
    started = time.monotonic()
    poller = _Poller(
        session_factory, source, sync, now, dry_run, stop, max_api_usage_percent, limit_pause
    )
    try:
        result = poller.run()
    except SQLAlchemyError as exc:  # the database itself is unreachable: visible, not a crash
        cause = getattr(exc, "orig", None) or exc
        result = poller.result
        result.status = "error"
        result.error = f"database error: {type(cause).__name__}: {str(cause).splitlines()[0]}"
        POLLS.labels(sync=sync.name, status="error").inc()
    result.duration_seconds = time.monotonic() - started
    POLL_DURATION.labels(sync=sync.name).observe(result.duration_seconds)
    log.info(
        "poll finished",
        sync=sync.name,
        status=result.status,
        dry_run=dry_run,
        window_from=result.window_from.isoformat() if result.window_from else None,
        window_to=result.window_to.isoformat() if result.window_to else None,
        pages=result.pages,
        fetched=result.fetched,
        new=result.new,
        updated=result.updated,
        unchanged=result.unchanged,
        invalid=result.invalid,
        skipped=result.skipped,
        watermark=result.watermark.isoformat() if result.watermark else None,
        error=result.error,
        duration_ms=round(result.duration_seconds * 1000, 1),
    )
    return result


# --------------------------------------------------------------------------- backfill


class _Backfill(_Poller):
    """A poll of a fixed window that leaves the sync's watermark, pause and poll history alone.

    Pages go through the same :meth:`_Poller.apply` as a regular poll (mapping,
    rules, outbox, known records skipped), so whatever checks new leads there
    checks backfilled ones too.
    """

    advances_watermark = False

    def __init__(
        self,
        *args: Any,
        window: PollWindow,
        on_page: Callable[[PollResult], None] | None,
        guarded: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.window = window
        self.on_page = on_page
        self.guarded = guarded
        self.actor = "backfill"

    def run(self) -> PollResult:
        self.result.window_from, self.result.window_to = self.window.start, self.window.end
        # The blast-radius guard applies to a backfill as to a poll, unless the
        # operator confirmed ``syncd backfill --release``.
        self.limit = self.result.limit = self.guard_limit() if self.guarded else None
        if self.limit is None:
            self.new_ids = None
        self.read_safely(self.window)
        self.finish_guard()
        return self.result

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
        timedelta(0),
        window=window,
        on_page=on_page,
        guarded=guarded,
    )
    result = backfill.run()
    result.duration_seconds = time.monotonic() - started
    for name in ("new", "updated", "unchanged", "invalid", "skipped"):
        value = getattr(result, name)
        if value and not dry_run:
            RECORDS_POLLED.labels(sync=sync.name, result=name).inc(value)
    return result


# --------------------------------------------------------------------------- for the stream


def apply_records(
    session_factory: sessionmaker[Session],
    sync: SyncConfig,
    records: list[dict[str, Any]],
    *,
    now: Callable[[], datetime] = utcnow,
) -> PollResult:
    """Run records read outside a poll (the stream's reads) through a poll's page work.

    The same mapping, rules and outbox writes as one page of a poll, in one
    transaction; the poll watermark stays where polls left it. The blast-radius
    guard counts over a rolling ``guard.stream_window`` (:meth:`_Poller.limit_window`).
    Raises what the page raises (database errors) for the caller to retry.
    """
    poller = _Poller(
        session_factory, _NO_SOURCE, sync, now, False, None, 100, timedelta(minutes=15)
    )
    poller.advances_watermark = False
    poller.actor = "stream"
    poller.window_guard = sync.guard.stream_window
    at = now()
    poller.apply(records, PollWindow(at, at))
    return poller.result


def poll_range(
    session_factory: sessionmaker[Session],
    source: RecordSource,
    sync: SyncConfig,
    start: datetime,
    end: datetime,
    *,
    now: Callable[[], datetime] = utcnow,
    stop: threading.Event | None = None,
    max_api_usage_percent: int = 80,
    limit_pause: timedelta = timedelta(minutes=15),
) -> PollResult:
    """A reconciliation poll of the cursor range ``[start, end)``; the watermark stays.

    Like :func:`poll_sync` (a poll_runs row, pauses, never raises), but over a
    given window: the stream uses it to recover the events it could not replay.
    """
    started = time.monotonic()
    poller = _Poller(
        session_factory, source, sync, now, False, stop, max_api_usage_percent, limit_pause
    )
    poller.fixed_window = PollWindow(start, max(start, end))
    poller.advances_watermark = False
    result = poller.run()
    result.duration_seconds = time.monotonic() - started
    return result


class _NoSource:
    """The source of :func:`apply_records`: records arrive already read."""

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        return iter(())

    def api_usage(self) -> tuple[int, int] | None:
        return None


_NO_SOURCE = _NoSource()
