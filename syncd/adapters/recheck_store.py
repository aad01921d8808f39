"""SQL for re-checking leads before they are sent again (:mod:`syncd.services.refetch`).

Every function takes the caller's :class:`Session`; none commits. The moves go
through :mod:`syncd.adapters.ledger` (one executemany UPDATE per shape, one
executemany INSERT of the audit trail), guarded by the state the caller read under lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from syncd.adapters import ledger
from syncd.adapters.orm import Lead

_LEADS: Table = Lead.__table__  # type: ignore[assignment]
_CHUNK = 900


class RecheckConflict(ledger.LedgerConflict):
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
    discarded: bool = False,
) -> list[Selected]:
    """The leads in ``states`` (of ``sync``, with one of ``salesforce_ids``), oldest first.

    ``discarded``: only the leads an operator discarded (``syncd restore``).
    """
    query = select(Lead.id, Lead.sync_name, Lead.salesforce_id, Lead.state).where(
        Lead.state.in_(sorted(states))
    )
    if discarded:
        query = query.where(Lead.discarded_at.is_not(None))
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


@dataclass(frozen=True)
class Current:
    """A lead as it is now, under lock: its state and the stamp of the newest read applied."""

    state: str
    stamp: datetime | None


def current_states(session: Session, lead_ids: Sequence[int]) -> dict[int, Current]:
    """The leads as they are now, locked until commit (PostgreSQL; SQLite has one writer)."""
    states: dict[int, Current] = {}
    for start in range(0, len(lead_ids), _CHUNK):
        query = select(Lead.id, Lead.state, Lead.record_stamp).where(
            Lead.id.in_(list(lead_ids[start : start + _CHUNK]))
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        states.update(
            (row.id, Current(row.state, row.record_stamp)) for row in session.execute(query)
        )
    return states


@dataclass(frozen=True)
class RecheckMove:
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
    record_stamp: datetime | None = None
    region: str | None = None
    #: ``syncd restore``: the operator's discard is lifted by this move.
    restores: bool = False
    consent: str | None = None

    def values(self) -> dict[str, Any]:
        """The lead's columns this move sets besides its state."""
        values: dict[str, Any] = {"note": self.note}
        if self.restores:
            values["discarded_at"] = None
        if self.payload is not None and self.record_cursor is not None:
            values.update(
                payload=self.payload,
                agent_id=self.agent_id,
                phone_e164=self.phone_e164,
                record_hash=self.record_hash,
                record_cursor=self.record_cursor,
                do_not_call=bool(self.do_not_call),
                time_zone=self.time_zone,
                region=self.region,
                deleted_at=None,
                consent=self.consent,
            )
            if self.record_stamp is not None:
                values["record_stamp"] = self.record_stamp
        return values


def apply_outcomes(session: Session, moves: Sequence[RecheckMove], now: datetime) -> set[int]:
    """Write the moves and their audit trail through the ledger; the ids moved (all of them).

    Raises :class:`RecheckConflict` when a lead was not in the state read (the
    caller locked them, so this is a bug; the transaction rolls back).
    """
    if not moves:
        return set()
    steps = [ledger.Step(m.lead_id, m.source, m.target, m.reason, m.values()) for m in moves]
    try:
        ledger.move_each(session, steps, now, reset_attempts=True)
    except ledger.LedgerConflict as exc:
        raise RecheckConflict(str(exc)) from exc
    return {m.lead_id for m in moves}
