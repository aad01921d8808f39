"""The send gate's SQL: what one claim round reads and writes around its pure decision.

In the claim's own transaction (docs/design.md#the-send-gate) a round reads the
due leads, asks the sync's local rules (calling hours) about them, tries the
per-number locks (:mod:`syncd.adapters.number_locks`) of the numbers it may
send and, under those locks, reads what the number rules need: the rivals (with
the duplicate-phone rule on), the suppression list (always) and the numbers'
recent sends across every agent and sync (with a frequency cap). The decision
is :func:`syncd.domain.gate_round.plan_round`; then the skipped leads become
``skipped`` with the reason in their note and audit trail, and every lead
that waits (calling hours or a gate rule) stays queued, due again at the time
its verdict names. A read that fails fails the claim's transaction: nothing is
sent on a check that could not be made.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from syncd.adapters import ledger
from syncd.adapters.number_locks import try_lock_numbers
from syncd.adapters.number_param import as_param, number_among
from syncd.adapters.outbox.common import LEADS, ClaimedLead
from syncd.adapters.outbox.dial_decisions import Dial
from syncd.adapters.outbox.due import due_leads
from syncd.adapters.suppression_store import suppressed_among
from syncd.domain.frequency import longest
from syncd.domain.gate import Action, Candidate, GateRules, NumberFacts, Rival, Verdict
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
    rivals: list[Rival] = []
    if rules.checks_duplicates:
        rivals = _rivals(session, agent_id, phones, now - rules.duplicate_window)
    numbers = _number_facts(session, phones, rules, due, now)
    plan = plan_round(due, openings, locked, rivals, rules, now, numbers)
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


def _state_in(states: Sequence[LeadState]) -> ColumnElement[bool]:
    """``leads.state`` is one of ``states``, compiled once: a literal list's ``IN`` is
    an expanding parameter, rendered again on every execution."""
    return or_(*(LEADS.c.state == state.value for state in states))


@functools.lru_cache(maxsize=4)
def _rivals_statement(dialect: str) -> Select[Any]:
    """Other leads of the agent holding one of the numbers bound as ``phones``: queued
    or in flight whatever their age, accepted within the window; read through
    ix_leads_phone (agent, phone). The numbers go as one parameter
    (:mod:`syncd.adapters.number_param`), so the statement is compiled once."""
    return select(LEADS.c.id, LEADS.c.phone_e164, LEADS.c.state, LEADS.c.sent_at).where(
        LEADS.c.agent_id == bindparam("agent_id"),
        number_among(LEADS.c.phone_e164, dialect, "phones"),
        or_(
            _state_in([LeadState.QUEUED, LeadState.SENDING, LeadState.UNCERTAIN]),
            and_(
                LEADS.c.state == LeadState.ACCEPTED.value,
                or_(
                    LEADS.c.sent_at.is_(None),
                    LEADS.c.sent_at >= bindparam("since", type_=LEADS.c.sent_at.type),
                ),
            ),
        ),
    )


def _rivals(session: Session, agent_id: str, phones: Sequence[str], since: datetime) -> list[Rival]:
    if not phones:
        return []
    connection = session.connection()
    rows = connection.execute(
        _rivals_statement(connection.dialect.name),
        {"agent_id": agent_id, "phones": as_param(phones), "since": since},
    ).all()
    return [Rival(r.id, r.phone_e164, LeadState(r.state), r.sent_at) for r in rows]


#: The states of a send that may have reached SimZ: what the frequency caps count.
_SENT_STATES = frozenset(
    state.value for state in (LeadState.SENDING, LeadState.ACCEPTED, LeadState.UNCERTAIN)
)


@functools.lru_cache(maxsize=4)
def _sends_statement(dialect: str) -> Select[Any]:
    """The requests started for the numbers bound as ``phones`` since ``since``, with
    the lead's state now, across every agent and sync.

    Read through ix_leads_number (phone, sent_at), which the statement leaves the
    planner no other choice of: the state is checked by the caller
    (:data:`_SENT_STATES`), because with a state condition PostgreSQL, its
    statistics taken while the leads were queued, read every accepted lead through
    ix_leads_state instead (6 ms rather than 0.5 ms a claim at 10,000 sent). The
    numbers go as one parameter (:mod:`syncd.adapters.number_param`), so the
    statement is compiled once.
    """
    return select(LEADS.c.phone_e164, LEADS.c.sent_at, LEADS.c.state).where(
        number_among(LEADS.c.phone_e164, dialect, "phones"),
        LEADS.c.sent_at >= bindparam("since", type_=LEADS.c.sent_at.type),
    )


def _number_facts(
    session: Session,
    phones: Sequence[str],
    rules: GateRules,
    due: Sequence[Candidate],
    now: datetime,
) -> NumberFacts:
    """The suppression list's entries for ``phones``, and their sends within the longest cap.

    The sends are read only when a cap applies to one of the due leads.
    """
    listed = suppressed_among(session, phones)
    suppressed = {phone: entry.describe() for phone, entry in listed.items()}
    reach = longest([*rules.caps, *(cap for lead in due for cap in lead.caps)])
    sends: dict[str, list[datetime]] = {}
    if phones and reach > timedelta(0):
        connection = session.connection()
        statement = _sends_statement(connection.dialect.name)
        found = connection.execute(statement, {"phones": as_param(phones), "since": now - reach})
        for phone, sent_at, state in found.all():
            if state in _SENT_STATES:
                sends.setdefault(phone, []).append(sent_at)
    return NumberFacts(suppressed, sends)


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
