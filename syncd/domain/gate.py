"""The send gate: the rules checked again when delivery claims a lead.

The design: docs/design.md#the-send-gate.

Pure code. A lead is queued under the rules as they stood when its record was
polled; by the time delivery claims it, the record may have become DoNotCall,
its number may have joined the suppression list, its consent may have lapsed,
another lead of the same agent with the same number may have been sent, be in
flight, or be waiting ahead of it in the queue, or the number may have been
called as often as its frequency caps allow. The adapter gathers the claimed
candidates, their rivals (other leads of the agent with one of their numbers)
and what it read about their numbers (:class:`NumberFacts`: the suppression
list, the recent sends of every agent and sync) inside the claim's
transaction, and :func:`decide` rules one :class:`Decision` per candidate: send
it (with the inputs of its dial decision), skip it (with the reason), or leave
it queued until a given time (a rule that says "not now").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from syncd.domain.consent import ConsentCheck, ConsentRule
from syncd.domain.dial_record import dial_inputs
from syncd.domain.durations import format_duration
from syncd.domain.frequency import Cap, CapCheck, next_allowed
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
    #: The record's consent field as stored (``leads.consent``), for the consent rule.
    consent: str | None = None
    #: The per-number caps the local rules of the lead's states add.
    caps: tuple[Cap, ...] = ()
    #: The local rules' evidence (calling hours), or None when none were asked.
    calling_hours: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Rival:
    """Another lead of the same agent with the same number, as the database has it now."""

    lead_id: int
    phone_e164: str
    state: LeadState
    sent_at: datetime | None


@dataclass(frozen=True)
class NumberFacts:
    """What the claim read about the candidates' numbers, across every agent and sync.

    ``suppressed``: the numbers on the suppression list, each with its entry in
    words; ``sends``: when each number was sent (``sending``, ``accepted``,
    ``uncertain``) within the longest frequency cap; ``checked``: whether the
    suppression list was read for these numbers (always, at the claim).
    """

    suppressed: Mapping[str, str] = field(default_factory=dict)
    sends: Mapping[str, Sequence[datetime]] = field(default_factory=dict)
    checked: bool = True


NO_FACTS = NumberFacts(checked=False)
_NO_CAPS = CapCheck(None, None, ())

#: A further rule: None when it has nothing against the lead, else its verdict.
Rule = Callable[[Candidate, datetime], "Verdict | None"]


@dataclass(frozen=True)
class GateRules:
    """The claiming sync's rules; ``duplicate_window`` 0 turns the duplicate-phone rule off.

    ``consent``: the consent rule (None: off); ``caps``: the frequency caps of
    every number (``rules.max_sends_per_number``), to which each lead's local
    caps are added; ``over_cap_skip``: a lead over a cap is skipped instead of
    waiting for the cap's window; ``version``: the version of the sync's
    effective rules its dial decisions name (:func:`syncd.domain.dial_record.rules_version`;
    empty when the caller recorded none, as a claim made outside a delivery).
    """

    respect_do_not_call: bool = True
    duplicate_window: timedelta = timedelta(0)
    extra: tuple[Rule, ...] = ()
    consent: ConsentRule | None = None
    caps: tuple[Cap, ...] = ()
    over_cap_skip: bool = False
    version: str = ""

    @property
    def checks_duplicates(self) -> bool:
        return self.duplicate_window > timedelta(0)


@dataclass(frozen=True)
class Decision:
    """The verdict on one candidate and, when it is sent, its dial decision's ``inputs``."""

    verdict: Verdict
    inputs: Mapping[str, Any] | None = None


DO_NOT_CALL_RULE = "do_not_call"
STOPPED_RULE = "stopped"
DUPLICATE_RULE = "duplicate_phone"
SUPPRESSION_RULE = "suppression"
CONSENT_RULE = "consent"
FREQUENCY_RULE = "frequency_cap"
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
    numbers: NumberFacts = NO_FACTS,
) -> list[Verdict]:
    """One verdict per candidate, in the order given: :func:`decide` without the inputs."""
    return [decision.verdict for decision in decide(candidates, rivals, rules, now, numbers)]


def decide(
    candidates: Sequence[Candidate],
    rivals: Iterable[Rival],
    rules: GateRules,
    now: datetime,
    numbers: NumberFacts = NO_FACTS,
) -> list[Decision]:
    """One decision per candidate, in the order given (claim order: ascending id).

    The checks, in order (the first that objects decides):

    * a lead whose record was deleted, or that an operator discarded, is skipped;
    * DoNotCall on the stored record state skips the lead (unless the sync opted out);
    * a number on the suppression list skips it, with the entry's reason;
    * with the consent rule on, consent that is missing, unreadable or lapsed by
      ``now`` skips it;
    * a further rule (``rules.extra``) may skip it or make it wait;
    * with the duplicate-phone rule on, a rival that is ``sending`` or
      ``uncertain``, or was ``accepted`` within the window, or is ``queued`` ahead
      of the candidate (a lower id) skips it. A candidate of this same claim that
      the gate skips or defers does not count as queued ahead of the later ones;
      every other queued rival does, whatever its age (it will be claimed first);
    * a frequency cap (``rules.caps`` and the lead's own) that the number's sends
      already fill, counting the candidates this claim sends before it, makes the
      lead wait until the cap's window has room (or skips it, ``over_cap_skip``).
    """
    return _Round(candidates, rivals, rules, now, numbers).decide_all()


class _Round:
    """The state one call of :func:`decide` carries from one candidate to the next."""

    def __init__(
        self,
        candidates: Sequence[Candidate],
        rivals: Iterable[Rival],
        rules: GateRules,
        now: datetime,
        numbers: NumberFacts,
    ) -> None:
        self.candidates = candidates
        self.rules = rules
        self.now = now
        self.numbers = numbers
        self.since = now - rules.duplicate_window
        self.duplicates = rules.checks_duplicates
        self.window = format_duration(rules.duplicate_window) if self.duplicates else ""
        self.by_phone: dict[str, list[Rival]] = {}
        for rival in rivals:
            self.by_phone.setdefault(rival.phone_e164, []).append(rival)
        in_claim = {candidate.lead_id for candidate in candidates}
        # Queued rivals outside this claim always count; candidates only once sent.
        self.ahead = {
            rival.lead_id
            for group in self.by_phone.values()
            for rival in group
            if rival.state is LeadState.QUEUED and rival.lead_id not in in_claim
        }
        #: Sends this claim decided, by number: they count against the caps of later ones.
        self.sent_now: dict[str, list[datetime]] = {}
        # What one round works out once and shares: every lead with the same consent
        # value reads the same check (``now`` is the round's), every number with the
        # same sends the same counts, and leads with equal inputs one decision to send.
        self.consents: dict[str | None, ConsentCheck] = {}
        self.cap_checks: dict[tuple[int, tuple[datetime, ...]], CapCheck] = {}
        self.shared: dict[tuple[Any, ...], Decision] = {}

    def decide_all(self) -> list[Decision]:
        decisions: list[Decision] = []
        for candidate in self.candidates:
            decision = self.one(candidate)
            if decision.verdict.action is Action.SEND:
                self.ahead.add(candidate.lead_id)
                if candidate.phone_e164:
                    self.sent_now.setdefault(candidate.phone_e164, []).append(self.now)
            decisions.append(decision)
        return decisions

    def one(self, candidate: Candidate) -> Decision:
        verdict = self.standing(candidate)
        if verdict is not None:
            return Decision(verdict)
        consent = self.consent(candidate)
        if consent is not None and consent.reason is not None:
            return Decision(Verdict.skip(CONSENT_RULE, f"send gate: {consent.reason}"))
        verdict = (self.further(candidate) if self.rules.extra else None) or self.duplicate(
            candidate
        )
        if verdict is not None:
            return Decision(verdict)
        check = self.frequency(candidate)
        if check.full is not None and check.until is not None:
            return Decision(self.over_cap(check.full, check.until, dict(check.counts)))
        return self.send(candidate, consent, check.counts)

    def send(
        self,
        candidate: Candidate,
        consent: ConsentCheck | None,
        counts: tuple[tuple[Cap, int], ...],
    ) -> Decision:
        """The decision to send, with the dial decision's inputs; leads with the same
        inputs share one (read-only) decision, so that the claim serialises each
        distinct set once."""
        checked = self.numbers.checked and bool(candidate.phone_e164)
        hours = candidate.calling_hours
        # By identity, which is cheap to hash: ``consent`` and ``counts`` come from this
        # round's caches and ``hours`` from its candidates, all alive while the round is,
        # so an id is never reused within it (equal values from two objects merely get
        # two equal inputs).
        key = (candidate.do_not_call, id(consent), id(counts), checked, id(hours))
        found = self.shared.get(key)
        if found is None:
            rule = self.rules.consent
            inputs = dial_inputs(
                do_not_call=candidate.do_not_call,
                consent=None if rule is None or consent is None else (rule, consent),
                suppression_checked=checked,
                frequency=counts,
                duplicate_window=self.rules.duplicate_window,
                calling_hours=hours,
                now=self.now,
            )
            found = self.shared[key] = Decision(SEND, inputs)
        return found

    def standing(self, candidate: Candidate) -> Verdict | None:
        """The checks that need no reading of time: stopped, DoNotCall, the suppression list."""
        if candidate.stopped is not None:
            return Verdict.skip(STOPPED_RULE, f"send gate: {candidate.stopped}")
        if self.rules.respect_do_not_call and candidate.do_not_call:
            return Verdict.skip(DO_NOT_CALL_RULE, GATE_DO_NOT_CALL_NOTE)
        listed = self.numbers.suppressed.get(candidate.phone_e164 or "")
        if listed is not None:
            return Verdict.skip(SUPPRESSION_RULE, f"send gate: {listed}")
        return None

    def consent(self, candidate: Candidate) -> ConsentCheck | None:
        rule = self.rules.consent
        if rule is None:
            return None
        found = self.consents.get(candidate.consent)
        if found is None:
            found = self.consents[candidate.consent] = rule.check(candidate.consent, self.now)
        return found

    def further(self, candidate: Candidate) -> Verdict | None:
        for rule in self.rules.extra:
            found = rule(candidate, self.now)
            if found is not None and found.action is not Action.SEND:
                return found
        return None

    def duplicate(self, candidate: Candidate) -> Verdict | None:
        if not (self.duplicates and candidate.phone_e164):
            return None
        for rival in self.by_phone.get(candidate.phone_e164, ()):
            why = _blocking(candidate, rival, self.since, self.ahead)
            if why is not None:
                return Verdict.skip(
                    DUPLICATE_RULE, f"send gate: duplicate phone within {self.window}: {why}"
                )
        return None

    def frequency(self, candidate: Candidate) -> CapCheck:
        """The caps of every number (``rules.caps``) and the lead's own, against its sends.

        Numbers with the same sends under the same caps share one check: the key
        names the lead's own caps by identity (the candidates, alive for the
        round, hold them), which is cheaper to hash than the caps themselves.
        """
        phone = candidate.phone_e164
        if not phone or not (self.rules.caps or candidate.caps):
            return _NO_CAPS
        sends = (*self.numbers.sends.get(phone, ()), *self.sent_now.get(phone, ()))
        key = (id(candidate.caps), sends)
        found = self.cap_checks.get(key)
        if found is None:
            caps = self.rules.caps + candidate.caps
            found = self.cap_checks[key] = next_allowed(caps, sends, self.now)
        return found

    def over_cap(self, cap: Cap, until: datetime, counts: Mapping[Cap, int]) -> Verdict:
        reached = f"send gate: frequency cap {cap.describe()} reached ({counts[cap]} sends)"
        if self.rules.over_cap_skip:
            return Verdict.skip(FREQUENCY_RULE, reached)
        return Verdict.wait(FREQUENCY_RULE, f"{reached}; due again at {until.isoformat()}", until)
