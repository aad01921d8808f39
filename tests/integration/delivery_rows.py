"""Helpers for the delivery tests: queued leads written straight into ``leads``.

The delivery engine only reads what the poller recorded; inserting the rows
by hand lets each test say exactly which leads exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.orm import Batch, Lead, LeadTransition, Pause
from syncd.config.models import SyncConfig

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def sf_id(number: int) -> str:
    """An 18-character Salesforce-looking Id, unique per number."""
    return f"00Q{number:012d}AAA"


def phone(number: int) -> str:
    return f"+1415{number % 10_000_000:07d}"


def make_sync(name: str = "web", agent: str = "agt_1", **extra: Any) -> SyncConfig:
    """A sync sending to ``agent`` (or routed, when ``route=`` is given)."""
    destination: dict[str, Any] = {} if "route" in extra else {"agent": agent}
    return SyncConfig.model_validate(
        {"name": name, "mapping": {"phoneNumber": "Phone"}, **destination, **extra}
    )


def insert_leads(
    sessions: sessionmaker[Session],
    numbers: Iterable[int],
    *,
    sync: str = "web",
    agent: str = "agt_1",
    phones: dict[int, str] | None = None,
    now: datetime = T0,
) -> list[str]:
    """Insert queued leads (one per number) and their first transition; returns their Ids."""
    rows: list[dict[str, Any]] = []
    for number in numbers:
        number_phone = (phones or {}).get(number, phone(number))
        payload = {
            "phoneNumber": number_phone,
            "firstName": f"First{number}",
            "salesforceId": sf_id(number),
            "customData": {"n": number},
        }
        rows.append(
            {
                "sync_name": sync,
                "salesforce_id": sf_id(number),
                "agent_id": agent,
                "state": "queued",
                "payload": payload,
                "phone_e164": number_phone,
                "record_cursor": now,
                "record_hash": hashlib.sha256(str(number).encode()).hexdigest(),
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
    if not rows:
        return []
    with sessions.begin() as session:
        session.execute(insert(Lead), rows)
        ids = session.execute(
            select(Lead.id).where(Lead.salesforce_id.in_([r["salesforce_id"] for r in rows]))
        ).scalars()
        session.execute(
            insert(LeadTransition),
            [
                {"lead_id": i, "from_state": None, "to_state": "queued", "reason": "new", "at": now}
                for i in ids
            ],
        )
    return [r["salesforce_id"] for r in rows]


def states(sessions: sessionmaker[Session], sync: str | None = None) -> dict[str, str]:
    """salesforce_id -> state."""
    with sessions() as session:
        query = select(Lead.salesforce_id, Lead.state)
        if sync:
            query = query.where(Lead.sync_name == sync)
        return {sf: state for sf, state in session.execute(query)}


def lead(sessions: sessionmaker[Session], salesforce_id: str) -> Lead:
    with sessions() as session:
        return session.scalars(select(Lead).where(Lead.salesforce_id == salesforce_id)).one()


def batches(sessions: sessionmaker[Session]) -> list[Batch]:
    with sessions() as session:
        return list(session.scalars(select(Batch).order_by(Batch.id)))


def pauses(sessions: sessionmaker[Session]) -> list[Pause]:
    with sessions() as session:
        return list(session.scalars(select(Pause).order_by(Pause.id)))


def transitions(sessions: sessionmaker[Session], salesforce_id: str) -> list[tuple[Any, ...]]:
    """(from, to, batch_id) of one lead, oldest first."""
    with sessions() as session:
        lead_id = session.scalar(select(Lead.id).where(Lead.salesforce_id == salesforce_id))
        rows = session.execute(
            select(LeadTransition.from_state, LeadTransition.to_state, LeadTransition.batch_id)
            .where(LeadTransition.lead_id == lead_id)
            .order_by(LeadTransition.id)
        )
        return [tuple(r) for r in rows]


def count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)
