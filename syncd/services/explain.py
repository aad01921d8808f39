"""``syncd explain``: a lead's whole decision history, oldest first, from the database alone.

One timeline per lead, merged from four records: its audit trail (every state
change, ``lead_transitions``), the send gate's dial decisions with the inputs
that allowed each send (``dial_decisions``), the batches that carried it and
SimZ's answer (``batches``), and the operators' actions about it or its number
(``operator_actions``). At one instant the decision comes before the state
change it allowed, and the batch after the claim that filled it. After them,
the lead's calls as SimZ's webhooks reported them (``call_outcomes``), with
the Task or fields written back for each.

Read only, in one session: it works while the daemon runs and while
Salesforce or SimZ are down, like ``syncd leads``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import call_queries
from syncd.adapters import decision_queries as q
from syncd.adapters.call_queries import LeadCall
from syncd.adapters.orm import Batch, DialDecision, Lead, LeadTransition, OperatorAction
from syncd.adapters.speed_queries import timeline_of
from syncd.domain.decision_words import decision_words
from syncd.domain.speed_to_lead import TOTAL, Step, interval, steps
from syncd.services import explain_words as words

DECISION = "decision"
TRANSITION = "transition"
BATCH = "batch"
OPERATOR_ACTION = "operator_action"
#: Order of events at the same instant: the decision, the move it allowed, the POST.
_RANK = {DECISION: 0, TRANSITION: 1, BATCH: 2, OPERATOR_ACTION: 3}


@dataclass(frozen=True)
class Event:
    """One entry of a lead's history: when, what kind, in words, and the row's values.

    ``lines``: further lines (a decision's inputs, one clause each).
    ``data``: the recorded values, for ``--json``.
    """

    at: datetime
    kind: str
    text: str
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LeadStory:
    """One lead and its history, oldest first. The number only as its last four digits."""

    id: int
    salesforce_id: str
    sync: str
    agent: str | None
    state: str
    number_ending: str | None
    created_at: datetime
    updated_at: datetime
    note: str | None
    events: list[Event]
    #: Speed to lead: each moment of the lead (None: not reached or not kept) and the
    #: seconds of the stage that ends there (:mod:`syncd.domain.speed_to_lead`).
    timeline: list[Step] = field(default_factory=list)
    #: Seconds from the record's creation to SimZ's acceptance (None: a moment unknown).
    total_seconds: float | None = None
    #: The lead's calls, in the order their hooks arrived (webhooks on).
    calls: list[LeadCall] = field(default_factory=list)


def explain(session_factory: sessionmaker[Session], ident: str) -> list[LeadStory]:
    """Every lead ``ident`` names (a lead id, or a Salesforce id: one lead per sync).

    An empty list when nothing matches.
    """
    with session_factory() as session:
        leads = q.leads_named(session, ident)
        if not leads:
            return []
        ids = [lead.id for lead in leads]
        trail = q.transitions_of(session, ids)
        decisions = q.decisions_of_leads(session, ids)
        batch_ids = {t.batch_id for t in trail} | {d.batch_id for d in decisions}
        batches = q.batches_by_id(session, batch_ids)
        numbers = {lead.phone_e164 for lead in leads} | {d.phone_e164 for d in decisions}
        actions = q.actions_about(
            session,
            numbers={n for n in numbers if n},
            records=[(lead.sync_name, lead.salesforce_id) for lead in leads],
            lead_ids=ids,
        )
        calls = call_queries.calls_of_leads(session, ids)
        return [
            _story(
                lead, trail, decisions, batches, actions, [c for c in calls if c.lead_id == lead.id]
            )
            for lead in leads
        ]


def _story(
    lead: Lead,
    trail: Iterable[LeadTransition],
    decisions: Iterable[DialDecision],
    batches: dict[int, Batch],
    actions: Iterable[OperatorAction],
    calls: list[LeadCall],
) -> LeadStory:
    own_trail = [t for t in trail if t.lead_id == lead.id]
    own_decisions = [d for d in decisions if d.lead_id == lead.id]
    numbers = {lead.phone_e164} | {d.phone_e164 for d in own_decisions}
    mentioned = [t.batch_id for t in own_trail] + [d.batch_id for d in own_decisions]
    events = [transition_event(t) for t in own_trail]
    events += [decision_event(d) for d in own_decisions]
    events += [batch_event(batches[b]) for b in dict.fromkeys(mentioned) if b in batches]
    events += [action_event(a) for a in actions if _about(a, lead, numbers)]
    ordered = sorted(enumerate(events), key=lambda e: (e[1].at, _RANK[e[1].kind], e[0]))
    return LeadStory(
        id=lead.id,
        salesforce_id=lead.salesforce_id,
        sync=lead.sync_name,
        agent=lead.agent_id,
        state=lead.state,
        number_ending=words.number_ending(lead.phone_e164),
        created_at=lead.created_at,
        updated_at=lead.updated_at,
        note=lead.note,
        events=[event for _i, event in ordered],
        calls=calls,
        **_speed(lead),
    )


def _speed(lead: Lead) -> dict[str, Any]:
    """The lead's speed-to-lead timeline and its total (created -> accepted)."""
    timeline = timeline_of(lead)
    name, start, end = TOTAL
    total = interval(name, timeline.at(start), timeline.at(end))
    return {"timeline": steps(timeline), "total_seconds": total.seconds if total else None}


def _about(action: OperatorAction, lead: Lead, numbers: set[str | None]) -> bool:
    """Whether an action read for several leads is about this one."""
    if action.scope == q.NUMBER_SCOPE:
        return action.name in numbers
    if action.scope in q.RECORD_SCOPES:
        return action.name in (lead.salesforce_id, str(lead.id))
    return action.name == lead.sync_name and lead.salesforce_id in (action.detail or "")


def transition_event(row: LeadTransition) -> Event:
    return Event(
        row.at,
        TRANSITION,
        words.transition_words(row.from_state, row.to_state, row.reason, row.batch_id),
        data={
            "from_state": row.from_state,
            "to_state": row.to_state,
            "reason": row.reason,
            "batch_id": row.batch_id,
        },
    )


def decision_event(row: DialDecision) -> Event:
    return Event(
        row.decided_at,
        DECISION,
        words.decision_header(row.batch_id, row.agent_id, row.rules_version, row.phone_e164),
        lines=decision_words(row.inputs),
        data={
            "decision_id": row.id,
            "agent": row.agent_id,
            "batch_id": row.batch_id,
            "number_ending": words.number_ending(row.phone_e164),
            "rules_version": row.rules_version,
            "inputs": row.inputs,
        },
    )


def batch_event(row: Batch) -> Event:
    return Event(
        row.posted_at or row.created_at,
        BATCH,
        words.batch_words(
            batch_id=row.id,
            agent=row.agent_id,
            lead_count=row.lead_count,
            posted_at=row.posted_at,
            finished_at=row.finished_at,
            http_status=row.http_status,
            outcome=row.outcome,
            simz_batch_id=row.simz_batch_id,
            accepted=row.accepted,
            rejected=row.rejected,
        ),
        data={
            "batch_id": row.id,
            "agent": row.agent_id,
            "lead_count": row.lead_count,
            "posted_at": row.posted_at,
            "finished_at": row.finished_at,
            "http_status": row.http_status,
            "outcome": row.outcome,
            "simz_batch_id": row.simz_batch_id,
            "accepted": row.accepted,
            "rejected": row.rejected,
        },
    )


def action_event(row: OperatorAction) -> Event:
    """An operator's action; the number it is about shows only its last four digits."""
    name, reason, detail = row.name, row.reason, row.detail
    if row.scope == q.NUMBER_SCOPE:
        name = f"ending {words.number_ending(row.name) or '-'}"
        reason = reason.replace(row.name, name)
        detail = detail.replace(row.name, name) if detail else detail
    return Event(
        row.at,
        OPERATOR_ACTION,
        words.action_words(row.actor, row.action, row.scope, name, reason, detail),
        data={
            "actor": row.actor,
            "action": row.action,
            "scope": row.scope,
            "name": name,
            "reason": reason,
            "detail": detail,
        },
    )
