"""The send gate: the rules checked again when delivery claims a lead.

The design: docs/design.md#the-send-gate.

Pure code. A lead is queued under the rules as they stood when its record was
polled; by the time delivery claims it, the record may have become DoNotCall,
or another lead of the same agent with the same number may have been sent,
be in flight, or be waiting ahead of it in the queue. The adapter gathers the
claimed candidates and their rivals (other leads of the agent with one of
their numbers) inside the claim's transaction, and :func:`judge` decides one
:class:`Verdict` per candidate: send it, skip it (with the reason), or leave it
queued until a given time (a rule that says "not now").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from syncd.domain.durations import format_duration
from syncd.domain.states import LeadState


class Action(StrEnum):
    SEND = "send"
    SKIP = "skip"
    WAIT = "wait"


@dataclass(frozen=True)
class Verdict:
    """What the gate decided for one lead; ``rule`` and ``note`` say why (not for SEND)."""

    action: Action
    rule: str | None = None
    note: str | None = None
    until: datetime | None = None
    #: What ``leads.waiting_for`` shows while the lead waits (WAIT only). A wait that
    #: says so there needs no audit note; one that does not is noted and counted.
    waiting_for: str | None = None

    @classmethod
    def skip(cls, rule: str, note: str) -> Verdict:
        return cls(Action.SKIP, rule, note)

    @classmethod
    def wait(cls, rule: str, note: str, until: datetime) -> Verdict:
        """Leave the lead queued and due again at ``until``."""
        return cls(Action.WAIT, rule, note, until)


SEND = Verdict(Action.SEND)


@dataclass(frozen=True)
class Candidate:
    """A due lead the claim is about to take, with what the rules need of it."""

    lead_id: int
    agent_id: str
    phone_e164: str | None
    do_not_call: bool
    #: The record was deleted in Salesforce (or the lead discarded by an operator):
    #: a decision that sticks, whatever brought the lead back to ``queued``.
    stopped: str | None = None


@dataclass(frozen=True)
class Rival:
    """Another lead of the same agent with the same number, as the database has it now."""

    lead_id: int
    phone_e164: str
    state: LeadState
    sent_at: datetime | None


#: A further rule: None when it has nothing against the lead, else its verdict.
Rule = Callable[[Candidate, datetime], "Verdict | None"]


@dataclass(frozen=True)
class GateRules:
    """The claiming sync's rules; ``duplicate_window`` 0 turns the number rule off."""

    respect_do_not_call: bool = True
    duplicate_window: timedelta = timedelta(0)
    extra: tuple[Rule, ...] = ()

    @property
    def checks_numbers(self) -> bool:
        return self.duplicate_window > timedelta(0)


DO_NOT_CALL_RULE = "do_not_call"
STOPPED_RULE = "stopped"
DUPLICATE_RULE = "duplicate_phone"
GATE_DO_NOT_CALL_NOTE = "send gate: DoNotCall is set on the record's latest known state"

#: Rival states that block a number whatever their age (with ``queued`` ones claimed
#: earlier). A ``held`` lead holds its number at intake but not here: it is not about to
#: be called, and once released it is queued and judged at its own claim against
#: whatever was sent meanwhile.
_IN_FLIGHT = frozenset({LeadState.SENDING, LeadState.UNCERTAIN})


def _blocking(candidate: Candidate, rival: Rival, since: datetime, ahead: set[int]) -> str | None:
    """Why ``rival`` holds the candidate's number, or None when it does not."""
    if rival.lead_id == candidate.lead_id:
        return None
    if rival.state in _IN_FLIGHT:
        return f"lead {rival.lead_id} of the same agent is {rival.state.value}"
    if rival.state is LeadState.ACCEPTED and (rival.sent_at is None or rival.sent_at >= since):
        return f"lead {rival.lead_id} of the same agent was accepted"
    queued_ahead = rival.lead_id < candidate.lead_id and rival.lead_id in ahead
    if rival.state is LeadState.QUEUED and queued_ahead:
        return f"lead {rival.lead_id} of the same agent is queued ahead of it"
    return None


def judge(
    candidates: Sequence[Candidate],
    rivals: Iterable[Rival],
    rules: GateRules,
    now: datetime,
) -> list[Verdict]:
    """One verdict per candidate, in the order given (claim order: ascending id).

    * a lead whose record was deleted, or that an operator discarded, is skipped;
    * DoNotCall on the stored record state skips the lead (unless the sync opted out);
    * a further rule (``rules.extra``) may skip it or make it wait;
    * with the number rule on, a rival that is ``sending`` or ``uncertain``, or was
      ``accepted`` within the window, or is ``queued`` ahead of the candidate (a lower
      id) skips it. A candidate of this same claim that the gate skips or defers does
      not count as queued ahead of the later ones; every other queued rival does,
      whatever its age (it will be claimed first).
    """
    since = now - rules.duplicate_window
    window = format_duration(rules.duplicate_window) if rules.checks_numbers else ""
    by_phone: dict[str, list[Rival]] = {}
    for rival in rivals:
        by_phone.setdefault(rival.phone_e164, []).append(rival)
    in_claim = {candidate.lead_id for candidate in candidates}
    # Queued rivals outside this claim always count; candidates only once sent.
    ahead = {
        rival.lead_id
        for group in by_phone.values()
        for rival in group
        if rival.state is LeadState.QUEUED and rival.lead_id not in in_claim
    }
    verdicts: list[Verdict] = []
    for candidate in candidates:
        verdict = _one(candidate, by_phone, rules, now, since, window, ahead)
        if verdict.action is Action.SEND:
            ahead.add(candidate.lead_id)
        verdicts.append(verdict)
    return verdicts


def _one(
    candidate: Candidate,
    by_phone: dict[str, list[Rival]],
    rules: GateRules,
    now: datetime,
    since: datetime,
    window: str,
    ahead: set[int],
) -> Verdict:
    if candidate.stopped is not None:
        return Verdict.skip(STOPPED_RULE, f"send gate: {candidate.stopped}")
    if rules.respect_do_not_call and candidate.do_not_call:
        return Verdict.skip(DO_NOT_CALL_RULE, GATE_DO_NOT_CALL_NOTE)
    for rule in rules.extra:
        found = rule(candidate, now)
        if found is not None and found.action is not Action.SEND:
            return found
    if rules.checks_numbers and candidate.phone_e164:
        for rival in by_phone.get(candidate.phone_e164, ()):
            why = _blocking(candidate, rival, since, ahead)
            if why is not None:
                return Verdict.skip(
                    DUPLICATE_RULE, f"send gate: duplicate phone within {window}: {why}"
                )
    return SEND
