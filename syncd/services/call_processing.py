"""Process stored call-outcome webhooks: outcomes per call, first-call times, opt-outs.

The receiver commits each POST raw in ``call_events`` (status ``new``) before
its 2xx; this turns them into call outcomes (docs/call-outcomes.md):

* **led by one replica**: the lease ``calls`` (:mod:`syncd.adapters.leases`)
  is taken, or renewed, before each batch; a replica without it does nothing
  (``standby``). It is a courtesy, not the safety: claims skip rows another
  transaction holds (PostgreSQL ``SKIP LOCKED``), and every write is idempotent;
* **a batch per transaction**: up to :data:`BATCH` events are claimed in id
  order, each read (:func:`syncd.domain.call_outcome.read_call`), stored and
  marked in that one transaction. A crash leaves the batch ``new``; processing
  it again gives the same rows (the outcome's insert ignores a call already
  stored, the first-call time is set once, the list keeps its first entry);
* **opt-outs**: an outcome whose disposition (after the map) is listed in
  ``opt_out_dispositions`` puts the lead's number on the suppression list
  (source ``call_outcome``) under the number's lock, and skips the number's
  leads still to be sent in every sync and agent, in the same transaction. A
  later hook of a call already stored does not change its outcome, but its
  opt-out is honoured all the same: an opt-out is never dropped.

It runs every 2 s in ``syncd run`` (and at once when the receiver stores an
event, :meth:`syncd.entrypoints.scheduler.JobScheduler.wake_calls`), and once
after delivery in ``syncd once``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import call_outcome_store as store
from syncd.adapters import leases, suppression_store
from syncd.adapters.call_outcome_store import CalledLead, NewEvent
from syncd.adapters.number_locks import lock_phones
from syncd.adapters.orm import utcnow
from syncd.config.calls import WebhookConfig
from syncd.config.models import SyncConfig
from syncd.domain.call_outcome import CallReading, NotRead, ReadingRules, read_call
from syncd.domain.suppression import CALL_OUTCOME, OptOut
from syncd.logs import get_logger
from syncd.metrics import CALL_EVENTS_PROCESSED, CALL_OPTOUT
from syncd.services.speed_to_lead import observe_first_call

log = get_logger(__name__)

#: The lease of the one replica that processes call events.
LEASE = "calls"
LEASE_TTL = timedelta(seconds=10)
#: Events per transaction.
BATCH = 100
#: ``added_by`` of the numbers an opt-out on a call puts on the list.
OPT_OUT_BY = "call outcome"

CallsStatus = Literal["ok", "standby", "error", "stopped"]


def reading_rules(webhook: WebhookConfig) -> ReadingRules:
    """What :func:`read_call` needs of ``simz.webhook``, its paths compiled once."""
    return ReadingRules.build(
        secret=webhook.correlation_secret.get_secret_value().encode(),
        key=webhook.correlation_key,
        paths=webhook.paths.model_dump(),
        disposition_map=webhook.disposition_map,
        opt_out_dispositions=webhook.opt_out_dispositions,
    )


@dataclass
class CallsResult:
    """One run: events by what they became, outcomes stored, numbers opted out, leads skipped."""

    status: CallsStatus = "ok"
    matched: int = 0
    unmatched: int = 0
    unreadable: int = 0
    outcomes: int = 0
    opt_outs: int = 0
    skipped: int = 0
    error: str | None = None

    @property
    def events(self) -> int:
        return self.matched + self.unmatched + self.unreadable


@dataclass(frozen=True)
class _Done:
    """What one event became, for the metrics and logs after the commit."""

    event: NewEvent
    status: str
    created: bool = False
    opt_out: str | None = None
    added: bool = False
    skipped: int = 0
    #: The lead, when this event was its first call (speed to lead's ``first_call``).
    first_call: CalledLead | None = None


class CallProcessor:
    """Processes ``new`` call events while this replica holds the lease ``calls``."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        webhook: WebhookConfig,
        syncs: Sequence[SyncConfig],
        *,
        holder: str,
        now: Callable[[], datetime] = utcnow,
        batch: int = BATCH,
    ) -> None:
        self.sessions = session_factory
        self.rules = reading_rules(webhook)
        self.writeback = frozenset(s.name for s in syncs if s.call_writeback is not None)
        self.holder = holder
        self.now = now
        self.batch = batch
        self.token: int | None = None
        self._lock = threading.Lock()

    def run(self, stop: threading.Event | None = None) -> CallsResult:
        """Process new events in batches until none is left (or ``stop``, or the lease is
        lost). Never raises for database trouble: the result and the log say it."""
        result = CallsResult()
        with self._lock:  # the timer and a wake-up never run two passes here at once
            try:
                while True:
                    if stop is not None and stop.is_set():
                        result.status = "stopped"
                        break
                    if not self._lease():
                        result.status = "standby" if result.status == "ok" else result.status
                        break
                    if not self._batch(result):
                        break
            except SQLAlchemyError as exc:
                result.status = "error"
                result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                log.error("call events not processed", error=result.error)
        return result

    def _lease(self) -> bool:
        with self.sessions.begin() as session:
            grant = None
            if self.token is not None:
                grant = leases.acquire(session, LEASE, self.holder, LEASE_TTL, token=self.token)
            if grant is None:
                grant = leases.acquire(session, LEASE, self.holder, LEASE_TTL)
        self.token = grant.lease.token if grant is not None else None
        return grant is not None

    def _batch(self, result: CallsResult) -> int:
        """One transaction: claim, read, store and mark up to ``batch`` events."""
        with self.sessions.begin() as session:
            events = store.claim_new(session, self.batch)
            readings = [read_call(event.body, self.rules, event.digest) for event in events]
            # Every opt-out number of the batch locked at once, in key order as the
            # intake does: locking them one by one could deadlock with it.
            opting = [r.lead_id for r in readings if isinstance(r, CallReading) and r.opt_out]
            lock_phones(session, store.phones_of(session, opting))
            done = [self._event(session, *pair) for pair in zip(events, readings, strict=True)]
        committed = self.now()
        for item in done:
            self._report(item, committed, result)
        return len(events)

    def _event(self, session: Session, event: NewEvent, reading: CallReading | NotRead) -> _Done:
        if isinstance(reading, NotRead):
            lead = None
            if reading.lead is not None:
                lead = store.lead_named(session, reading.lead[1], reading.lead[0])
            store.mark(
                session,
                event.id,
                reading.status,
                now=self.now(),
                lead_id=lead.id if lead is not None else None,
                detail=reading.detail,
            )
            return _Done(event, reading.status)
        lead = store.lead_named(session, reading.lead_id, reading.salesforce_id)
        if lead is None:
            detail = f"no such lead: {reading.salesforce_id} lead {reading.lead_id}"
            store.mark(session, event.id, store.UNMATCHED, now=self.now(), detail=detail)
            return _Done(event, store.UNMATCHED)
        return self._matched(session, event, lead, reading)

    def _matched(
        self, session: Session, event: NewEvent, lead: CalledLead, reading: CallReading
    ) -> _Done:
        created = store.add_outcome(
            session, event, lead, reading, writeback=lead.sync_name in self.writeback
        )
        first = store.note_first_call(session, lead.id, event.received_at)
        notes = list(reading.notes)
        if not created:
            notes.insert(0, f"call {reading.call_key} was stored already: the first is kept")
        phone, added, skipped = None, False, 0
        if reading.opt_out:
            if lead.phone_e164 is None:
                notes.append("opt-out: the lead has no number to suppress")
            else:
                phone = lead.phone_e164
                added, skipped = self._opt_out(session, event, lead, reading, phone)
        store.mark(
            session,
            event.id,
            store.MATCHED,
            now=self.now(),
            lead_id=lead.id,
            detail="; ".join(notes) or None,
        )
        return _Done(event, store.MATCHED, created, phone, added, skipped, lead if first else None)

    def _opt_out(
        self,
        session: Session,
        event: NewEvent,
        lead: CalledLead,
        reading: CallReading,
        phone: str,
    ) -> tuple[bool, int]:
        """The number on the list (under its lock), its leads still to be sent skipped."""
        disposition = reading.disposition or ""
        opt_out = OptOut(
            phone,
            CALL_OUTCOME,
            f"opted out on a call: disposition {disposition!r} (call event {event.id})",
            OPT_OUT_BY,
            record_id=lead.salesforce_id,
            sync_name=lead.sync_name,
            seen_at=event.received_at,
        )
        added = suppression_store.add(session, [opt_out], self.now)
        reason = f"number opted out on a call: {disposition}"
        skipped = store.cancel_pending(session, phone, reason, self.now())
        return bool(added), len(skipped)

    def _report(self, item: _Done, committed: datetime, result: CallsResult) -> None:
        CALL_EVENTS_PROCESSED.labels(item.status).inc()
        setattr(result, item.status, getattr(result, item.status) + 1)
        result.outcomes += item.created
        if item.first_call is not None:
            lead = item.first_call
            # A hook read before SimZ's accept was recorded (an answer still on its way, or
            # lost) counts 0: the call came no later than the accept.
            accepted = lead.accepted_at or item.event.received_at
            observe_first_call(lead.sync_name, accepted, item.event.received_at)
        if item.status != store.MATCHED:
            log.info(
                "call event not matched to a call", call_event=item.event.id, status=item.status
            )
        if item.opt_out is None:
            return
        seconds = max(0.0, (committed - item.event.received_at).total_seconds())
        CALL_OPTOUT.observe(seconds)
        result.opt_outs += 1
        result.skipped += item.skipped
        log.warning(
            "number opted out on a call",
            call_event=item.event.id,
            added=item.added,
            skipped_leads=item.skipped,
            seconds=round(seconds, 3),
        )

    def close(self) -> None:
        """Let the lease go (a clean stop): another replica processes at once."""
        if self.token is None:
            return
        try:
            with self.sessions.begin() as session:
                leases.release(session, LEASE, self.holder, self.token)
        except SQLAlchemyError as exc:
            log.warning("could not release the call events' lease", error=str(exc))
        self.token = None
