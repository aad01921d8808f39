"""The ``call_events`` table: every accepted webhook POST, raw, stored once per body.

The receiver (:mod:`syncd.entrypoints.webhook_http`) commits each POST here
before it answers 2xx; the processor reads the ``new`` ones and marks each
``matched``, ``unmatched`` or ``unreadable``. Nothing here deletes an event:
a forged or unknown one is kept and listed (``syncd calls --unmatched``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from syncd.adapters.orm import CallEvent, CallOutcome, Lead

CALL_EVENTS: Table = CallEvent.__table__  # type: ignore[assignment]
CALL_OUTCOMES: Table = CallOutcome.__table__  # type: ignore[assignment]
LEADS: Table = Lead.__table__  # type: ignore[assignment]

#: The statuses of an event: ``new`` until the processor has read it.
STATUSES = ("new", "matched", "unmatched", "unreadable")
#: Headers never stored: credentials a sender or a proxy may add.
SECRET_HEADERS = frozenset(
    {"authorization", "cookie", "proxy-authorization", "x-company-api-key", "set-cookie"}
)
#: A header whose name contains one of these is never stored either.
SECRET_WORDS = ("token", "secret", "signature", "key")
#: Longest header value stored; the rest is cut.
MAX_HEADER_VALUE = 1_000


@dataclass(frozen=True)
class StoredEvent:
    """The event's id, and whether this POST stored it (False: the same body was there)."""

    id: int
    new: bool


@dataclass(frozen=True)
class EventRow:
    """One event for ``syncd calls``, with its lead and call outcome where there is one."""

    id: int
    received_at: datetime
    receiver: str
    status: str
    chars: int
    detail: str | None
    lead_id: int | None
    sync: str | None
    salesforce_id: str | None
    outcome: str | None
    disposition: str | None
    writeback_status: str | None
    task_id: str | None


def digest(body: bytes) -> str:
    """The SHA-256 of the body, in hex: the same body is one event."""
    return hashlib.sha256(body).hexdigest()


def kept_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers worth keeping: names lower-cased, secrets left out, values cut.

    A name sent twice keeps both values, joined by ``", "`` (as HTTP reads them).
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    kept: dict[str, str] = {}
    for raw_name, value in pairs:
        name = raw_name.strip().lower()
        if name in SECRET_HEADERS or any(word in name for word in SECRET_WORDS):
            continue
        joined = f"{kept[name]}, {value}" if name in kept else value
        kept[name] = joined[:MAX_HEADER_VALUE]
    return kept


def store(
    session: Session,
    body: bytes,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    received_at: datetime,
    receiver: str,
) -> StoredEvent:
    """Insert the event unless its body is there (``ON CONFLICT (digest) DO NOTHING``).

    ``body`` must be UTF-8 (the receiver checked it is JSON). The caller
    commits; on PostgreSQL a concurrent insert of the same body by another
    replica makes this wait for that transaction, then find its row.
    """
    key = digest(body)
    row = {
        "digest": key,
        "received_at": received_at,
        "receiver": receiver[:255],
        "headers": kept_headers(headers),
        "body": body.decode("utf-8"),
        "status": "new",
    }
    postgres = session.get_bind().dialect.name == "postgresql"
    statement = (postgresql_insert if postgres else sqlite_insert)(CALL_EVENTS)
    inserted = session.execute(
        statement.values(row)
        .on_conflict_do_nothing(index_elements=[CALL_EVENTS.c.digest])
        .returning(CALL_EVENTS.c.id)
    ).first()
    if inserted is not None:
        return StoredEvent(int(inserted.id), new=True)
    existing = session.execute(select(CALL_EVENTS.c.id).where(CALL_EVENTS.c.digest == key))
    return StoredEvent(int(existing.scalar_one()), new=False)


def listing(session: Session, status: str | None = None, limit: int = 100) -> list[EventRow]:
    """The events, newest first (at most ``limit``; only ``status`` when given), each with
    its lead (sync, Salesforce Id) and the call outcome read from it, where there are."""
    events, outcomes, leads = CALL_EVENTS.c, CALL_OUTCOMES.c, LEADS.c
    query = (
        select(
            events.id,
            events.received_at,
            events.receiver,
            events.status,
            func.length(events.body).label("chars"),
            events.detail,
            events.lead_id,
            func.coalesce(outcomes.sync_name, leads.sync_name).label("sync"),
            func.coalesce(outcomes.salesforce_id, leads.salesforce_id).label("salesforce_id"),
            outcomes.outcome,
            outcomes.disposition,
            outcomes.writeback_status,
            outcomes.task_id,
        )
        .select_from(
            CALL_EVENTS.outerjoin(LEADS, leads.id == events.lead_id).outerjoin(
                CALL_OUTCOMES, outcomes.event_id == events.id
            )
        )
        .order_by(events.id.desc(), outcomes.id)
        .limit(limit)
    )
    if status is not None:
        query = query.where(events.status == status)
    return [EventRow(**row._mapping) for row in session.execute(query)]
