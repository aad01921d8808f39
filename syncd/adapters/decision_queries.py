"""The reads behind ``syncd explain`` and ``syncd audit export``: a lead's or a number's record.

Everything here only reads, in the caller's session: the leads an operator
names, their audit trail (``lead_transitions``), the send gate's dial decisions
(``dial_decisions``) and the rules versions they name, the batches that carried
them, and the operators' actions about a record or a number. Lists are read in
chunks, so a number sent thousands of times stays a handful of statements.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from syncd.adapters.orm import (
    Batch,
    DialDecision,
    Lead,
    LeadTransition,
    OperatorAction,
    RulesVersion,
)
from syncd.domain.states import LeadState

#: Ids per ``IN (...)``: well under SQLite's and PostgreSQL's limits on bound values.
CHUNK = 500
#: The scope of ``operator_actions`` rows about one number (its name is the E.164 number).
NUMBER_SCOPE = "number"
#: Scopes whose ``operator_actions`` rows name a lead or its record directly.
RECORD_SCOPES = ("lead", "record")
_SYNC_SCOPE = "sync"
_LARGEST_ID = 2**63 - 1


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    ordered = sorted(set(values))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def leads_named(session: Session, ident: str) -> list[Lead]:
    """The leads ``ident`` names: a lead id, or a Salesforce record id (one lead per sync).

    A string of digits is tried as both (a lead id and, however unlikely, a record id).
    """
    text = ident.strip()
    clauses: list[ColumnElement[bool]] = [Lead.salesforce_id == text]
    if text.isdigit() and 0 < int(text) <= _LARGEST_ID:
        clauses.append(Lead.id == int(text))
    query = select(Lead).where(or_(*clauses)).order_by(Lead.sync_name, Lead.id)
    return list(session.scalars(query))


def leads_by_id(session: Session, lead_ids: Collection[int]) -> dict[int, Lead]:
    found: dict[int, Lead] = {}
    for chunk in _chunks(lead_ids):
        found.update(
            {lead.id: lead for lead in session.scalars(select(Lead).where(Lead.id.in_(chunk)))}
        )
    return found


def transitions_of(session: Session, lead_ids: Collection[int]) -> list[LeadTransition]:
    """The audit trail of the leads, in the order it was written."""
    rows: list[LeadTransition] = []
    for chunk in _chunks(lead_ids):
        query = select(LeadTransition).where(LeadTransition.lead_id.in_(chunk))
        rows += session.scalars(query)
    return sorted(rows, key=lambda row: row.id)


def decisions_of_leads(session: Session, lead_ids: Collection[int]) -> list[DialDecision]:
    """The dial decisions of the leads, oldest first."""
    rows: list[DialDecision] = []
    for chunk in _chunks(lead_ids):
        rows += session.scalars(select(DialDecision).where(DialDecision.lead_id.in_(chunk)))
    return sorted(rows, key=lambda row: (row.decided_at, row.id))


def decisions_of_number(session: Session, phone_e164: str) -> list[DialDecision]:
    """Every dial decision for one number, across syncs and agents, oldest first."""
    query = (
        select(DialDecision)
        .where(DialDecision.phone_e164 == phone_e164)
        .order_by(DialDecision.decided_at, DialDecision.id)
    )
    return list(session.scalars(query))


def sends_of_number(session: Session, phone_e164: str) -> list[LeadTransition]:
    """The claims (moves to ``sending`` with a batch) of every lead with this number.

    A lead that was (or may have been) sent keeps the number it was sent with
    (docs/safety.md#where-the-rules-are-checked), so the leads' current number is the one
    their past sends carried.
    """
    query = (
        select(LeadTransition)
        .join(Lead, Lead.id == LeadTransition.lead_id)
        .where(
            Lead.phone_e164 == phone_e164,
            LeadTransition.to_state == LeadState.SENDING.value,
            LeadTransition.batch_id.is_not(None),
        )
        .order_by(LeadTransition.at, LeadTransition.id)
    )
    return list(session.scalars(query))


def outcomes_of(session: Session, sends: Collection[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """(lead id, batch id) -> the state the lead left ``sending`` for, after that batch.

    A pair with no such move yet (still in flight) is absent.
    """
    found: dict[tuple[int, int], str] = {}
    wanted = set(sends)
    for chunk in _chunks(lead for lead, _batch in wanted):
        query = (
            select(LeadTransition.lead_id, LeadTransition.batch_id, LeadTransition.to_state)
            .where(
                LeadTransition.lead_id.in_(chunk),
                LeadTransition.from_state == LeadState.SENDING.value,
                LeadTransition.batch_id.is_not(None),
            )
            .order_by(LeadTransition.id)
        )
        for lead_id, batch_id, state in session.execute(query):
            if batch_id is not None and (lead_id, batch_id) in wanted:
                found.setdefault((lead_id, batch_id), state)
    return found


def batches_by_id(session: Session, batch_ids: Collection[int | None]) -> dict[int, Batch]:
    found: dict[int, Batch] = {}
    for chunk in _chunks(b for b in batch_ids if b is not None):
        found.update({b.id: b for b in session.scalars(select(Batch).where(Batch.id.in_(chunk)))})
    return found


def rules_versions(session: Session, versions: Collection[str]) -> dict[str, RulesVersion]:
    found: dict[str, RulesVersion] = {}
    for chunk in _chunks(versions):
        query = select(RulesVersion).where(RulesVersion.version.in_(chunk))
        found.update({row.version: row for row in session.scalars(query)})
    return found


def actions_about(
    session: Session,
    *,
    numbers: Collection[str] = (),
    records: Sequence[tuple[str, str]] = (),
    lead_ids: Collection[int] = (),
) -> list[OperatorAction]:
    """Operators' actions about these numbers, records ((sync, Salesforce id)) or leads.

    A number's actions have scope ``number``; a record's are those of scope ``lead``
    or ``record`` naming its lead id or Salesforce id, and those of its sync whose
    detail names its Salesforce id (``syncd resolve`` lists the ids it moved there).
    Oldest first.
    """
    clauses: list[ColumnElement[bool]] = []
    if numbers:
        clauses.append(
            and_(OperatorAction.scope == NUMBER_SCOPE, OperatorAction.name.in_(sorted(numbers)))
        )
    names = {sf_id for _sync, sf_id in records} | {str(lead_id) for lead_id in lead_ids}
    if names:
        clauses.append(
            and_(OperatorAction.scope.in_(RECORD_SCOPES), OperatorAction.name.in_(sorted(names)))
        )
    for sync, sf_id in sorted(set(records)):
        clauses.append(
            and_(
                OperatorAction.scope == _SYNC_SCOPE,
                OperatorAction.name == sync,
                OperatorAction.detail.contains(sf_id, autoescape=True),
            )
        )
    if not clauses:
        return []
    query = (
        select(OperatorAction).where(or_(*clauses)).order_by(OperatorAction.at, OperatorAction.id)
    )
    return list(session.scalars(query))
