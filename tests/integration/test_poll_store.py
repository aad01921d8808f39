"""Integration tests for syncd.adapters.poll_store on real databases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, String, case, func, insert, literal, or_, select, text

from syncd.adapters import ledger
from syncd.adapters import poll_store as store
from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.migrate import upgrade
from syncd.adapters.orm import Lead, LeadTransition
from syncd.domain.page_plan import ExistingLead, NewLead

NOW = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def reference_insert(session: Any, sync_name: str, leads: Sequence[NewLead], now: datetime) -> None:
    """insert_new as it would be: SQLAlchemy's executemany INSERT ... RETURNING everywhere."""
    table = Lead.__table__
    rows = [
        {
            "sync_name": sync_name,
            "salesforce_id": lead.salesforce_id,
            "agent_id": lead.agent_id,
            "state": lead.state,
            "payload": lead.payload,
            "phone_e164": lead.phone_e164,
            "record_cursor": lead.record_cursor,
            "record_stamp": lead.record_stamp,
            "record_hash": lead.record_hash,
            "note": lead.note,
            "do_not_call": lead.do_not_call,
            "time_zone": lead.time_zone,
            "region": lead.region,
            "consent": lead.consent,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
            "record_created_at": lead.record_created_at,
            "read_at": now,
            "queued_at": now if lead.state == "queued" else None,
        }
        for lead in leads
    ]
    returned = session.execute(insert(table).returning(table.c.id), rows).all()
    what = "polled: new record"
    note = table.c.note
    reason = case(
        (or_(note.is_(None), note == ""), literal(what, String)),
        else_=func.substr(literal(f"{what}: ", String) + note, 1, 500),
    )
    columns = LeadTransition.__table__.c
    session.execute(
        insert(LeadTransition.__table__).from_select(
            ["lead_id", "from_state", "to_state", "reason", "batch_id", "at"],
            select(
                table.c.id,
                literal(None, columns.from_state.type),
                table.c.state,
                reason,
                literal(None, columns.batch_id.type),
                literal(now, columns.at.type),
            )
            .where(table.c.id.in_([lead_id for (lead_id,) in returned]))
            .order_by(table.c.id),
        )
    )


def varied_leads(start: int, count: int) -> list[NewLead]:
    """New leads with every kind of value a poll stores."""
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    notes: list[str | None] = [None, "", "email left out: not an email address", "n" * 600]
    leads = []
    for n in range(start, start + count):
        payload: dict[str, Any] = {
            "phoneNumber": f"+1415555{n % 10000:04d}",
            "salesforceId": f"00Q{n:015d}",
            "firstName": ["Ada", "Chloé", "Zoë 😀", 'Quote " \\ back'][n % 4],
            "customData": {"n": n, "f": n / 7, "flag": n % 2 == 0, "none": None, "l": [1, "a"]},
        }
        if n % 5 == 0:
            del payload["phoneNumber"]
        leads.append(
            NewLead(
                salesforce_id=f"00Q{n:015d}",
                agent_id=None if n % 6 == 0 else f"agt_{n % 3}",
                state=["queued", "invalid", "skipped"][n % 3],
                payload=payload,
                phone_e164=None if n % 5 == 0 else f"+1415555{n % 10000:04d}",
                record_cursor=datetime(2024, 5, 1, 11, n % 60, n % 60, n * 37 % 1_000_000)
                .replace(tzinfo=UTC)
                .astimezone(zones[n % 3]),
                record_hash=f"{n:064x}",
                note=notes[n % 4],
                record_stamp=None
                if n % 4 == 0
                else datetime(2024, 5, 1, 11, n % 60, 0, n * 53 % 1_000_000, tzinfo=UTC),
                do_not_call=n % 7 == 0,
                time_zone=None if n % 2 else "America/Chicago",
                region=None if n % 3 else "TX",
                consent=None if n % 4 else "true",
                record_created_at=None
                if n % 8 == 0
                else datetime(2024, 5, 1, 10, n % 60, 0, n * 71 % 1_000_000)
                .replace(tzinfo=UTC)
                .astimezone(zones[n % 3]),
            )
        )
    return leads


def raw_rows(engine: Engine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every stored value as SQLite holds it (no type conversion on the way out)."""
    with engine.connect() as connection:
        leads = [tuple(row) for row in connection.execute(text("SELECT * FROM leads ORDER BY id"))]
        transitions = [
            tuple(row)
            for row in connection.execute(text("SELECT * FROM lead_transitions ORDER BY id"))
        ]
    return leads, transitions


def fresh(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def test_sqlite_insert_stores_what_sqlalchemy_stored(tmp_path: Path) -> None:
    """insert_leads on SQLite writes byte for byte the rows the SQLAlchemy insert wrote."""
    fast, slow = fresh(tmp_path / "fast.db"), fresh(tmp_path / "slow.db")
    pages = [varied_leads(0, 950), varied_leads(950, 7), varied_leads(2000, 1200)]
    for engine, insert_page in ((fast, ledger.insert_new), (slow, reference_insert)):
        factory = make_session_factory(engine)
        for number, page in enumerate(pages):
            with factory.begin() as session:
                insert_page(session, f"sync{number % 2}", page, NOW + timedelta(minutes=number))
    fast_rows, slow_rows = raw_rows(fast), raw_rows(slow)
    assert len(fast_rows[0]) == len(fast_rows[1]) == sum(len(page) for page in pages)
    assert fast_rows == slow_rows
    fast.dispose()
    slow.dispose()


def test_insert_then_read_back(engine: Engine) -> None:
    """On each backend the stored leads read back as they went in, with one transition each."""
    factory = make_session_factory(engine)
    leads = varied_leads(0, 40)
    with factory.begin() as session:
        ledger.insert_new(session, "web", leads, NOW)
    with factory() as session:
        stored = {lead.salesforce_id: lead for lead in session.scalars(select(Lead))}
        reasons = dict(
            session.execute(
                select(Lead.salesforce_id, LeadTransition.reason).join(
                    LeadTransition, LeadTransition.lead_id == Lead.id
                )
            ).all()
        )
    for lead in leads:
        row = stored[lead.salesforce_id]
        assert (row.agent_id, row.state, row.payload, row.phone_e164) == (
            lead.agent_id,
            lead.state,
            lead.payload,
            lead.phone_e164,
        )
        assert (row.record_cursor, row.record_hash, row.note) == (
            lead.record_cursor,
            lead.record_hash,
            lead.note,
        )
        assert (row.attempts, row.created_at, row.updated_at) == (0, NOW, NOW)
        expected = f"polled: new record: {lead.note}"[:500] if lead.note else "polled: new record"
        assert reasons[lead.salesforce_id] == expected


def test_sqlite_rowids_not_above_the_largest_are_an_error(tmp_path: Path) -> None:
    """If SQLite ever gave new rows smaller ids, the page fails instead of losing transitions."""
    engine = fresh(tmp_path / "max.db")
    factory = make_session_factory(engine)
    (lead,) = varied_leads(0, 1)
    with factory.begin() as session:
        session.execute(
            insert(Lead.__table__).values(
                id=2**63 - 1,
                sync_name="web",
                salesforce_id=lead.salesforce_id,
                state=lead.state,
                payload=lead.payload,
                record_cursor=lead.record_cursor,
                record_hash=lead.record_hash,
            )
        )
    with pytest.raises(RuntimeError, match="found above id"), factory.begin() as session:
        ledger.insert_new(session, "web", varied_leads(1, 3), NOW)
    assert len(raw_rows(engine)[0]) == 1  # the page rolled back
    engine.dispose()


def reference_existing(session: Any, sync_name: str, ids: Sequence[str]) -> dict[str, Any]:
    """existing_leads as it was: SQLAlchemy's expanding IN, on every backend."""
    found = {}
    for start in range(0, len(ids), 900):
        query = select(
            Lead.id,
            Lead.salesforce_id,
            Lead.state,
            Lead.record_hash,
            Lead.record_stamp,
            Lead.discarded_at,
        ).where(Lead.sync_name == sync_name, Lead.salesforce_id.in_(ids[start : start + 900]))
        for lead_id, sf_id, state, digest, stamp, discarded in session.execute(query):
            found[sf_id] = ExistingLead(lead_id, state, digest, stamp, discarded is not None)
    return found


def reference_recent(
    session: Any,
    phones: Sequence[str],
    since: datetime,
    exclude_ids: set[int],
    agents: set[str] | None,
) -> set[tuple[str, str]]:
    """recent_phones through SQLAlchemy's expanding IN lists, on every backend.

    Queued and in-flight leads hold their number whatever their age; accepted ones
    within the window.
    """
    pairs = set()
    when = func.coalesce(Lead.sent_at, Lead.created_at)
    holding = ["queued", "sending", "uncertain"]
    ordered = sorted(phones)
    for start in range(0, len(ordered), 900):
        query = select(Lead.id, Lead.agent_id, Lead.phone_e164).where(
            Lead.phone_e164.in_(ordered[start : start + 900]),
            Lead.state.in_(holding) | ((Lead.state == "accepted") & (when >= since)),
        )
        if agents is not None:
            query = query.where(Lead.agent_id.in_(sorted(agents)))
        for lead_id, agent, phone in session.execute(query):
            if lead_id not in exclude_ids and agent is not None and phone is not None:
                pairs.add((agent, phone))
    return pairs


def test_lookups_find_what_sqlalchemy_found(engine: Engine) -> None:
    """existing_leads and recent_phones (SQLite: straight to the driver; PostgreSQL: the
    values as one JSON parameter) answer as the SQLAlchemy queries of IN lists did."""
    factory = make_session_factory(engine)
    naive = engine.dialect.name == "sqlite"  # a plain text statement binds SQLite's UTC text
    states = ["queued", "sending", "accepted", "uncertain", "rejected", "invalid", "skipped"]
    with factory.begin() as session:
        for number, sync_name in enumerate(("web", "other")):
            leads = [
                NewLead(
                    salesforce_id=f"00Q{n:015d}",
                    agent_id=None if n % 11 == 0 else f"agt_{n % 3}",
                    state=states[n % len(states)],
                    payload={"n": n},
                    phone_e164=None if n % 13 == 0 else f"+1202555{n % 1500:04d}",
                    record_cursor=NOW,
                    record_hash=f"{n:064x}",
                    note=None,
                    record_stamp=None if n % 3 else NOW - timedelta(microseconds=n),
                )
                for n in range(number * 700, number * 700 + 2300)
            ]
            # Rows in every state, as delivery leaves them: the reference insert writes them
            # directly (the ledger inserts only the states a new record may start in).
            reference_insert(session, sync_name, leads, NOW - timedelta(hours=number))
        # Some sent long ago, some recently; created_at decides for the others.
        for remainder, ago in ((0, timedelta(days=2)), (1, timedelta(minutes=1))):
            at = NOW - ago
            session.execute(
                text("UPDATE leads SET sent_at = :at WHERE id % 5 = :remainder"),
                {"at": at.replace(tzinfo=None) if naive else at, "remainder": remainder},
            )
    ids = [f"00Q{n:015d}" for n in range(0, 3500, 3)] + ["00Qnotthere000000"]
    phones = [f"+1202555{n:04d}" for n in range(0, 1600, 2)]
    lookups = 0
    with factory() as session:
        for sync_name in ("web", "other", "none"):
            expected = reference_existing(session, sync_name, ids)
            assert store.existing_leads(session, sync_name, ids, lock=False) == expected
            lookups += len(expected)
        exclude = set(range(1, 4000, 7))
        for since in (NOW - timedelta(days=3), NOW - timedelta(hours=1), NOW, NOW + timedelta(1)):
            for agents in (None, {"agt_0"}, {"agt_1", "agt_2"}, {"nobody"}):
                for excluded in (set(), exclude):
                    expected_pairs = reference_recent(session, phones, since, excluded, agents)
                    found = store.recent_phones(session, phones, since, excluded, agents=agents)
                    assert found == expected_pairs, (since, agents, len(excluded))
                    lookups += len(expected_pairs)
    assert lookups > 1000  # both lookups found plenty, so the comparison means something


def pg_text_rows(engine: Engine, sync_name: str) -> tuple[list[Any], list[Any]]:
    """The sync's leads and their first transitions as PostgreSQL's text of every value."""
    columns = [c.name for c in Lead.__table__.c if c.name not in ("id", "sync_name")]
    listed = ", ".join(f"CAST({name} AS TEXT)" for name in columns)
    with engine.connect() as connection:
        leads = connection.execute(
            text(f"SELECT {listed} FROM leads WHERE sync_name = :s ORDER BY id"), {"s": sync_name}
        ).all()
        transitions = connection.execute(
            text(
                "SELECT l.salesforce_id, CAST(t.from_state AS TEXT), t.to_state, t.reason, "
                "CAST(t.batch_id AS TEXT), CAST(t.at AS TEXT) FROM lead_transitions t "
                "JOIN leads l ON l.id = t.lead_id WHERE l.sync_name = :s ORDER BY t.id"
            ),
            {"s": sync_name},
        ).all()
    return [tuple(row) for row in leads], [tuple(row) for row in transitions]


def test_postgresql_insert_stores_what_sqlalchemy_stored(postgres_url: str) -> None:
    """insert_leads on PostgreSQL (one statement over a JSON array) stores the text of
    every value the SQLAlchemy executemany stored, payloads byte for byte."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    pages = [varied_leads(0, 950), varied_leads(950, 7), varied_leads(2000, 1200)]
    for name, insert_page in (("fast", ledger.insert_new), ("slow", reference_insert)):
        for number, page in enumerate(pages):
            with factory.begin() as session:
                insert_page(session, name, page, NOW + timedelta(minutes=number))
    fast_rows, slow_rows = pg_text_rows(engine, "fast"), pg_text_rows(engine, "slow")
    assert len(fast_rows[0]) == len(fast_rows[1]) == sum(len(page) for page in pages)
    assert fast_rows == slow_rows
    engine.dispose()
