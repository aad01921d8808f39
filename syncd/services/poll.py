"""The poll use case: Salesforce records in, leads in the outbox (DESIGN sections 3, 6).

One poll of one sync: plan the window from the saved watermark, run the
query, and for every page in ONE transaction upsert the page's leads and move
the watermark to the largest cursor value in that page. A crash or an error
mid-poll therefore leaves the watermark exactly behind the last committed
page, and the next poll carries on from there.

Records read twice (equal cursor values on a page boundary, the lookback)
are recognised by (sync, Salesforce Id) and their digest: unchanged records
cost no write. A changed record is evaluated again while its lead is still
``queued``/``invalid``/``skipped`` and left alone once delivery has it.
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

from syncd.adapters import poll_store as store
from syncd.adapters.orm import utcnow
from syncd.adapters.salesforce import SalesforceLimitExceeded, SalesforceSourceError
from syncd.config.models import SyncConfig
from syncd.config.types import format_duration
from syncd.domain.mapping import MappedLead, Mapper
from syncd.domain.rules import AgentPhone, decide
from syncd.domain.soql import build_poll_query
from syncd.domain.states import REEVALUATED_ON_CHANGE, LeadState, check_transition
from syncd.domain.window import PollWindow, plan_window
from syncd.logs import get_logger
from syncd.metrics import LAST_SUCCESSFUL_POLL, PAUSED, POLL_DURATION, POLLS, RECORDS_POLLED

log = get_logger(__name__)

PollStatus = Literal["ok", "paused", "error"]
_REEVALUATED = frozenset(state.value for state in REEVALUATED_ON_CHANGE)
#: Dry runs keep at most this many preview rows (the counts stay exact).
PREVIEW_LIMIT = 10_000
#: New leads in one poll after which PostgreSQL's statistics are refreshed (then
#: again each time the poll has doubled what it had inserted at the last refresh).
ANALYZE_AFTER_NEW = 5_000


class RecordSource(Protocol):
    """What the poller needs from Salesforce (:class:`SalesforceSource` has it)."""

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]: ...

    def api_usage(self) -> tuple[int, int] | None: ...


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
    watermark: datetime | None = None
    error: str | None = None
    duration_seconds: float = 0.0
    preview: list[PreviewRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != "error"


# --------------------------------------------------------------------------- page planning


@dataclass
class PagePlan:
    """What one page turns into: rows to insert, rows to update, and counts."""

    inserts: list[store.NewLead] = field(default_factory=list)
    changes: list[store.LeadChange] = field(default_factory=list)
    unchanged: int = 0
    watermark: datetime | None = None
    decided: list[tuple[MappedLead, LeadState, str | None, Literal["new", "updated"]]] = field(
        default_factory=list
    )


def plan_page(
    mapped: Sequence[MappedLead],
    existing: dict[str, store.ExistingLead],
    recent: set[AgentPhone],
    sync: SyncConfig,
    window_start: datetime,
) -> PagePlan:
    """Decide, without I/O, what a page of mapped records does to the outbox."""
    plan = PagePlan()
    latest: dict[str, MappedLead] = {}
    for lead in mapped:  # one Id twice in a page: the later read wins
        if lead.salesforce_id:
            latest[lead.salesforce_id] = lead
        if lead.cursor is not None and (plan.watermark is None or lead.cursor > plan.watermark):
            plan.watermark = lead.cursor
    candidates: list[MappedLead] = []
    for lead in latest.values():
        found = existing.get(lead.salesforce_id)
        if found is not None and (
            found.state not in _REEVALUATED or found.record_hash == lead.digest
        ):
            plan.unchanged += 1  # a re-read, or a lead delivery already has
            continue
        candidates.append(lead)
    window = sync.rules.duplicate_phone_window
    decisions = decide(
        candidates,
        recent=recent,
        respect_do_not_call=sync.rules.respect_do_not_call,
        duplicate_window_label=format_duration(window) if window > timedelta(0) else None,
    )
    allowed: set[str] = set()  # new-lead states already checked (the check depends on them only)
    for lead, decision in zip(candidates, decisions, strict=True):
        cursor = lead.cursor or window_start
        found = existing.get(lead.salesforce_id)
        state = decision.state.value
        if found is None:
            if state not in allowed:
                check_transition(None, state)
                allowed.add(state)
            plan.inserts.append(
                store.NewLead(
                    lead.salesforce_id,
                    lead.agent_id,
                    state,
                    lead.payload,
                    lead.phone_e164,
                    cursor,
                    lead.digest,
                    decision.note,
                )
            )
            plan.decided.append((lead, decision.state, decision.note, "new"))
        else:
            if state != found.state:
                check_transition(found.state, state)
            plan.changes.append(
                store.LeadChange(
                    found.id,
                    found.state,
                    lead.agent_id,
                    state,
                    lead.payload,
                    lead.phone_e164,
                    cursor,
                    lead.digest,
                    decision.note,
                )
            )
            plan.decided.append((lead, decision.state, decision.note, "updated"))
    return plan


def _phones_to_check(mapped: Sequence[MappedLead]) -> set[str]:
    return {
        lead.phone_e164
        for lead in mapped
        if lead.phone_e164 and lead.state is LeadState.QUEUED and lead.agent_id
    }


# --------------------------------------------------------------------------- the use case


class _Poller:
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
        self.seen: dict[str, store.ExistingLead] = {}
        self.taken: set[AgentPhone] = set()
        self.analyze_at = ANALYZE_AFTER_NEW
        # Set by the stream's entry points (end of module): a given window, no watermark move.
        self.fixed_window: PollWindow | None = None
        self.move_watermark = True

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
        if not self.dry_run:
            with self.session_factory.begin() as session:
                self.run_id = store.start_poll_run(
                    session,
                    self.sync.name,
                    now,
                    window.start if window else None,
                    window.end if window else None,
                )
        try:
            if window is not None:
                self.read(window)
        except SalesforceLimitExceeded as exc:
            self.pause(str(exc))
        except SalesforceSourceError as exc:
            self.fail(f"{type(exc).__name__}: {exc}")
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            self.fail(f"database error: {type(cause).__name__}: {str(cause).splitlines()[0]}")
        except Exception as exc:  # never crash the scheduler; make it visible instead
            log.exception("poll failed unexpectedly", sync=self.sync.name)
            self.fail(f"unexpected error: {type(exc).__name__}: {exc}")
        self.record_run(self.run_id)
        return self.result

    def fail(self, message: str) -> None:
        self.result.status = "error"
        self.result.error = message
        log.error("poll error", sync=self.sync.name, error=message)

    def pause(self, reason: str) -> None:
        self.result.status = "paused"
        self.result.error = reason
        if self.dry_run:
            return
        now = self.now()
        with self.session_factory.begin() as session:
            entering = store.enter_pause(
                session, self.sync.name, now + self.limit_pause, reason[:500], now
            )
        PAUSED.labels(scope="polling", name=self.sync.name).set(1)
        if entering:
            log.warning(
                "polling paused",
                sync=self.sync.name,
                reason=reason,
                until=(now + self.limit_pause).isoformat(),
            )

    def over_usage(self) -> str | None:
        usage = self.source.api_usage()
        if usage is None or usage[1] <= 0:
            return None
        used, limit = usage
        if used * 100 > limit * self.max_api_usage_percent:
            return (
                f"Salesforce API usage {used}/{limit} is above "
                f"{self.max_api_usage_percent}% of the daily limit"
            )
        return None

    def read(self, window: PollWindow) -> None:
        soql = build_poll_query(self.sync, window)
        pages = self.source.query_pages(soql)
        try:
            for records in pages:
                self.result.pages += 1
                self.result.fetched += len(records)
                self.apply(records, window)
                reason = self.over_usage()
                if reason is not None:
                    self.pause(reason)
                    return
                if self.stop is not None and self.stop.is_set():
                    return
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    def apply(self, records: list[dict[str, Any]], window: PollWindow) -> None:
        mapped = [self.mapper.map(record) for record in records]
        missing = sum(1 for lead in mapped if not lead.salesforce_id)
        if missing:
            log.warning("records without Id ignored", sync=self.sync.name, count=missing)
        ids = [lead.salesforce_id for lead in mapped if lead.salesforce_id]
        if self.dry_run:
            with self.session_factory() as session:
                plan = self.plan(session, mapped, ids, window, lock=False)
            self.remember(plan)
        else:
            with self.session_factory.begin() as session:
                plan = self.plan(session, mapped, ids, window, lock=True)
                now = self.now()
                store.insert_leads(session, self.sync.name, plan.inserts, now)
                store.update_leads(session, plan.changes, now)
                if plan.watermark is not None and self.move_watermark:
                    store.advance_watermark(session, self.sync.name, plan.watermark, now)
        self.count(plan)
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
            phones = _phones_to_check(mapped)
            if phones:
                recent = store.recent_phones(
                    session,
                    phones,
                    self.now() - duplicate_window,
                    {lead.id for lead in existing.values()},
                    agents={lead.agent_id for lead in mapped if lead.agent_id},
                )
            recent |= self.taken
        return plan_page(mapped, existing, recent, self.sync, window.start)

    def remember(self, plan: PagePlan) -> None:
        for lead, state, _note, _change in plan.decided:
            self.seen[lead.salesforce_id] = store.ExistingLead(-1, state.value, lead.digest)
            if state is LeadState.QUEUED and lead.agent_id and lead.phone_e164:
                self.taken.add((lead.agent_id, lead.phone_e164))

    def count(self, plan: PagePlan) -> None:
        result = self.result
        result.unchanged += plan.unchanged
        for lead, state, note, change in plan.decided:
            if change == "new":
                result.new += 1
            else:
                result.updated += 1
            if state is LeadState.INVALID:
                result.invalid += 1
            elif state is LeadState.SKIPPED:
                result.skipped += 1
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
    transaction; the poll watermark stays where polls left it. Raises what the
    page raises (database errors) for the caller to retry.
    """
    poller = _Poller(
        session_factory, _NO_SOURCE, sync, now, False, None, 100, timedelta(minutes=15)
    )
    poller.move_watermark = False
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
    poller.move_watermark = False
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
