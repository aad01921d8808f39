"""Plan what a classified SimZ answer does to a batch (docs/design.md#simz-answers).

Pure code: a :class:`~syncd.domain.responses.Classified` decision, the batch's
leads (ids and attempts used), the limits (attempt budget, backoff policy, a
jitter draw, the current time) and the raw answer's plain facts go in; an
immutable :class:`OutcomePlan` comes out: every state move with its reason and
values, the pause to open, the halves of a split, the batch row's fields and
how the delivery goes on. The outbox adapter carries a plan out in one
transaction; every row of the answer table is a plain unit test here.

Every string that came from SimZ is bounded before it is planned for storage
(:func:`bounded`), so an over-long ``batchId`` or error ``code`` cannot fail
the write that records an accepted batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, overload

from syncd.domain import backoff
from syncd.domain.responses import Classified, Handling
from syncd.domain.states import LeadState

SCOPE_API_KEY = "api_key"
SCOPE_AGENT = "agent"

#: Longest a Retry-After is honoured (beyond the configured backoff maximum).
RETRY_AFTER_CAP = timedelta(hours=1)
#: The marker that ends a vendor string cut to fit its column.
TRUNCATED = "…[truncated]"
#: Column sizes of the stored vendor strings (``syncd.adapters.orm``).
SIMZ_BATCH_ID_CHARS = 255
ERROR_CODE_CHARS = 100
ERROR_MESSAGE_CHARS = 2000
EXCERPT_CHARS = 500
#: Transition and pause reasons (they quote the vendor's code and message).
REASON_CHARS = 500
#: ``error_code`` of leads whose batch never reached SimZ.
NO_SEND = "NO_SEND"


@overload
def bounded(text: str, limit: int) -> str: ...
@overload
def bounded(text: str | None, limit: int) -> str | None: ...
def bounded(text: str | None, limit: int) -> str | None:
    """``text`` cut to at most ``limit`` characters, ending in :data:`TRUNCATED` if cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def excerpt(body: bytes) -> str:
    """The start of an answer's body as text, at most :data:`EXCERPT_CHARS` characters."""
    text = body[:EXCERPT_CHARS].decode("utf-8", errors="replace")
    if len(body) > EXCERPT_CHARS:
        return text[: EXCERPT_CHARS - len(TRUNCATED)] + TRUNCATED
    return text


def agent_pause_key(credential: str, agent_id: str) -> str:
    """The pause key of one agent under one API key (fingerprint)."""
    return f"{credential}/{agent_id}"


class Step(StrEnum):
    """How the delivery goes on after a batch."""

    CONTINUE = "continue"  # claim the next batch of this agent
    NEXT_AGENT = "next_agent"  # this agent is done for this cycle
    STOP_KEY = "stop_key"  # nothing more for this API key in this cycle
    #: Stop was requested: the cycle ends (never planned from an answer, only from ``stop``).
    STOPPED = "stopped"


class BatchLead(Protocol):
    """What planning needs of a claimed lead."""

    @property
    def id(self) -> int: ...

    @property
    def attempts(self) -> int: ...


@dataclass(frozen=True)
class Reply:
    """The plain facts of an HTTP answer planning needs."""

    status: int
    body: bytes = b""
    retry_after: str | None = None
    duration: float | None = None


@dataclass(frozen=True)
class Limits:
    """The delivery's limits and the random draw for this batch's jitter."""

    max_attempts: int
    policy: backoff.BackoffPolicy
    #: A draw from [0, 1) that scales the jittered backoff.
    jitter: float


@dataclass(frozen=True)
class Move:
    """``sending`` -> ``target`` for ``lead_ids``, and the columns set on the way."""

    lead_ids: tuple[int, ...]
    target: LeadState
    reason: str
    #: Forget the batch (the leads will be claimed again under a new one).
    clear_batch: bool = False
    count_attempt: bool = False
    set_error: bool = False
    error_code: str | None = None
    error_message: str | None = None
    next_attempt_at: datetime | None = None
    simz_batch_id: str | None = None


@dataclass(frozen=True)
class Rejection:
    """One lead refused by SimZ, with its own code and message (already bounded)."""

    lead_id: int
    code: str | None
    message: str | None


@dataclass(frozen=True)
class PausePlan:
    """A pause to open or extend: at a fixed time (429) or after a growing backoff."""

    scope: str
    key: str
    reason: str
    http_status: int | None
    #: Fixed end (Retry-After or jitter); else ``now + exponential(failures, policy)``.
    until: datetime | None = None
    policy: backoff.BackoffPolicy | None = None
    now: datetime | None = None

    def ends(self, failures: int) -> datetime:
        """When the pause ends once it counts ``failures`` failures in a row."""
        if self.until is not None:
            return self.until
        assert self.policy is not None and self.now is not None
        return self.now + backoff.exponential(failures, self.policy)


@dataclass(frozen=True)
class BatchRow:
    """The fields of the batch row closed by the answer."""

    outcome: str
    http_status: int | None
    excerpt: str | None
    duration: float | None = None
    simz_batch_id: str | None = None
    accepted: int | None = None
    rejected: int | None = None


@dataclass(frozen=True)
class Counts:
    """Leads by what became of them."""

    accepted: int = 0
    rejected: int = 0
    requeued: int = 0
    uncertain: int = 0
    failed: int = 0

    def items(self) -> tuple[tuple[str, int], ...]:
        return (
            ("accepted", self.accepted),
            ("rejected", self.rejected),
            ("requeued", self.requeued),
            ("uncertain", self.uncertain),
            ("failed", self.failed),
        )


@dataclass(frozen=True)
class OutcomePlan:
    """Everything one answer does, as plain values."""

    batch: BatchRow
    step: Step
    counts: Counts
    moves: tuple[Move, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    rejection_reason: str = ""
    #: The SimZ batch id stored on rejected leads (a 200's ``batchId``).
    rejection_batch_id: str | None = None
    #: A plain success ends the API key's and the agent's pauses.
    clear_pauses: bool = False
    pause: PausePlan | None = None
    #: A split: the two halves, in order, each sent on its own.
    halves: tuple[tuple[int, ...], ...] = ()
    #: Why the batch ended delivery with an error worth reporting (None: no error).
    error: str | None = None
    #: Leads whose attempt budget is spent and the reason they failed.
    failure_reason: str | None = None
    #: Odd things about the answer worth a warning (counts that disagree, bad indexes).
    warnings: tuple[str, ...] = ()
    #: The batch row was closed before (a split part's parent, closed ``split``): leave it.
    keep_batch_row: bool = False

    @property
    def outcome(self) -> str:
        return self.batch.outcome


@dataclass(frozen=True)
class _Facts:
    """One answer's inputs, gathered for the per-action planners."""

    decision: Classified
    ids: tuple[int, ...]
    leads: tuple[BatchLead, ...]
    agent_id: str
    credential: str
    reply: Reply | None
    limits: Limits
    now: datetime

    @property
    def status(self) -> int | None:
        return self.reply.status if self.reply is not None else None

    def row(
        self,
        outcome: str,
        *,
        simz_batch_id: str | None = None,
        accepted: int | None = None,
        rejected: int | None = None,
    ) -> BatchRow:
        reply = self.reply
        return BatchRow(
            outcome=outcome,
            http_status=self.status,
            excerpt=(
                excerpt(reply.body)
                if reply is not None
                else bounded(self.decision.reason, EXCERPT_CHARS)
            ),
            duration=reply.duration if reply is not None else None,
            simz_batch_id=simz_batch_id,
            accepted=accepted,
            rejected=rejected,
        )


def plan_outcome(
    decision: Classified,
    leads: Sequence[BatchLead],
    *,
    agent_id: str,
    credential: str,
    reply: Reply | None,
    limits: Limits,
    now: datetime,
) -> OutcomePlan:
    """What the answer ``decision`` (to a POST of ``leads``) does, as an :class:`OutcomePlan`."""
    ids = tuple(lead.id for lead in leads)
    facts = _Facts(decision, ids, tuple(leads), agent_id, credential, reply, limits, now)
    return replace(_plan(facts), warnings=decision.warnings)


def _plan(facts: _Facts) -> OutcomePlan:
    action = facts.decision.action
    if action is Handling.RECORD:
        return _record(facts)
    if action is Handling.SPLIT:
        return _split(facts) if len(facts.ids) > 1 else _reject_one(facts)
    if action is Handling.RETRY:
        return _retry(facts)
    if action in (Handling.PAUSE_KEY, Handling.PAUSE_AGENT):
        return _pause(facts)
    return _uncertain(facts)


def _record(facts: _Facts) -> OutcomePlan:
    """200: accepted, except the leads named in ``errors[]`` by index -> rejected."""
    decision = facts.decision
    simz_batch_id = bounded(decision.simz_batch_id, SIMZ_BATCH_ID_CHARS)
    rejections = tuple(
        Rejection(
            facts.ids[index],
            bounded(r.code, ERROR_CODE_CHARS),
            bounded(r.message, ERROR_MESSAGE_CHARS),
        )
        for index, r in decision.rejections.items()
    )
    refused = {r.lead_id for r in rejections}
    accepted = tuple(i for i in facts.ids if i not in refused)
    return OutcomePlan(
        batch=facts.row(
            "accepted",
            simz_batch_id=simz_batch_id,
            accepted=len(accepted),
            rejected=len(rejections),
        ),
        step=Step.CONTINUE,
        counts=Counts(accepted=len(accepted), rejected=len(rejections)),
        moves=(Move(accepted, LeadState.ACCEPTED, decision.reason, simz_batch_id=simz_batch_id),),
        rejections=rejections,
        rejection_reason="rejected by SimZ",
        rejection_batch_id=simz_batch_id,
        clear_pauses=True,
    )


def _reject_one(facts: _Facts) -> OutcomePlan:
    """A 4xx meaning "nothing queued" to a single lead: that lead is the bad one."""
    decision = facts.decision
    code = decision.error_code or f"HTTP_{facts.status}"
    message = decision.error_message or decision.reason
    return OutcomePlan(
        batch=facts.row("rejected", accepted=0, rejected=1),
        step=Step.CONTINUE,
        counts=Counts(rejected=1),
        rejections=(
            Rejection(
                facts.ids[0],
                bounded(code, ERROR_CODE_CHARS),
                bounded(message, ERROR_MESSAGE_CHARS),
            ),
        ),
        rejection_reason=decision.reason,
    )


def _split(facts: _Facts) -> OutcomePlan:
    """A 4xx meaning "nothing queued" to several leads: send each half on its own."""
    middle = len(facts.ids) // 2
    return OutcomePlan(
        batch=facts.row("split"),
        step=Step.CONTINUE,
        counts=Counts(),
        halves=(facts.ids[:middle], facts.ids[middle:]),
    )


def _retry_wait(facts: _Facts, failures: int) -> timedelta:
    """Retry-After on a 429 (capped), else the jittered exponential backoff."""
    policy = facts.limits.policy
    wait = None
    if facts.status == 429 and facts.reply is not None:
        wait = backoff.parse_retry_after(
            facts.reply.retry_after, facts.now, maximum=max(policy.maximum, RETRY_AFTER_CAP)
        )
    if wait is None:
        wait = backoff.full_jitter(failures, policy, lambda: facts.limits.jitter)
    return wait


def _retry(facts: _Facts) -> OutcomePlan:
    """429, 503, nothing sent: one attempt consumed; ``failed`` once the budget is spent."""
    decision, limits = facts.decision, facts.limits
    failures = max(lead.attempts for lead in facts.leads) + 1
    wait = _retry_wait(facts, failures)
    spent = tuple(lead.id for lead in facts.leads if lead.attempts + 1 >= limits.max_attempts)
    again = tuple(lead.id for lead in facts.leads if lead.attempts + 1 < limits.max_attempts)
    code = decision.error_code or (f"HTTP_{facts.status}" if facts.reply else NO_SEND)
    failed = Move(
        spent,
        LeadState.FAILED,
        f"attempt budget ({limits.max_attempts}) spent; last: {decision.reason}",
        clear_batch=True,
        count_attempt=True,
        set_error=True,
        error_code=bounded(code, ERROR_CODE_CHARS),
        error_message=bounded(decision.reason, ERROR_MESSAGE_CHARS),
    )
    queued = replace(failed, lead_ids=again, target=LeadState.QUEUED, reason=decision.reason)
    queued = replace(queued, next_attempt_at=facts.now + wait)
    step, pause = _after_retry(facts, wait)
    return OutcomePlan(
        batch=facts.row("retry"),
        step=step,
        counts=Counts(requeued=len(again), failed=len(spent)),
        moves=(queued, failed),
        pause=pause,
        error=decision.reason if facts.reply is None else None,
        failure_reason=failed.reason if spent else None,
    )


def _after_retry(facts: _Facts, wait: timedelta) -> tuple[Step, PausePlan | None]:
    """A 429 pauses the API key for the wait; no answer at all stops the key too."""
    if facts.status == 429:
        until = facts.now + wait
        return Step.STOP_KEY, PausePlan(
            SCOPE_API_KEY, facts.credential, facts.decision.reason, 429, until=until
        )
    if facts.reply is None:  # SimZ unreachable: every agent of the key shares the host
        return Step.STOP_KEY, None
    return Step.NEXT_AGENT, None


def _pause(facts: _Facts) -> OutcomePlan:
    """401/402 pause the API key, 404 the agent; leads back to ``queued`` untouched."""
    decision = facts.decision
    key_level = decision.action is Handling.PAUSE_KEY
    pause = PausePlan(
        SCOPE_API_KEY if key_level else SCOPE_AGENT,
        facts.credential if key_level else agent_pause_key(facts.credential, facts.agent_id),
        decision.reason,
        decision.status,
        policy=facts.limits.policy,
        now=facts.now,
    )
    return OutcomePlan(
        batch=facts.row("paused"),
        step=Step.STOP_KEY if key_level else Step.NEXT_AGENT,
        counts=Counts(requeued=len(facts.ids)),
        moves=(Move(facts.ids, LeadState.QUEUED, decision.reason, clear_batch=True),),
        pause=pause,
        error=decision.reason,
    )


def _uncertain(facts: _Facts) -> OutcomePlan:
    """The batch may have been queued and we cannot tell: ``uncertain``, never resent."""
    decision, status = facts.decision, facts.status
    return OutcomePlan(
        batch=facts.row("uncertain"),
        # Something is wrong at SimZ: do not pile more batches into the unknown.
        step=Step.STOP_KEY if facts.reply is None else Step.NEXT_AGENT,
        counts=Counts(uncertain=len(facts.ids)),
        moves=(
            Move(
                facts.ids,
                LeadState.UNCERTAIN,
                decision.reason,
                set_error=True,
                error_code=f"HTTP_{status}" if status else None,
                error_message=bounded(decision.reason, ERROR_MESSAGE_CHARS),
            ),
        ),
        error=decision.reason,
    )


def plan_unrecorded(decision: Classified, leads: Sequence[BatchLead]) -> OutcomePlan:
    """Recording ``decision`` failed (database trouble): the POST happened, so at best
    ``uncertain`` now; never sent again (docs/design.md#unknown-is-explicit)."""
    reason = f"answer could not be recorded ({decision.reason})"
    ids = tuple(lead.id for lead in leads)
    return OutcomePlan(
        batch=BatchRow("uncertain", None, reason),
        step=Step.STOP_KEY,
        counts=Counts(uncertain=len(ids)),
        moves=(Move(ids, LeadState.UNCERTAIN, reason),),
        error=reason,
    )


def plan_abandoned(
    leads: Sequence[BatchLead], reason: str, *, split_part: bool = False
) -> OutcomePlan:
    """Nothing of the batch was sent: its leads back to ``queued`` as they were, no
    attempt used; its batch row closed ``abandoned``, unless it is a ``split_part``
    whose parent batch row is closed already (docs/design.md#split-batches)."""
    ids = tuple(lead.id for lead in leads)
    return OutcomePlan(
        batch=BatchRow("abandoned", None, None),
        step=Step.NEXT_AGENT,
        counts=Counts(requeued=len(ids)),
        moves=(Move(ids, LeadState.QUEUED, reason, clear_batch=True),),
        keep_batch_row=split_part,
    )
