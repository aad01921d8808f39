"""One round of the claim: which due leads are sent, skipped or left to wait (pure, no I/O).

The claim's transaction reads the due leads, asks the sync's calling hours
about them, tries the per-number locks and reads the rivals; this module
decides from those plain values, and the adapter writes the decision
(docs/design.md#the-send-gate).

Calling hours come first and are a rule that waits: a lead outside its window
waits for the opening (no attempt, no state change) and ``leads.waiting_for``
says why (docs/design.md#calling-hours-defer-without-attempts); the gate
(:func:`syncd.domain.gate.judge`) judges the others. With the number rule on,
a lead whose number another transaction holds is left alone: it stays queued,
untouched, for the next claim (docs/design.md#one-decision-per-number).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from syncd.domain.calling_hours import WAITING_FOR
from syncd.domain.gate import Action, Candidate, GateRules, Rival, Verdict, judge

#: (agent, E.164 number): the key of one per-number lock.
AgentPhone = tuple[str, str]

CALLING_HOURS_RULE = "calling_hours"


def calling_hours_wait(opens: datetime) -> Verdict:
    """The verdict for a lead whose calling hours are closed until ``opens``."""
    return Verdict(
        Action.WAIT,
        CALLING_HOURS_RULE,
        "calling hours closed",
        opens,
        waiting_for=WAITING_FOR,
    )


@dataclass(frozen=True)
class RoundPlan:
    """What one round of the claim does to the due leads it read."""

    #: Leads that pass every rule, in claim order (ascending id).
    send: tuple[int, ...] = ()
    #: Leads that become ``skipped``, each with its verdict.
    skip: tuple[tuple[int, Verdict], ...] = ()
    #: Leads left ``queued`` and due again at their verdict's ``until``.
    wait: tuple[tuple[int, Verdict], ...] = ()
    #: Whether any lead was skipped or now waits for a later time, so that another
    #: round may find different leads.
    progressed: bool = False

    @property
    def noted(self) -> tuple[tuple[int, Verdict], ...]:
        """The skips and waits written to the audit trail and counted: all but the
        waits that ``leads.waiting_for`` explains (calling hours)."""
        return self.skip + tuple((i, v) for i, v in self.wait if v.waiting_for is None)


def numbers_to_lock(due: Sequence[Candidate], openings: Mapping[int, datetime]) -> set[AgentPhone]:
    """The (agent, number) pairs of the due leads whose calling hours are open."""
    return {
        (lead.agent_id, lead.phone_e164)
        for lead in due
        if lead.phone_e164 and lead.lead_id not in openings
    }


def plan_round(
    due: Sequence[Candidate],
    openings: Mapping[int, datetime],
    locked: Collection[AgentPhone],
    rivals: Iterable[Rival],
    rules: GateRules,
    now: datetime,
) -> RoundPlan:
    """Decide one round of the claim from what its transaction read.

    ``due``: the due leads in claim order; ``openings``: the leads whose calling
    hours are closed, with the time each window opens; ``locked``: the
    (agent, number) pairs whose lock this transaction holds (read only with the
    number rule on); ``rivals``: the other leads of the agent holding those numbers.
    """
    closed = tuple((lead_id, calling_hours_wait(opens)) for lead_id, opens in openings.items())
    candidates = [lead for lead in due if lead.lead_id not in openings]
    if rules.checks_numbers:
        candidates = [
            lead
            for lead in candidates
            if not lead.phone_e164 or (lead.agent_id, lead.phone_e164) in locked
        ]
    verdicts = list(zip(candidates, judge(candidates, rivals, rules, now), strict=True))
    skip = tuple((c.lead_id, v) for c, v in verdicts if v.action is Action.SKIP)
    wait = closed + tuple((c.lead_id, v) for c, v in verdicts if v.action is Action.WAIT)
    return RoundPlan(
        send=tuple(c.lead_id for c, v in verdicts if v.action is Action.SEND),
        skip=skip,
        wait=wait,
        progressed=bool(skip) or any(v.until is not None and v.until > now for _i, v in wait),
    )
