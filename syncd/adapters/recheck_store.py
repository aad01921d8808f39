"""SQL for re-checking leads before they are sent again (:mod:`syncd.services.refetch`).

Every function takes the caller's :class:`Session`; none commits. The moves are
set-based (one executemany UPDATE per shape, one executemany INSERT of the
audit trail) and guarded by the state the caller read under lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from syncd.adapters import writeback_store
from syncd.adapters.orm import Lead, LeadTransition
from syncd.domain.states import LeadState

_LEADS: Table = Lead.__table__  # type: ignore[assignment]
_TRANSITIONS: Table = LeadTransition.__table__  # type: ignore[assignment]
_CHUNK = 900


class RecheckConflict(RuntimeError):
    """A lead locked for the re-check was not in the state read: a bug, never papered over."""


@dataclass(frozen=True)
class Selected:
    """A lead chosen to be sent again, as it was when chosen."""

    lead_id: int
    sync_name: str
    salesforce_id: str
    state: str


def select_leads(
    session: Session,
    *,
    sync: str | None = None,
    states: Iterable[str],
    salesforce_ids: Sequence[str] | None = None,
) -> list[Selected]:
    """The leads in ``states`` (of ``sync``, with one of ``salesforce_ids``), oldest first."""
    query = select(Lead.id, Lead.sync_name, Lead.salesforce_id, Lead.state).where(
        Lead.state.in_(sorted(states))
    )
    if sync is not None:
        query = query.where(Lead.sync_name == sync)
    found: list[Selected] = []
    if salesforce_ids is None:
        return [Selected(*row) for row in session.execute(query.order_by(Lead.id))]
    for start in range(0, len(salesforce_ids), _CHUNK):
        chunk = list(salesforce_ids[start : start + _CHUNK])
        found += [
            Selected(*row) for row in session.execute(query.where(Lead.salesforce_id.in_(chunk)))
        ]
    return sorted(found, key=lambda lead: lead.lead_id)


def current_states(session: Session, lead_ids: Sequence[int]) -> dict[int, str]:
    """The leads' states now, locked until commit (PostgreSQL; SQLite has one writer)."""
    states: dict[int, str] = {}
    for start in range(0, len(lead_ids), _CHUNK):
        query = select(Lead.id, Lead.state).where(
            Lead.id.in_(list(lead_ids[start : start + _CHUNK]))
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        states.update((lead_id, state) for lead_id, state in session.execute(query))
    return states


@dataclass(frozen=True)
class Move:
    """One lead's move after its re-check; the record's values are None when it was not found."""

    lead_id: int
    source: str
    target: str
    reason: str
    note: str | None
    payload: dict[str, Any] | None
    agent_id: str | None
    phone_e164: str | None
    record_hash: str | None
    record_cursor: datetime | None
    do_not_call: bool | None
    time_zone: str | None = None


def _statement(with_record: bool, queued: bool) -> Any:
    values: dict[str, Any] = {
        "state": bindparam("b_target"),
        "note": bindparam("b_note"),
        "updated_at": bindparam("b_now", type_=_LEADS.c.updated_at.type),
    }
    if with_record:
        values.update(
            payload=bindparam("b_payload", type_=_LEADS.c.payload.type),
            agent_id=bindparam("b_agent"),
            phone_e164=bindparam("b_phone"),
            record_hash=bindparam("b_hash"),
            record_cursor=bindparam("b_cursor", type_=_LEADS.c.record_cursor.type),
            do_not_call=bindparam("b_dnc", type_=_LEADS.c.do_not_call.type),
            time_zone=bindparam("b_tz"),
        )
    if queued:
        values.update(attempts=0, next_attempt_at=None, error_code=None, error_message=None)
    return (
        update(_LEADS)
        .where(_LEADS.c.id == bindparam("b_id"), _LEADS.c.state == bindparam("b_source"))
        .values(values)
    )


def _params(move: Move, now: datetime) -> dict[str, Any]:
    params: dict[str, Any] = {
        "b_id": move.lead_id,
        "b_source": move.source,
        "b_target": move.target,
        "b_note": move.note,
        "b_now": now,
    }
    if move.payload is not None:
        params.update(
            b_payload=move.payload,
            b_agent=move.agent_id,
            b_phone=move.phone_e164,
            b_hash=move.record_hash,
            b_cursor=move.record_cursor,
            b_dnc=bool(move.do_not_call),
            b_tz=move.time_zone,
        )
    return params


def apply_outcomes(session: Session, moves: Sequence[Move], now: datetime) -> set[int]:
    """Write the moves and their audit trail; returns the ids of the leads moved (all of them).

    Raises :class:`RecheckConflict` when a lead was not in the state read (the
    caller locked them, so this is a bug; the transaction rolls back).
    """
    if not moves:
        return set()
    connection = session.connection()
    for with_record in (False, True):
        for queued in (False, True):
            group = [
                m
                for m in moves
                if (m.payload is not None and m.record_cursor is not None) is with_record
                and (m.target == LeadState.QUEUED.value) is queued
            ]
            if not group:
                continue
            result = connection.execute(
                _statement(with_record, queued), [_params(m, now) for m in group]
            )
            if result.rowcount != len(group):
                raise RecheckConflict(
                    f"{len(group) - result.rowcount} leads left their state during the re-check"
                )
    connection.execute(
        insert(_TRANSITIONS),
        [
            {
                "lead_id": m.lead_id,
                "from_state": m.source,
                "to_state": m.target,
                "reason": m.reason[:500],
                "batch_id": None,
                "at": now,
            }
            for m in moves
        ],
    )
    writeback_store.enqueue_by_state(session, [(m.lead_id, m.target) for m in moves], now)
    return {m.lead_id for m in moves}
