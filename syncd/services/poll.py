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

Page by page on PostgreSQL the numbers the page may queue are locked
(:mod:`syncd.services.intake_numbers`) before DoNotCall numbers go on the
suppression list and before the list and the duplicate-phone lookups, so two
syncs or replicas never both queue one number, nor queue one just suppressed.

The blast-radius guard (:class:`syncd.domain.guard.PollGuard`,
docs/holding-and-calling-hours.md): a poll with more new leads ready to call
than its limit puts them all in ``held``, which delivery never claims. Because
delivery runs while the poll commits page by page, the poll decides before its
first page is written (:meth:`Poller.decide_hold`); a held lead whose record
changes stays ``held`` (or becomes invalid/skipped), never ``queued``. The
guard's decisions are the domain's; this module writes them.

A backfill (:mod:`syncd.services.backfill`) and the stream's reads
(:mod:`syncd.services.stream_poll`) run the same page work, in their
:class:`PollMode`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import ledger, poll_store
from syncd.adapters.orm import utcnow
from syncd.adapters.salesforce import SalesforceLimitExceeded, SalesforceSourceError
from syncd.config.models import SyncConfig
from syncd.domain.api_usage import usage_over_limit
from syncd.domain.guard import GUARD_HISTORY, Ending, Holding, PollGuard, poll_limit, window_limit
from syncd.domain.mapping import MappedLead, Mapper
from syncd.domain.page_plan import (
    ExistingLead,
    PagePlan,
    pairs_to_lock,
    plan_page,
    reevaluated_ids,
)
from syncd.domain.rules import AgentPhone
from syncd.domain.soql import build_poll_query
from syncd.domain.states import LeadState
from syncd.domain.window import PollWindow
from syncd.logs import get_logger
from syncd.metrics import PAUSED, POLLS
from syncd.services.intake_numbers import Intake, screen_numbers
from syncd.services.poll_report import (
    PollResult,
    PollStatus,
    PreviewRow,
    count_page,
    database_failure,
    log_finished,
    log_hold,
    log_intake_held,
    log_poll_held,
    log_stays_held,
    preview_held,
    reader_word,
    record_run,
)
from syncd.services.speed_to_lead import observe_intake

__all__ = [
    "CONCURRENT_LIMIT_PAUSE",
    "PollMode",
    "PollResult",
    "PollStatus",
    "Poller",
    "PreviewRow",
    "RecordSource",
    "poll_sync",
]

log = get_logger(__name__)

HELD_NOTE = "held by the blast-radius guard"
_QUEUED = LeadState.QUEUED.value
_HELD = LeadState.HELD.value
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
    # lead until the poll ends (see Poller.decide_hold).


@dataclass(frozen=True)
class PollMode:
    """How a poller reads: a regular poll, a backfill, or one of the stream's reads.

    ``window`` is a given window instead of the one planned from the watermark;
    ``stream_window`` is the stream's guard, a rolling window of that length
    (:meth:`Poller.limit_window`) instead of a limit per poll.
    """

    #: Who reads, for the audit trail of reads the ledger ignores as older.
    actor: str = "poll"
    #: A regular poll moves the sync's watermark with each page; the others do not.
    advances_watermark: bool = True
    window: PollWindow | None = None
    stream_window: timedelta | None = None


REGULAR = PollMode()


# --------------------------------------------------------------------------- the use case


class Poller:
    """One poll of one sync: its pages, its guard and its result."""

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
        mode: PollMode = REGULAR,
    ) -> None:
        self.session_factory = session_factory
        self.source = source
        self.sync = sync
        self.now = now
        self.dry_run = dry_run
        self.stop = stop
        self.max_api_usage_percent = max_api_usage_percent
        self.limit_pause = limit_pause
        self.mode = mode
        self.rules = sync.intake_rules
        self.mapper = Mapper(sync.mapping_spec)
        self.result = PollResult(sync=sync.name)
        self.run_id: int | None = None
        # Dry runs write nothing, so earlier pages' outcomes are remembered here.
        self.seen: dict[str, ExistingLead] = {}
        self.taken: set[AgentPhone] = set()
        self.analyze_at = ANALYZE_AFTER_NEW
        self.beyond_window = 0
        self.guard = PollGuard(limit=None)
        self.complete = False
        #: Opt-outs made before syncd watched the sync are history: their lag is not measured.
        self.watching_since: datetime | None = None
        #: When the page being applied arrived (speed to lead's read; None: when written),
        #: and when it was written (its new leads' first queued time).
        self.page_at: datetime | None = None
        self.written_at: datetime | None = None

    def configured_start(self) -> datetime:
        start = self.sync.cursor_policy.start_at
        return self.now() if start == "now" else start

    def load_state(self) -> poll_store.CursorState:
        if self.dry_run:
            with self.session_factory() as session:
                found = poll_store.get_state(session, self.sync.name)
            return found or poll_store.CursorState(self.configured_start(), None, None, None)
        with self.session_factory.begin() as session:
            return poll_store.ensure_state(
                session, self.sync.name, self.configured_start(), self.now()
            )

    def run(self) -> PollResult:
        state = self.load_state()
        self.result.watermark = state.watermark
        self.watching_since = state.created_at
        now = self.now()
        if state.paused_until is not None and state.paused_until > now:
            self.result.status = "paused"
            self.result.error = state.pause_reason
            record_run(self.session_factory, self.result, None, self.now(), dry_run=self.dry_run)
            return self.result
        policy = self.sync.cursor_policy
        window = self.mode.window or policy.window(state.start_at, state.watermark, now)
        if window is not None:
            self.result.window_from, self.result.window_to = window.start, window.end
            self.start_guard(self.guard_limit())
        if not self.dry_run:
            with self.session_factory.begin() as session:
                self.run_id = poll_store.start_poll_run(
                    session,
                    self.sync.name,
                    now,
                    window.start if window else None,
                    window.end if window else None,
                )
        if window is not None:
            self.read_safely(window)
        self.finish_guard()
        record_run(self.session_factory, self.result, self.run_id, self.now(), dry_run=self.dry_run)
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
            word = reader_word(self.mode.actor)
            log.exception(f"{word} failed unexpectedly", sync=self.sync.name)
            self.fail(f"unexpected error: {type(exc).__name__}: {exc}")

    def fail(self, message: str) -> None:
        self.result.status = "error"
        self.result.error = message
        log.error(f"{reader_word(self.mode.actor)} error", sync=self.sync.name, error=message)

    def pause(self, reason: str, length: timedelta | None = None) -> None:
        """Pause polling for ``length`` (default: ``limit_pause``, the daily-limit pause)."""
        self.result.status = "paused"
        self.result.error = reason
        if self.dry_run:
            return
        now = self.now()
        until = now + (self.limit_pause if length is None else length)
        with self.session_factory.begin() as session:
            entering = poll_store.enter_pause(session, self.sync.name, until, reason[:500], now)
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
        soql = build_poll_query(self.sync.query_spec, window)
        pages = self.source.query_pages(soql)
        try:
            for records in pages:
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
            self.guard = self.guard.count(len(plan.sendable))
            self.result.eligible = self.guard.eligible
            self.remember(plan)
        else:
            with self.session_factory.begin() as session:
                plan = self.write_page(session, mapped, ids, window)
            observe_intake(self.sync.name, plan.inserts, self.page_at, self.written_at)
            self.page_at = None
        count_page(self.result, plan, self.sync, dry_run=self.dry_run)
        self.beyond_window += plan.beyond_window
        if not self.dry_run and self.result.new >= self.analyze_at:
            self.analyze_at = 2 * self.result.new
            with self.session_factory.begin() as session:
                if poll_store.refresh_statistics(session):
                    log.info("table statistics refreshed", sync=self.sync.name, new=self.result.new)

    def write_page(
        self, session: Session, mapped: list[MappedLead], ids: list[str], window: PollWindow
    ) -> PagePlan:
        """Plan the page, let the guard hold it, write it: one transaction (the caller's)."""
        plan = self.plan(session, mapped, ids, window, lock=True)
        now = self.now()
        if self.mode.stream_window is not None:
            self.limit_window(session, now)
        plan = self.guard_page(session, plan, now)
        self.page_at = self.page_at or now
        ledger.insert_new(session, self.sync.name, plan.inserts, now, self.page_at)
        self.written_at = now
        ledger.apply_reads(session, plan.changes, now)
        ledger.record_reads(session, plan.recorded, now)
        ledger.restamp(session, plan.restamped)
        ledger.note_stale(session, plan.stale, now, self.mode.actor)
        admitted = self.result.eligible
        if self.mode.stream_window is not None and not self.guard.holds and admitted:
            poll_store.record_admission(session, self.sync.name, admitted, now)
        if plan.watermark is not None and self.mode.advances_watermark:
            poll_store.advance_watermark(session, self.sync.name, plan.watermark, now)
        return plan

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
        existing = poll_store.existing_leads(session, self.sync.name, ids, lock=lock)
        if self.seen:
            existing.update((sf_id, self.seen[sf_id]) for sf_id in ids if sf_id in self.seen)
        intake = Intake(
            self.sync.name,
            self.rules,
            lock=lock,
            write=not self.dry_run,
            measure_lag=self.mode.actor != "backfill",
            measured_since=self.watching_since,
        )
        # The locks are held until the page commits: no other sync or replica checks,
        # suppresses or queues one of these numbers meanwhile.
        screened = screen_numbers(
            session,
            intake,
            self.now,
            mapped=mapped,
            queue=pairs_to_lock(mapped, existing),
            exclude_ids=reevaluated_ids(mapped, existing),
        )
        recent = screened.taken
        if self.rules.checks_numbers:
            recent |= self.taken
        hold = not self.dry_run and self.guard.holds
        return plan_page(
            mapped,
            existing,
            recent,
            self.rules,
            window.start,
            window.end,
            hold=hold,
            screen=screened.screen,
        )

    # ------------------------------------------------------------------ the guard

    def guard_limit(self) -> int | None:
        """The most new leads this poll may queue (see :mod:`syncd.domain.guard`)."""
        guard = self.sync.guard
        history: list[int] = []
        if guard.max_factor is not None:
            with self.session_factory() as session:
                history = poll_store.guard_history(session, self.sync.name, GUARD_HISTORY)
        return poll_limit(
            max_new_per_poll=guard.max_new_per_poll,
            max_factor=guard.max_factor,
            min_history=guard.min_history,
            factor_floor=guard.factor_floor,
            history=history,
        )

    def start_guard(self, limit: int | None) -> None:
        self.guard = PollGuard.limited(limit)
        self.result.limit = limit

    def decide_hold(self) -> None:
        """Whether this poll's new leads are held from its first page on.

        Not when the query's size is known (Salesforce's ``totalSize``, fixed
        when the query runs) and within the limit: the new leads ready to call
        are some of those records, so they cannot exceed it. Otherwise (a
        larger window, or a source that cannot tell) every new lead ready to
        call is inserted ``held``, and :meth:`finish_guard` releases them when
        the whole window turned out to be within the limit.
        """
        size: int | None = None
        if self.guard.limit is not None:
            size_of = getattr(self.source, "last_query_size", None)
            found = size_of() if callable(size_of) else None
            size = found if isinstance(found, int) else None
        self.guard = self.guard.start(size)
        if not self.dry_run:
            log_hold(
                self.sync.name,
                self.mode.actor,
                holds=self.guard.holds,
                records=size,
                limit=self.guard.limit,
            )

    def limit_window(self, session: Session, now: datetime) -> None:
        """The stream's guard: this page may queue what the rolling window has left.

        Stream intake has no poll to count over, so ``guard.max_new_per_poll``
        applies per ``guard.stream_window``: the leads each intake made sendable
        are stored (``intake_admissions``), and a page that would take the
        window's total over the limit holds all of its leads ready to call.
        """
        assert self.mode.stream_window is not None
        limit = self.sync.guard.max_new_per_poll
        if limit is None:
            self.guard = self.guard.for_window(None)
            return
        since = now - self.mode.stream_window
        admitted = poll_store.admitted_since(session, self.sync.name, since)
        self.guard = self.guard.for_window(window_limit(limit, admitted))
        self.result.limit = self.guard.limit

    def guard_page(self, session: Session, plan: PagePlan, now: datetime) -> PagePlan:
        """The page as the guard lets it be written, in the page's transaction.

        Delivery claims only ``queued`` leads and runs while the poll commits
        page by page, so the guard must decide before a new lead is ever
        committed as ``queued``: :meth:`decide_hold` does, from the query's
        size, before the first page. Should a source return more records than
        it announced, the page that crosses the limit still moves the poll's
        earlier new leads from ``queued`` to ``held`` in its own transaction
        and says so in an error if delivery had already claimed some.
        """
        step = self.guard.page(plan, stream=self.mode.stream_window is not None)
        self.guard = step.guard
        self.result.eligible = step.guard.eligible
        if step.held_at_once:
            assert self.mode.stream_window is not None
            self.result.held += step.held_at_once
            log_intake_held(
                self.sync.name, step.held_at_once, self.guard.limit, self.mode.stream_window
            )
        if step.to_hold:
            self.hold_earlier(session, step.to_hold, now)
        return step.plan

    def hold_earlier(self, session: Session, earlier: tuple[str, ...], now: datetime) -> None:
        """Move the poll's earlier new leads to ``held``: a page crossed the limit."""
        moved = len(
            ledger.move_by_salesforce_id(
                session,
                self.sync.name,
                earlier,
                source=_QUEUED,
                target=_HELD,
                reason=f"{HELD_NOTE}: the poll crossed its limit of {self.guard.limit}",
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

    def finish_guard(self) -> None:
        """Log a held poll, or release the leads held only while the poll's size was unknown."""
        result = self.result
        finished = self.complete and result.status == "ok"
        ending = self.guard.ending(finished=finished, dry_run=self.dry_run)
        if ending is Ending.OVER_LIMIT:
            result.held = result.eligible
            if self.dry_run:
                preview_held(result)
            else:
                log_poll_held(self.sync.name, result, self.guard.limit, self.mode.actor)
        elif ending is Ending.STAYS_HELD:
            result.held = len(self.guard.new_leads.ids)
            log_stays_held(self.sync.name, result.held, self.guard.limit, self.mode.actor)
        elif ending is Ending.RELEASE:
            self.release()

    def release(self) -> None:
        """Queue the poll's held new leads: it ended within its limit after all."""
        result = self.result
        ids = self.guard.new_leads.ids
        try:
            with self.session_factory.begin() as session:
                released = len(
                    ledger.move_by_salesforce_id(
                        session,
                        self.sync.name,
                        ids,
                        source=_HELD,
                        target=_QUEUED,
                        reason=f"released by its poll: {result.eligible} new leads, "
                        f"within the limit of {self.guard.limit}",
                        now=self.now(),
                    )
                )
        except SQLAlchemyError as exc:
            result.held = len(ids)
            log.error("cannot release the poll's held leads", sync=self.sync.name, error=str(exc))
            return
        result.queued += released

    def remember(self, plan: PagePlan) -> None:
        for lead, state, _note, _change in plan.decided:
            self.seen[lead.salesforce_id] = ExistingLead(-1, state.value, lead.digest, lead.stamp)
            if state is LeadState.QUEUED and lead.agent_id and lead.phone_e164:
                self.taken.add((lead.agent_id, lead.phone_e164))


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
    poller = Poller(
        session_factory, source, sync, now, dry_run, stop, max_api_usage_percent, limit_pause
    )
    try:
        result = poller.run()
    except SQLAlchemyError as exc:  # the database itself is unreachable: visible, not a crash
        result = poller.result
        database_failure(result, exc)
        POLLS.labels(sync=sync.name, status="error").inc()
    result.duration_seconds = time.monotonic() - started
    log_finished(result, dry_run=dry_run)
    return result
