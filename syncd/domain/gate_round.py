"""One round of the claim: which due leads are sent, skipped or left to wait (pure, no I/O).

The claim's transaction reads the due leads, asks the sync's calling hours
about them, tries the per-number locks and reads, for the numbers it holds, the
rivals, the suppression list and the recent sends; this module decides from
those plain values, and the adapter writes the decision, with one dial
decision per lead it sends (docs/design.md#the-send-gate).

Calling hours come first and are a rule that waits: a lead outside its window
waits for the opening (no attempt, no state change) and ``leads.waiting_for``
says why (docs/design.md#calling-hours-defer-without-attempts); the gate
(:func:`syncd.domain.gate.decide`) judges the others. A lead whose number
another transaction holds is left alone: it stays queued, untouched, for the
next claim (docs/design.md#one-decision-per-number). Every number rule (the
suppression list is always on) is read under those locks.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncd.domain.calling_hours import WAITING_FOR
from syncd.domain.gate import (
    NO_FACTS,
    Action,
    Candidate,
    GateRules,
    NumberFacts,
    Rival,
    Verdict,
    decide,
)

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
    #: The dial decision's ``inputs`` of each lead sent, by lead id (evidence of the
    #: decision, not part of it: plans compare by what they do).
    inputs: Mapping[int, Mapping[str, Any]] = field(default_factory=dict, compare=False)

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
    numbers: NumberFacts = NO_FACTS,
) -> RoundPlan:
    """Decide one round of the claim from what its transaction read.

    ``due``: the due leads in claim order; ``openings``: the leads whose calling
    hours are closed, with the time each window opens; ``locked``: the
    (agent, number) pairs whose lock this transaction holds; ``rivals``: the
    other leads of the agent holding those numbers (read with the duplicate-phone
    rule on); ``numbers``: the suppression list and recent sends of those numbers.
    A lead with a number that is not in ``locked`` is left out of the round.
    """
    closed = tuple((lead_id, calling_hours_wait(opens)) for lead_id, opens in openings.items())
    candidates = [
        lead
        for lead in due
        if lead.lead_id not in openings
        and (not lead.phone_e164 or (lead.agent_id, lead.phone_e164) in locked)
    ]
    decided = list(zip(candidates, decide(candidates, rivals, rules, now, numbers), strict=True))
    skip = tuple((c.lead_id, d.verdict) for c, d in decided if d.verdict.action is Action.SKIP)
    wait = closed + tuple(
        (c.lead_id, d.verdict) for c, d in decided if d.verdict.action is Action.WAIT
    )
    sent = [(c.lead_id, d.inputs) for c, d in decided if d.verdict.action is Action.SEND]
    return RoundPlan(
        send=tuple(lead_id for lead_id, _inputs in sent),
        skip=skip,
        wait=wait,
        progressed=bool(skip) or any(v.until is not None and v.until > now for _i, v in wait),
        inputs={lead_id: inputs for lead_id, inputs in sent if inputs is not None},
    )
