"""New leads: one executemany INSERT and one ``INSERT ... SELECT`` of their first transitions."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from syncd.adapters import writeback_store
from syncd.adapters.ledger.common import (
    LEADS,
    TRANSITIONS,
    LedgerConflict,
    bind_processor,
    ids_among,
)
from syncd.domain.outcome import REASON_CHARS
from syncd.domain.page_plan import NewLead
from syncd.domain.states import LeadState, check_transition

_HELD = LeadState.HELD.value
_QUEUED = LeadState.QUEUED.value


#: The columns insert_new writes, in the order of its SQLite rows.
_NEW_LEAD_COLUMNS = (
    "sync_name",
    "salesforce_id",
    "agent_id",
    "state",
    "payload",
    "phone_e164",
    "record_cursor",
    "record_stamp",
    "record_hash",
    "note",
    "do_not_call",
    "time_zone",
    "region",
    "attempts",
    "created_at",
    "updated_at",
    "consent",
    "record_created_at",
    "read_at",
    "queued_at",
)
_SQLITE_INSERT_LEAD = (
    f"INSERT INTO {LEADS.name} ({', '.join(_NEW_LEAD_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _NEW_LEAD_COLUMNS)})"
)


def insert_new(
    session: Session,
    sync_name: str,
    leads: Sequence[NewLead],
    now: datetime,
    read_at: datetime | None = None,
) -> None:
    """Insert new leads and their first transition, in two set-based steps.

    Speed to lead: each lead keeps its record's CreatedDate, ``read_at`` (when
    its page or event arrived; ``now`` when not given) and, when it is queued,
    ``now`` as the moment it was first queued.

    On SQLite the rows go to the driver's executemany with their values
    converted by the columns' own bind processors (what SQLAlchemy would send,
    without its per-row, per-column parameter handling, about a third of the
    poll's CPU per record), and the first transitions take the rows above the
    largest id before the insert. Elsewhere one executemany INSERT ... RETURNING
    and the returned ids.
    """
    if not leads:
        return
    allowed: set[str] = set()
    for lead in leads:
        if lead.state not in allowed:
            check_transition(None, lead.state)
            allowed.add(lead.state)
    dialect = session.get_bind().dialect
    if dialect.name == "sqlite":
        # The page's transaction holds SQLite's write lock (BEGIN IMMEDIATE), and SQLite
        # gives a new row the largest rowid plus one: the new leads are exactly those
        # with an id above the largest one before the insert.
        before = session.execute(select(func.max(LEADS.c.id))).scalar_one() or 0
        _insert_sqlite(session, dialect, sync_name, leads, now, read_at or now)
        added = _first_transitions(session, LEADS.c.id > before, now)
        if added != len(leads):
            raise LedgerConflict(f"{len(leads)} leads inserted but {added} found above id {before}")
        writeback_store.enqueue_selected(session, sync_name, LEADS.c.id > before, allowed, now)
        return
    new_ids = _insert_postgresql(session, dialect, sync_name, leads, now, read_at or now)
    _first_transitions(session, new_ids, now)
    writeback_store.enqueue_selected(session, sync_name, new_ids, allowed, now)


#: PostgreSQL: the page's leads as one JSON array of objects (one round trip, a
#: statement psycopg parses once; an executemany of 2,000 rows of 17 values was a
#: statement text of ~2,000 placeholders parsed anew by the driver for every page, a
#: fifth of the poll's CPU). ``json_to_recordset`` parses each object once into typed
#: columns: ``->>`` on a ``json`` value parses it again for every field read, which took
#: half the statement's time (70 against 34 ms a page of 2,000). ``payload`` is a
#: ``json`` column of the record, so it is stored as the JSON text it was sent as.
_PG_ROW_COLUMNS = (
    ("i", "salesforce_id", "TEXT"),
    ("a", "agent_id", "TEXT"),
    ("s", "state", "TEXT"),
    ("p", "payload", "JSON"),
    ("n", "phone_e164", "TEXT"),
    ("c", "record_cursor", "TIMESTAMPTZ"),
    ("t", "record_stamp", "TIMESTAMPTZ"),
    ("h", "record_hash", "TEXT"),
    ("o", "note", "TEXT"),
    ("d", "do_not_call", "BOOLEAN"),
    ("z", "time_zone", "TEXT"),
    ("g", "region", "TEXT"),
    ("k", "consent", "TEXT"),
    ("m", "record_created_at", "TIMESTAMPTZ"),
)
_PG_FROM_ROW = {column: f"r.{key}" for key, column, _type in _PG_ROW_COLUMNS}
_PG_VALUES = {
    **_PG_FROM_ROW,
    "sync_name": ":sync_name",
    "attempts": "0",
    "created_at": ":now",
    "updated_at": ":now",
    "read_at": ":read_at",
    "queued_at": f"CASE WHEN r.s = '{_QUEUED}' THEN :now END",
}
_PG_INSERT_LEADS = text(
    f"INSERT INTO {LEADS.name} ({', '.join(_NEW_LEAD_COLUMNS)}) "
    f"SELECT {', '.join(_PG_VALUES[column] for column in _NEW_LEAD_COLUMNS)} "
    "FROM ROWS FROM (json_to_recordset(CAST(:rows AS JSON)) AS ("
    + ", ".join(f"{key} {kind}" for key, _column, kind in _PG_ROW_COLUMNS)
    + ")) WITH ORDINALITY AS r("
    + ", ".join(key for key, _column, _kind in _PG_ROW_COLUMNS)
    + f", ordinal) ORDER BY r.ordinal RETURNING {LEADS.name}.id"
).bindparams(
    bindparam("now", type_=LEADS.c.created_at.type),
    bindparam("read_at", type_=LEADS.c.read_at.type),
)


def _insert_postgresql(
    session: Session,
    dialect: Dialect,
    sync_name: str,
    leads: Sequence[NewLead],
    now: datetime,
    read_at: datetime,
) -> ColumnElement[bool]:
    """Insert the leads in one statement; a condition selecting exactly the new ones."""
    stamp = bind_processor(dialect, "record_cursor")

    def at(value: datetime | None) -> str | None:
        bound = stamp(value)
        return None if bound is None else bound.isoformat()

    rows = [
        {
            "i": lead.salesforce_id,
            "a": lead.agent_id,
            "s": lead.state,
            "p": lead.payload,
            "n": lead.phone_e164,
            "c": at(lead.record_cursor),
            "t": at(lead.record_stamp),
            "h": lead.record_hash,
            "o": lead.note,
            "d": bool(lead.do_not_call),
            "z": lead.time_zone,
            "g": lead.region,
            "k": lead.consent,
            "m": at(lead.record_created_at),
        }
        for lead in leads
    ]
    returned = session.connection().execute(
        _PG_INSERT_LEADS,
        {
            "sync_name": sync_name,
            "now": now,
            "read_at": read_at,
            "rows": json.dumps(rows, allow_nan=False),
        },
    )
    ids = [lead_id for (lead_id,) in returned]
    if len(ids) != len(leads):
        raise LedgerConflict(f"{len(leads)} leads to insert but {len(ids)} inserted")
    return ids_among(LEADS.c.id, ids)


def _insert_sqlite(
    session: Session,
    dialect: Dialect,
    sync_name: str,
    leads: Sequence[NewLead],
    now: datetime,
    read_at: datetime,
) -> None:
    payload = bind_processor(dialect, "payload")
    cursor = sqlite_datetime(bind_processor(dialect, "record_cursor"))
    flag = bind_processor(dialect, "do_not_call")
    created = bind_processor(dialect, "created_at")(now)
    updated = bind_processor(dialect, "updated_at")(now)
    read = cursor(read_at)
    queued = cursor(now)
    rows = [
        (
            sync_name,
            lead.salesforce_id,
            lead.agent_id,
            lead.state,
            payload(lead.payload),
            lead.phone_e164,
            cursor(lead.record_cursor),
            cursor(lead.record_stamp),
            lead.record_hash,
            lead.note,
            flag(lead.do_not_call),
            lead.time_zone,
            lead.region,
            0,
            created,
            updated,
            lead.consent,
            cursor(lead.record_created_at),
            read,
            queued if lead.state == _QUEUED else None,
        )
        for lead in leads
    ]
    session.connection().exec_driver_sql(_SQLITE_INSERT_LEAD, rows)


def sqlite_datetime(processor: Callable[[Any], Any]) -> Callable[[datetime | None], Any]:
    """``processor`` (a UTC datetime column's on SQLite), quicker for UTC datetimes.

    SQLite stores a datetime as the text ``YYYY-MM-DD HH:MM:SS.ffffff`` of its
    naive UTC value: ``isoformat`` with a space and microseconds, less the
    ``+00:00`` it ends with. One C call instead of the column type's two Python
    steps, three values a new lead. Any other value goes to ``processor``; a test
    compares the two over many datetimes.
    """

    def stamp(value: datetime | None) -> Any:
        if value is not None and value.tzinfo is UTC:
            return value.isoformat(" ", "microseconds")[:-6]
        return processor(value)

    return stamp


def _first_transitions(session: Session, new_leads: ColumnElement[bool], now: datetime) -> int:
    """The first transitions of the new leads, with one INSERT ... SELECT in id order.

    The reason is the lead's note after "polled: new record" (for a held lead:
    that the guard held it). Returns how many transitions were inserted.
    """
    what = "polled: new record"
    note = LEADS.c.note
    reason = case(
        (LEADS.c.state == _HELD, literal(f"{what}: held by the blast-radius guard", String)),
        (or_(note.is_(None), note == ""), literal(what, String)),
        else_=func.substr(literal(f"{what}: ", String) + note, 1, REASON_CHARS),
    )
    columns = TRANSITIONS.c
    result = session.execute(
        insert(TRANSITIONS).from_select(
            ["lead_id", "from_state", "to_state", "reason", "batch_id", "at"],
            select(
                LEADS.c.id,
                literal(None, columns.from_state.type),
                LEADS.c.state,
                reason,
                literal(None, columns.batch_id.type),
                literal(now, columns.at.type),
            )
            .where(new_leads)
            .order_by(LEADS.c.id),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
