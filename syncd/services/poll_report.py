"""What a poll tells the operator: its result, the poll_runs row, metrics and log lines.

One ``poll finished`` line per poll (``syncd once`` and the scheduler print
the same result), a ``poll_runs`` row with the counts, and the blast-radius
guard's lines: a poll (or a stream intake) held, and a held poll that ended
early, each with the operator's next step.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import poll_store
from syncd.config.models import SyncConfig
from syncd.domain.page_plan import PagePlan
from syncd.domain.states import LeadState
from syncd.logs import get_logger
from syncd.metrics import (
    DO_NOT_CALL_UNRECOGNISED,
    LAST_SUCCESSFUL_POLL,
    PAUSED,
    POLL_DURATION,
    POLLS,
    RECORDS_POLLED,
)

# The poll's own logger: its lines read the same wherever the poll runs them from.
log = get_logger("syncd.services.poll")

PollStatus = Literal["ok", "paused", "error"]
_QUEUED = LeadState.QUEUED.value
_HELD = LeadState.HELD.value
#: Dry runs keep at most this many preview rows (the counts stay exact).
PREVIEW_LIMIT = 10_000
#: The counts of :class:`PollResult` that ``syncd_records_polled_total`` adds up.
RECORD_COUNTS = ("new", "updated", "unchanged", "invalid", "skipped")


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


def count_page(result: PollResult, plan: PagePlan, sync: SyncConfig, *, dry_run: bool) -> None:
    """Add one written (or, dry, previewed) page to ``result``; warn of odd DoNotCall values."""
    result.unchanged += plan.unchanged
    result.updated += len(plan.recorded)
    if plan.unrecognised and not dry_run:
        DO_NOT_CALL_UNRECOGNISED.labels(sync=sync.name).inc(len(plan.unrecognised))
        log.warning(
            "DoNotCall value not recognised: leads held back",
            sync=sync.name,
            records=len(plan.unrecognised),
            salesforce_ids=plan.unrecognised[:20],
            field=sync.rules.do_not_call_field,
            callable_values=sync.rules.do_not_call_callable_values,
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
            pass  # counted at the poll's end: held for good, or released and queued
        else:
            result.queued += 1
        if dry_run and len(result.preview) < PREVIEW_LIMIT:
            result.preview.append(
                PreviewRow(lead.salesforce_id, state.value, lead.agent_id, note, change)
            )
    if plan.watermark is not None and (
        result.watermark is None or plan.watermark > result.watermark
    ):
        result.watermark = plan.watermark  # for a dry run: where it would be


def preview_held(result: PollResult) -> None:
    """A dry run over its limit: the new leads it counted as queued would be held."""
    result.queued -= result.eligible
    result.preview = [
        replace(row, state=_HELD) if row.change == "new" and row.state == _QUEUED else row
        for row in result.preview
    ]


def reader_word(actor: str) -> str:
    """What the operator calls the read in log lines: a ``backfill``, a ``reconcile``'s
    intake, else a ``poll``."""
    return actor if actor in ("backfill", "reconcile") else "poll"


#: (sync, reader) pairs whose new leads are held until their read ends, as last logged.
_HOLDING: set[tuple[str, str]] = set()
_HOLDING_LOCK = threading.Lock()


def log_hold(
    sync_name: str, actor: str, *, holds: bool, records: int | None, limit: int | None
) -> None:
    """Log when a sync's reads start (or stop) holding their new leads until they end.

    Once the lookback holds more records than the limit, every poll holds until
    it ends; that is said once, when it starts, and again when it stops, not at
    every poll.
    """
    word = reader_word(actor)
    key = (sync_name, word)
    with _HOLDING_LOCK:
        was = key in _HOLDING
        if holds:
            _HOLDING.add(key)
        else:
            _HOLDING.discard(key)
    if holds and not was:
        log.info(
            f"new leads held until the {word} ends",
            sync=sync_name,
            records=records,
            limit=limit,
            note="logged once until a read fits the limit again",
        )
    elif was and not holds:
        log.info(f"new leads no longer held until the {word} ends", sync=sync_name, limit=limit)


def log_poll_held(
    sync_name: str, result: PollResult, limit: int | None, actor: str = "poll"
) -> None:
    log.error(
        f"{reader_word(actor)} held by the blast-radius guard",
        sync=sync_name,
        new=result.eligible,
        limit=limit,
        hint=f"check `syncd leads --state held --sync {sync_name}`, then "
        f"`syncd release --sync {sync_name}` or `syncd discard --sync {sync_name}`",
    )


def log_stays_held(sync_name: str, held: int, limit: int | None, actor: str = "poll") -> None:
    log.error(
        f"{reader_word(actor)} ended early while holding its new leads: they stay held",
        sync=sync_name,
        held=held,
        limit=limit,
    )


def log_intake_held(sync_name: str, leads: int, left: int | None, window: timedelta) -> None:
    log.error(
        "stream intake held by the blast-radius guard",
        sync=sync_name,
        leads=leads,
        left_in_window=left,
        window=str(window),
        hint=f"check `syncd leads --state held --sync {sync_name}`, then "
        f"`syncd release` or `syncd discard`",
    )


def count_records(sync_name: str, result: PollResult) -> None:
    """``syncd_records_polled_total`` for what one poll or backfill read."""
    for name in RECORD_COUNTS:
        value = getattr(result, name)
        if value:
            RECORDS_POLLED.labels(sync=sync_name, result=name).inc(value)


def record_run(
    session_factory: sessionmaker[Session],
    result: PollResult,
    run_id: int | None,
    now: datetime,
    *,
    dry_run: bool,
) -> None:
    """Close the poll_runs row, remember the outcome, set metrics (nothing written when dry)."""
    name = result.sync
    if not dry_run:
        try:
            with session_factory.begin() as session:
                _write_run(session, result, run_id, now)
        except SQLAlchemyError as exc:
            log.error("cannot record the poll", sync=name, error=str(exc)[:300])
            if result.status == "ok":
                result.status = "error"
                result.error = "cannot record the poll in the database"
    POLLS.labels(sync=name, status=result.status).inc()
    if result.status == "ok" and not dry_run:
        LAST_SUCCESSFUL_POLL.labels(sync=name).set(time.time())
        PAUSED.labels(scope="polling", name=name).set(0)
    count_records(name, result)


def _write_run(session: Session, result: PollResult, run_id: int | None, now: datetime) -> None:
    if run_id is None:
        run_id = poll_store.start_poll_run(
            session,
            result.sync,
            now,
            result.window_from,
            result.window_to,
            status=result.status,
        )
    poll_store.finish_poll_run(
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
    poll_store.record_outcome(session, result.sync, result.status, result.error, now)


def database_failure(result: PollResult, exc: SQLAlchemyError) -> None:
    """The database itself is unreachable: the poll's status says so (no crash)."""
    cause = getattr(exc, "orig", None) or exc
    result.status = "error"
    result.error = f"database error: {type(cause).__name__}: {str(cause).splitlines()[0]}"


def log_finished(result: PollResult, *, dry_run: bool) -> None:
    """The poll's duration metric and its one ``poll finished`` line."""
    POLL_DURATION.labels(sync=result.sync).observe(result.duration_seconds)
    log.info(
        "poll finished",
        sync=result.sync,
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
