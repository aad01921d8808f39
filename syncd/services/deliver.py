"""Deliver queued leads to SimZ: claim, POST, record, crash-safe.

The rules: docs/design.md#guarantees, #lead-states and #simz-answers.

The order of events for one batch is the whole safety argument:

1. **Claim** (one committed transaction): pauses are checked, up to
   ``batch_size`` due leads move ``queued -> sending`` under a new batch row
   whose ``outcome`` is NULL (in flight). The body is built from the payloads
   read in that transaction (with ``simz.webhook``, each lead's ``customData``
   gains its correlation value and ``options`` the ``webhookUrl``, at the send
   only: docs/call-outcomes.md#correlation).
2. **POST**, outside any transaction, on the delivery's sender thread. It is
   never interrupted; ``simz.timeout.total`` bounds the wait for it. If ``stop``
   is set between 1 and 2, nothing was sent: the leads go back to ``queued`` and
   the batch row is closed ``abandoned``.
3. **Outcome** (one committed transaction): the answer is classified by
   :mod:`syncd.domain.responses`, planned as data by
   :func:`syncd.domain.outcome.plan_outcome` and the plan applied with set-based
   SQL (:func:`syncd.adapters.outbox.apply_plan`). Counts, metrics and log lines
   follow (:mod:`syncd.services.delivery_report`).

While a POST is in flight the next batch is claimed *ahead* (step 1 with
``posted_at`` left empty), so the database work overlaps SimZ's answer. It is
released for sending (``posted_at`` set) in the same transaction that records
the answer before it, or abandoned if that answer stops the agent. There is
still one POST in flight per sync at a time, and each is decided after the
answer before it is recorded.

A crash between 1 and 3 leaves leads in ``sending``; :func:`recover_in_flight`
turns those of released batches into ``uncertain`` at start-up, so they are
never sent twice, and puts those of a batch claimed ahead back in the queue.
With several replicas (PostgreSQL), only the holder of a sync's lease delivers
it, each claim is fenced by that lease, and the recovery runs per sync when a
lease changes hands (:mod:`syncd.services.leadership`).
"""

from __future__ import annotations

import contextvars
import os
import random
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import operator_pauses, outbox
from syncd.adapters.orm import utcnow
from syncd.adapters.outbox import Claim, ClaimedLead
from syncd.adapters.simz import MaybeSent, NothingSent, SimzClient, SimzReply, SubmitCancelled
from syncd.config.models import SimzConfig, SyncConfig
from syncd.domain import backoff
from syncd.domain.batching import request_body
from syncd.domain.call_ref import make_ref
from syncd.domain.dial_record import rules_version
from syncd.domain.gate import GateRules
from syncd.domain.outcome import (
    Limits,
    OutcomePlan,
    Reply,
    Step,
    plan_abandoned,
    plan_outcome,
    plan_unrecorded,
)
from syncd.domain.responses import Classified, Handling, classify, maybe_sent, nothing_sent
from syncd.logs import get_logger
from syncd.services import delivery_activity
from syncd.services.call_window import calling_rules
from syncd.services.delivery_report import DeliveryReport
from syncd.services.delivery_report import DeliveryResult as DeliveryResult
from syncd.services.pause_board import board_for
from syncd.services.speed_to_lead import observe_batch

log = get_logger(__name__)

RECOVERY_REASON = "process stopped while the batch was in flight"
#: Why delivery to an agent ended with a batch claimed ahead (the audit trail's words).
_STOPPED_BY = {
    Step.NEXT_AGENT: "the answer before it ended delivery to this agent for now",
    Step.STOP_KEY: "the answer before it stopped delivery with this API key for now",
    Step.STOPPED: "delivery stopped",
    Step.CONTINUE: "delivery stopped",
}
STOP_BEFORE_SEND = "stop requested before the batch was sent"


#: What a POST came to: the classified decision and the raw answer (None: no answer).
_Answer = tuple[Classified, SimzReply | None]


@dataclass(frozen=True)
class _Part:
    """Half of a batch SimZ refused whole (nothing queued), not yet sent on its own.

    Its leads stay ``sending`` under the parent batch row, closed as ``split``.
    """

    parent: Claim
    leads: tuple[ClaimedLead, ...]

    @property
    def batch_id(self) -> int:
        return self.parent.batch_id

    @property
    def agent_id(self) -> str:
        return self.parent.agent_id


def gate_rules(sync: SyncConfig) -> GateRules:
    """The send gate's rules for ``sync`` (checked again as each batch is claimed)."""
    rules = sync.rules
    return GateRules(
        respect_do_not_call=rules.respect_do_not_call,
        duplicate_window=rules.duplicate_phone_window,
        consent=rules.consent.rule if rules.consent is not None else None,
        caps=tuple(cap.cap for cap in rules.max_sends_per_number),
        over_cap_skip=rules.over_cap == "skip",
        version=rules_version(effective_rules(sync)),
    )


def effective_rules(sync: SyncConfig) -> dict[str, Any]:
    """What decides whether a lead of ``sync`` may be dialled, as plain JSON values.

    The sync's ``rules`` section (DoNotCall, the duplicate-phone window, consent,
    the frequency caps, ``over_cap``) and its ``calling_hours`` (with any state
    rules, each described with its source), defaults included: the body its dial
    decisions' ``rules_version`` hashes (:func:`syncd.domain.dial_record.rules_version`).
    """
    hours = sync.calling_hours
    body: dict[str, Any] = {
        "rules": sync.rules.model_dump(mode="json"),
        "calling_hours": hours.model_dump(mode="json") if hours is not None else None,
    }
    if hours is not None and hours.profile is not None:
        # The state rules the profile applies, as shipped and overridden: a release
        # whose data changed decides by other rules, so it has another version.
        body["state_rules"] = {
            code: rule.describe() for code, rule in sorted(hours.state_rules.items())
        }
    return body


def default_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def recover_in_flight(
    session_factory: sessionmaker[Session], *, now: Callable[[], datetime] = utcnow
) -> int:
    """At start-up: leads left ``sending`` become ``uncertain``; open batch rows ``interrupted``.

    Assumes this process is the only one delivering from this database.
    """
    with session_factory.begin() as session:
        count = outbox.recover_in_flight(session, now(), RECOVERY_REASON)
    if count:
        log.error(
            "in-flight leads marked uncertain",
            leads=count,
            reason=RECOVERY_REASON,
            action="check SimZ, then `syncd requeue` the leads it did not receive",
        )
    return count


def deliver_sync(
    session_factory: sessionmaker[Session],
    client: SimzClient,
    sync: SyncConfig,
    simz: SimzConfig,
    *,
    now: Callable[[], datetime] = utcnow,
    stop: threading.Event | None = None,
    worker: str | None = None,
    rng: Callable[[], float] = random.random,
    fence: Callable[[Session], bool] | None = None,
    activity: delivery_activity.DeliveryActivity | None = None,
) -> DeliveryResult:
    """Claim and send batches for every agent of ``sync`` until nothing is due or ``stop``.

    ``fence`` (several replicas, :mod:`syncd.services.leadership`) runs inside each
    claim's transaction; when it says False this replica no longer leads the sync
    and claims nothing more (so it sends nothing more). While leads are being
    sent the pass marks ``activity`` (the process's by default), and write-back
    gives way to it (:mod:`syncd.services.delivery_activity`).
    """
    return _Delivery(
        session_factory,
        client,
        sync,
        simz,
        now,
        stop,
        worker,
        rng,
        fence,
        activity or delivery_activity.PROCESS,
    ).run()


class _Delivery:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        client: SimzClient,
        sync: SyncConfig,
        simz: SimzConfig,
        now: Callable[[], datetime],
        stop: threading.Event | None,
        worker: str | None,
        rng: Callable[[], float],
        fence: Callable[[Session], bool] | None,
        activity: delivery_activity.DeliveryActivity,
    ) -> None:
        self.sessions = session_factory
        self.activity = activity
        self.client = client
        self.sync = sync
        self.simz = simz
        self.now = now
        self.stop = stop
        self.worker = worker or default_worker()
        self.rng = rng
        self.fence = fence
        self.credential = client.default_credential
        self.policy = backoff.BackoffPolicy(
            simz.backoff.initial, simz.backoff.max, simz.backoff.multiplier
        )
        self.result = DeliveryResult(sync=sync.name)
        self.options: dict[str, Any] | None = (
            sync.options.model_dump(mode="json", exclude_none=True) if sync.options else None
        )
        #: Webhooks on: the customData key and the HMAC secret of each lead's correlation value.
        self.correlation: tuple[str, bytes] | None = None
        if simz.webhook is not None:
            hook = simz.webhook
            self.correlation = (
                hook.correlation_key,
                hook.correlation_secret.get_secret_value().encode(),
            )
            self.options = {**(self.options or {}), "webhookUrl": hook.hook_url()}
        self.log = log.bind(sync=sync.name, credential=self.credential)
        self.report = DeliveryReport(
            self.result, self.log, board_for(session_factory), sync.name, self.credential
        )
        #: Agents whose claim got past every pause in this cycle.
        self.unpaused: set[str] = set()
        self.rules = gate_rules(sync)
        self.calling_rules = calling_rules(sync.calling_hours)

    def _stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    # ------------------------------------------------------------------ the cycle

    def run(self) -> DeliveryResult:
        with self.sessions.begin() as session:
            agents = outbox.queued_agents(session, self.sync.name)
            if agents:
                # The rules this pass's dial decisions name, kept once per version.
                outbox.record_rules_version(
                    session,
                    sync_name=self.sync.name,
                    version=self.rules.version,
                    rules=effective_rules(self.sync),
                    now=self.now(),
                )
        # One thread POSTs while this one records the last answer and claims ahead.
        with (
            self.activity.sending() if agents else nullcontext(),
            ThreadPoolExecutor(1, thread_name_prefix=f"simz-{self.sync.name}") as sender,
        ):
            for agent in agents:
                step = self._agent(agent, sender)
                if step in (Step.STOP_KEY, Step.STOPPED):
                    break
        self.report.expire(self.unpaused, self.now())
        return self.result

    def _agent(self, agent: str, sender: ThreadPoolExecutor) -> Step:
        current = self._claim(agent, posted=True)
        while isinstance(current, Claim):
            if self._stopped():
                self._abandon([current], STOP_BEFORE_SEND)
                return Step.STOPPED
            flight = sender.submit(contextvars.copy_context().run, self._exchange, current)
            try:
                ahead = self._claim(agent, posted=False)
            except BaseException:
                self._settle_quietly(current, flight)
                raise
            step = self._settle(current, flight, ahead)
            if step is not Step.CONTINUE:
                return step
            current = ahead
        return current

    def _claim(self, agent: str, *, posted: bool) -> Claim | Step:
        """Claim the next batch of ``agent`` in one transaction; how to go on if none."""
        if self._stopped():
            return Step.STOPPED
        with self.sessions.begin() as session:
            current = self.now()
            if self.fence is not None and not self.fence(session):
                self.log.warning("lease not held: delivery stops claiming", agent=agent)
                return Step.STOPPED
            found = outbox.claim_pauses(session, self.sync.name, self.credential, agent, current)
            pauses, simz_pauses = found.operator, found.simz
            claim = None
            if not simz_pauses and not pauses:
                claim = outbox.claim(
                    session,
                    sync_name=self.sync.name,
                    agent_id=agent,
                    credential=self.credential,
                    limit=self.simz.batch_size,
                    now=current,
                    worker=self.worker,
                    posted=posted,
                    rules=self.rules,
                    calling_rules=self.calling_rules,
                )
        if pauses:
            return self._paused(agent, pauses)
        if simz_pauses:
            key_level = self.report.still_paused(agent, simz_pauses)
            return Step.STOP_KEY if key_level else Step.NEXT_AGENT
        self.unpaused.add(agent)
        return claim if claim is not None else Step.NEXT_AGENT

    def _paused(self, agent: str, pauses: list[operator_pauses.Pause]) -> Step:
        """An operator paused this sync or this agent: send nothing of it this cycle."""
        self.result.paused = True
        for pause in pauses:
            self.log.debug(
                "delivery paused by an operator",
                agent=agent,
                scope=pause.scope,
                name=pause.name,
                reason=pause.reason,
                paused_by=pause.paused_by,
            )
        sync_level = any(pause.scope == operator_pauses.OPERATOR_SYNC for pause in pauses)
        return Step.STOP_KEY if sync_level else Step.NEXT_AGENT

    # ------------------------------------------------------------------ one batch

    def _exchange(self, claim: Claim) -> _Answer:
        """POST one batch and classify the answer (runs on the sender thread).

        Raises :class:`SubmitCancelled` if ``stop`` came while waiting for the rate limit.
        """
        leads = claim.leads
        refs = None
        if self.correlation is not None:
            # Added at the send only: the stored payload stays as mapped (one HMAC per lead).
            key, secret = self.correlation
            refs = (key, [make_ref(secret, lead.salesforce_id, lead.id) for lead in leads])
        body = request_body((lead.payload for lead in leads), self.options, refs)
        try:
            reply = self.client.submit(claim.agent_id, body, stop=self.stop)
        except NothingSent as exc:
            return nothing_sent(exc.reason), None
        except MaybeSent as exc:
            return maybe_sent(exc.reason), None
        return classify(reply.status, reply.body, len(claim.leads)), reply

    def _settle(self, claim: Claim, flight: Future[_Answer], ahead: Claim | Step) -> Step:
        """Wait for ``claim``'s answer and record it; release ``ahead`` or abandon it."""
        waiting = [ahead] if isinstance(ahead, Claim) else []
        try:
            decision, reply = flight.result()
        except SubmitCancelled:
            self._abandon([claim, *waiting], STOP_BEFORE_SEND)
            return Step.STOPPED
        except BaseException:
            self._abandon_quietly(waiting)
            raise
        release = waiting[0] if waiting and not self._stopped() else None
        try:
            if decision.action is Handling.RECORD:
                # The common case: the next batch is released in this same transaction.
                step, _halves = self._record_checked(claim, decision, reply, release)
                if release is not None:
                    return step
            else:
                step = self._follow(claim, decision, reply)
        except BaseException:
            self._abandon_quietly(waiting)
            raise
        if not waiting:
            return step
        if step is Step.CONTINUE and release is not None:  # e.g. a split, all halves sent
            with self.sessions.begin() as session:
                outbox.mark_posted(session, release.batch_id, self.now())
            return step
        if step is Step.CONTINUE:  # stop was requested
            self._abandon(waiting, STOP_BEFORE_SEND)
            return Step.STOPPED
        self._abandon(waiting, f"claimed ahead, not sent: {_STOPPED_BY[step]}")
        return step

    def _settle_quietly(self, claim: Claim, flight: Future[_Answer]) -> None:
        """Claiming ahead failed: still record the answer of the batch in flight."""
        try:
            self._settle(claim, flight, Step.STOPPED)
        except Exception:
            self.log.exception("could not record the batch in flight", batch=claim.batch_id)

    def _abandon_quietly(self, claims: list[Claim]) -> None:
        if not claims:
            return
        try:
            self._abandon(claims, "claimed ahead, not sent: delivery failed")
        except Exception:
            self.log.exception("claimed batch left sending until restart", batch=claims[0].batch_id)

    def _follow(self, claim: Claim, decision: Classified, reply: SimzReply | None) -> Step:
        """Record an answer that is not a plain success; on a split, send the halves in
        turn (each its own batch row, opened only right before its own POST)."""
        step, pending = self._record_checked(claim, decision, reply)
        while pending and step is Step.CONTINUE:
            part = pending.pop(0)
            if self._stopped():
                self._abandon([part, *pending], STOP_BEFORE_SEND)
                return Step.STOPPED
            opened = self._open(part)
            if opened is None:
                self._abandon([part, *pending], "lease lost before the split part was sent")
                return Step.STOPPED
            try:
                decision, reply = self._exchange(opened)
            except SubmitCancelled:
                self._abandon([opened, *pending], STOP_BEFORE_SEND)
                return Step.STOPPED
            step, halves = self._record_checked(opened, decision, reply)
            pending[:0] = halves
        if pending:
            self._abandon(pending, "split batch not sent: delivery of this agent paused")
        return step

    def _record_checked(
        self,
        claim: Claim,
        decision: Classified,
        reply: SimzReply | None,
        release: Claim | None = None,
    ) -> tuple[Step, list[_Part]]:
        try:
            return self._record(claim, decision, reply, release)
        except Exception:
            self._record_failed(claim, decision)
            raise

    def _record_failed(self, claim: Claim, decision: Classified) -> None:
        """Recording the answer failed (database trouble): the POST happened, so at best
        ``uncertain`` now; if even that fails the leads stay ``sending`` until start-up
        recovery makes them ``uncertain``. Either way they are never resent."""
        self.log.exception(
            "could not record a SimZ answer", agent=claim.agent_id, batch=claim.batch_id
        )
        plan = plan_unrecorded(decision, claim.leads)
        try:
            with self.sessions.begin() as session:
                self._apply(session, plan, claim.batch_id, claim.agent_id)
        except Exception:
            self.log.exception("leads left sending until restart", batch=claim.batch_id)

    def _open(self, part: _Part) -> Claim | None:
        """Give a split part its own in-flight batch row, committed before its POST.

        Until then its leads stay ``sending`` under the parent batch, which is already
        closed as ``split``: recovery knows such leads were never posted again.
        """
        with self.sessions.begin() as session:
            if self.fence is not None and not self.fence(session):
                return None
            return outbox.rebatch(
                session,
                part.parent,
                part.leads,
                credential=self.credential,
                now=self.now(),
                worker=self.worker,
            )

    def _abandon(self, items: Sequence[Claim | _Part], reason: str) -> None:
        """Nothing of these batches was sent: leads back to ``queued`` as they were."""
        with self.sessions.begin() as session:
            current = self.now()
            for item in items:
                plan = plan_abandoned(item.leads, reason, split_part=isinstance(item, _Part))
                self._apply(session, plan, item.batch_id, item.agent_id, current)
        for item in items:
            self.report.abandoned(
                item.agent_id, item.batch_id, len(item.leads), reason, part=isinstance(item, _Part)
            )

    def _apply(
        self,
        session: Session,
        plan: OutcomePlan,
        batch_id: int,
        agent_id: str,
        current: datetime | None = None,
    ) -> outbox.Applied:
        """Carry out a plan that releases no batch claimed ahead."""
        return outbox.apply_plan(
            session,
            plan,
            batch_id=batch_id,
            credential=self.credential,
            agent_id=agent_id,
            now=current if current is not None else self.now(),
        )

    def _record(
        self,
        claim: Claim,
        decision: Classified,
        reply: SimzReply | None,
        release: Claim | None = None,
    ) -> tuple[Step, list[_Part]]:
        """Plan the answer and apply the plan in one transaction; how to go on and any
        split halves.

        ``release`` (a plain success only): a batch claimed ahead, released for sending
        in the same transaction.
        """
        current = self.now()
        plan = plan_outcome(
            decision,
            claim.leads,
            agent_id=claim.agent_id,
            credential=self.credential,
            reply=_reply_facts(reply),
            limits=Limits(self.simz.max_attempts, self.policy, self.rng()),
            now=current,
        )
        with self.sessions.begin() as session:
            applied = outbox.apply_plan(
                session,
                plan,
                batch_id=claim.batch_id,
                credential=self.credential,
                agent_id=claim.agent_id,
                now=current,
                release=release.batch_id if release is not None else None,
            )
        observe_batch(claim, plan, current)
        self.report.batch(claim.agent_id, claim.batch_id, len(claim.leads), decision, reply, plan)
        self.report.pauses(claim.agent_id, decision, plan, applied.pause)
        by_id = {lead.id: lead for lead in claim.leads}
        halves = [_Part(claim, tuple(by_id[i] for i in half)) for half in plan.halves]
        return plan.step, halves


def _reply_facts(reply: SimzReply | None) -> Reply | None:
    """The plain facts of an HTTP answer that planning reads."""
    if reply is None:
        return None
    return Reply(reply.status, reply.body, reply.headers.get("retry-after"), reply.duration)
