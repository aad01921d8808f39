"""The send gate's SQL: what one claim round reads and writes around its pure decision.

In the claim's own transaction (docs/design.md#the-send-gate) a round reads the
due leads, asks the sync's local rules (calling hours) about them, tries the
per-number locks (:mod:`syncd.adapters.number_locks`) of the numbers it may
send and, under those locks, reads what the number rules need, in one statement
(:mod:`syncd.adapters.outbox.number_reads`): the rivals (with the duplicate-phone
rule on), the suppression list (always) and the numbers' recent sends across
every agent and sync (with a frequency cap). The decision
is :func:`syncd.domain.gate_round.plan_round`; then the skipped leads become
``skipped`` with the reason in their note and audit trail, and every lead
that waits (calling hours or a gate rule) stays queued, due again at the time
its verdict names. A read that fails fails the claim's transaction: nothing is
sent on a check that could not be made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    bindparam,
    func,
    update,
)
from sqlalchemy.orm import Session

from syncd.adapters import ledger
from syncd.adapters.number_locks import try_lock_numbers
from syncd.adapters.outbox.common import LEADS, ClaimedLead
from syncd.adapters.outbox.dial_decisions import Dial
from syncd.adapters.outbox.due import due_leads
from syncd.adapters.outbox.number_reads import read_numbers
from syncd.domain.frequency import longest
from syncd.domain.gate import Action, Candidate, GateRules, Verdict
from syncd.domain.gate_round import RoundPlan, numbers_to_lock, plan_round
from syncd.domain.local_rules import CallingRules, DueLead, LocalCall
from syncd.domain.states import LeadState
from syncd.logs import get_logger
from syncd.metrics import GATE_SKIPPED

log = get_logger(__name__)


def gate_round(
    session: Session,
    sync_name: str,
    agent_id: str,
    limit: int,
    now: datetime,
    rules: GateRules,
    calling_rules: CallingRules | None = None,
) -> tuple[tuple[ClaimedLead, ...], bool, tuple[Dial, ...]]:
    """The due leads that pass the gate now, whether any was skipped or deferred, and
    the dial decision of each lead that passes.

    ``calling_rules`` (a sync with calling hours or state rules) is asked about
    every due lead before the gate: those whose window is closed wait for its
    opening. The numbers of the others are locked, and the number rules read
    under those locks.
    """
    params = {"sync_name": sync_name, "agent_id": agent_id, "now": now, "limit": limit}
    rows = due_leads(session, params, limit)
    if not rows:
        return (), False, ()
    local: Mapping[int, LocalCall] = {}
    if calling_rules is not None:
        local = calling_rules(
            [DueLead(row.id, row.phone_e164, row.time_zone, row.region) for row in rows], now
        )
    due = _candidates(rows, agent_id, local)
    openings = {lead_id: lc.opens for lead_id, lc in local.items() if lc.opens is not None}
    locked = try_lock_numbers(session, numbers_to_lock(due, openings))
    phones = sorted({phone for _agent, phone in locked})
    reach = longest([*rules.caps, *(cap for lead in due for cap in lead.caps)])
    read = read_numbers(
        session,
        phones,
        agent_id=agent_id,
        rivals_since=now - rules.duplicate_window if rules.checks_duplicates else None,
        sends_since=now - reach if reach > timedelta(0) else None,
    )
    plan = plan_round(due, openings, locked, read.rivals, rules, now, read.facts)
    _apply(session, sync_name, plan, now)
    sendable, dials = _sent(rows, plan)
    return sendable, plan.progressed, dials


def _candidates(
    rows: Sequence[Any], agent_id: str, local: Mapping[int, LocalCall]
) -> list[Candidate]:
    """The due rows as the gate's candidates, with their local rules' caps and evidence."""
    if not local:
        return [
            Candidate(r.id, agent_id, r.phone_e164, bool(r.do_not_call), _stopped(r), r.consent)
            for r in rows
        ]
    found = [(r, local.get(r.id)) for r in rows]
    return [
        Candidate(
            r.id,
            agent_id,
            r.phone_e164,
            bool(r.do_not_call),
            _stopped(r),
            r.consent,
            () if lc is None else lc.caps,
            None if lc is None else lc.evidence,
        )
        for r, lc in found
    ]


def _sent(rows: Sequence[Any], plan: RoundPlan) -> tuple[tuple[ClaimedLead, ...], tuple[Dial, ...]]:
    """The leads the plan sends, as claimed, and their dial decisions, in one pass."""
    by_id = {row.id: row for row in rows}
    sendable: list[ClaimedLead] = []
    dials: list[Dial] = []
    for lead_id in plan.send:
        r = by_id[lead_id]
        sendable.append(
            ClaimedLead(
                lead_id, r.salesforce_id, r.payload, r.attempts, r.record_created_at, r.queued_at
            )
        )
        dials.append(Dial(lead_id, r.phone_e164, plan.inputs[lead_id]))
    return tuple(sendable), tuple(dials)


def _stopped(row: Any) -> str | None:
    """Why a decision that sticks stops a due lead: its record deleted, or discarded."""
    if row.deleted_at is not None:
        return ledger.DELETED_NOTE
    if row.discarded_at is not None:
        return "discarded by an operator"
    return None


def _apply(session: Session, sync_name: str, plan: RoundPlan, now: datetime) -> None:
    """Write the round's skips and waits; note and count those the plan says to."""
    _skip(session, plan.skip, now)
    _defer(session, plan.wait, now)
    queued = LeadState.QUEUED.value
    notes = [(lead_id, queued, _why(v)) for lead_id, v in plan.noted if v.action is Action.WAIT]
    if notes:
        ledger.note(session, notes, now)
    _count(sync_name, [verdict for _id, verdict in plan.noted])


def _skip(session: Session, skips: Sequence[tuple[int, Verdict]], now: datetime) -> None:
    """``queued`` -> ``skipped`` with each lead's own reason, through the ledger."""
    ledger.move_each(
        session,
        [
            ledger.Step(
                lead_id,
                LeadState.QUEUED.value,
                LeadState.SKIPPED.value,
                _why(verdict),
                {"note": verdict.note, "next_attempt_at": None},
            )
            for lead_id, verdict in skips
        ],
        now,
    )


#: Every deferral at the claim: the lead stays queued, due again at ``until``, no
#: attempt counted. ``waiting_for`` is set when the verdict names it (calling hours)
#: and left as it is otherwise.
_DEFER = (
    update(LEADS)
    .where(LEADS.c.id == bindparam("b_id"), LEADS.c.state == LeadState.QUEUED.value)
    .values(
        next_attempt_at=bindparam("b_until", type_=LEADS.c.next_attempt_at.type),
        waiting_for=func.coalesce(
            bindparam("b_waiting_for", type_=LEADS.c.waiting_for.type), LEADS.c.waiting_for
        ),
        updated_at=bindparam("b_now", type_=LEADS.c.updated_at.type),
    )
)


def _defer(session: Session, waits: Sequence[tuple[int, Verdict]], now: datetime) -> None:
    """Leave waiting leads queued, due again at the time their verdict names.

    ``next_attempt_at`` becomes that time, so the due-retry query picks the lead up
    then; ``waiting_for`` tells operators why it waits.
    """
    if waits:
        session.connection().execute(
            _DEFER,
            [
                {"b_id": lead_id, "b_until": v.until, "b_waiting_for": v.waiting_for, "b_now": now}
                for lead_id, v in waits
            ],
        )


def _why(verdict: Verdict) -> str:
    return verdict.note or verdict.rule or "send gate"


def _count(sync_name: str, verdicts: Sequence[Verdict]) -> None:
    for verdict in verdicts:
        GATE_SKIPPED.labels(sync=sync_name, rule=verdict.rule or "other").inc()
        log.warning(
            "send gate held a lead back",
            sync=sync_name,
            rule=verdict.rule,
            action=verdict.action.value,
            note=verdict.note,
        )
