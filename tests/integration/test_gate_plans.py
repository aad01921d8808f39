"""The send gate's and the poll's reads use their indexes on PostgreSQL, whatever the
statistics say.

A claim reads the due leads (``ix_leads_claim``), and under the numbers' locks
the suppression list (its primary key), the rivals (``ix_leads_phone``) and the
numbers' sends (``ix_leads_number``). A poll page reads its existing leads (the
unique key of sync and Salesforce Id) and the recent leads of its numbers
(``ix_leads_phone``, or ``ix_leads_number`` when any agent counts). The planner
picks each plan from the table statistics, which on a fresh database may be missing (never analysed:
the bench's server runs without autovacuum) or stale (taken while every lead
was queued). Each plan is checked here, as custom and as generic plan, with
no statistics, with statistics of a queue that has since been sent, and with
current ones: no read scans ``leads`` or ``suppressions`` whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from syncd.adapters.db import make_engine
from syncd.adapters.migrate import upgrade
from syncd.adapters.number_param import as_param
from syncd.adapters.outbox.due import _DUE
from syncd.adapters.outbox.number_reads import _reads
from syncd.adapters.poll_store import _PG_EXISTING_LOCKED, _PG_RECENT, _PG_RECENT_OF_AGENTS
from syncd.adapters.suppression_store import _among
from tests.conftest import fresh_postgres_schema

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LEADS = 20_000
SENT = LEADS // 2
LISTED = 1_000


@pytest.fixture(scope="module")
def filled(postgres_url_module: str) -> Iterator[Engine]:
    """``LEADS`` leads of one agent, each its own number, the first half accepted (sent
    0 to 39 days ago) and the rest queued; ``LISTED`` numbers on the suppression list."""
    engine = make_engine(postgres_url_module)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO leads (sync_name, salesforce_id, agent_id, state, payload, "
                "phone_e164, record_cursor, record_hash, attempts, created_at, updated_at, "
                "sent_at) SELECT 'web', lpad(g::text, 18, '0'), 'agt_1', "
                "CASE WHEN g <= :sent THEN 'accepted' ELSE 'queued' END, '{}', "
                "'+1415' || lpad(g::text, 7, '0'), :now, md5(g::text), 0, :now, :now, "
                "CASE WHEN g <= :sent THEN :now - (g % 40) * interval '1 day' END "
                "FROM generate_series(1, :leads) g"
            ),
            {"leads": LEADS, "sent": SENT, "now": NOW},
        )
        connection.execute(
            text(
                "INSERT INTO suppressions (phone_e164, source, reason, added_by, seen_at, "
                "added_at) SELECT '+1999' || lpad(g::text, 7, '0'), 'operator', 'x', 'ops', "
                ":now, :now FROM generate_series(1, :listed) g"
            ),
            {"listed": LISTED, "now": NOW},
        )
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def postgres_url_module() -> Iterator[str]:
    """A fresh schema for this module's tables (filled once for all its tests)."""
    with fresh_postgres_schema() as url:
        yield url


def _statistics(engine: Engine, kind: str) -> None:
    with engine.begin() as connection:
        if kind == "stale":  # taken while every lead was queued
            connection.execute(
                text("UPDATE leads SET state = 'queued' WHERE id <= :sent"), {"sent": SENT}
            )
            connection.execute(text("ANALYZE leads"))
            connection.execute(
                text("UPDATE leads SET state = 'accepted' WHERE id <= :sent"), {"sent": SENT}
            )
        elif kind == "current":
            connection.execute(text("ANALYZE leads"))
            connection.execute(text("ANALYZE suppressions"))


def _reads_of() -> list[tuple[str, Any, dict[str, Any]]]:
    phones = [f"+1415{n:07d}" for n in range(SENT + 1, SENT + 101)] + ["+19990000001"]
    numbers = {
        "phones": as_param(phones),
        "agent_id": "agt_1",
        "rivals_since": NOW - timedelta(days=1),
        "sends_since": NOW - timedelta(days=30),
    }
    page_ids = [f"{n:018d}" for n in range(SENT - 1_000, SENT + 1_000)]
    page_phones = [f"+1415{n:07d}" for n in range(SENT - 1_000, SENT + 1_000)]
    recent = {"phones": as_param(page_phones), "since": NOW - timedelta(days=1)}
    return [
        ("due", _DUE, {"sync_name": "web", "agent_id": "agt_1", "now": NOW, "limit": 100}),
        ("numbers", _reads("postgresql", True, True), numbers),
        ("suppression", _among("postgresql"), {"phones": as_param(phones)}),
        ("existing", _PG_EXISTING_LOCKED, {"sync_name": "web", "ids": as_param(page_ids)}),
        ("recent", _PG_RECENT_OF_AGENTS, {**recent, "agents": as_param(["agt_1"])}),
        ("recent, any agent", _PG_RECENT, recent),
    ]


def _scans(plan: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(node type, relation) of every node of a JSON plan that reads a table."""
    if "Relation Name" in plan:
        yield plan["Node Type"], plan["Relation Name"]
    for child in plan.get("Plans", []):
        yield from _scans(child)


def _prepared(statement: Any, params: dict[str, Any], engine: Engine) -> tuple[str, str]:
    """``statement`` as the text of a server-side prepared statement, and its arguments."""
    compiled = statement.compile(dialect=engine.dialect)
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        names.append(match.group(1))
        return f"${len(names)}"

    def expanded(match: re.Match[str]) -> str:  # an IN of a constant list, as literals
        return ", ".join(_literal(value) for value in compiled.params[match.group(1)])

    sql = re.sub(r"__\[POSTCOMPILE_(\w+)\]", expanded, str(compiled))
    sql = re.sub(r"%\((\w+)\)s", number, sql)
    values = [params.get(name, compiled.params.get(name)) for name in names]
    return sql, ", ".join(_literal(v) for v in values)


def _plan(engine: Engine, statement: Any, params: dict[str, Any], mode: str) -> dict[str, Any]:
    """The plan of ``statement`` prepared server side, as a ``mode`` plan: ``custom``,
    ``generic``, or ``auto`` (the plan the server itself picks after ten executions)."""
    sql, args = _prepared(statement, params, engine)
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        raw.execute(
            f"SET plan_cache_mode = force_{mode}_plan"
            if mode != "auto"
            else "RESET plan_cache_mode"
        )
        raw.execute("DEALLOCATE ALL")
        raw.execute(f"PREPARE gate_read AS {sql}")
        for _ in range(10 if mode == "auto" else 0):
            raw.execute(f"EXECUTE gate_read({args})").fetchall()
        [[found]] = raw.execute(f"EXPLAIN (FORMAT JSON) EXECUTE gate_read({args})").fetchall()
        raw.execute("DEALLOCATE ALL")
        raw.execute("RESET plan_cache_mode")
        connection.rollback()
    return found[0]["Plan"]  # type: ignore[no-any-return]


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


@pytest.mark.parametrize("statistics", ["none", "stale", "current"])
def test_no_gate_read_scans_a_whole_table(filled: Engine, statistics: str) -> None:
    _statistics(filled, statistics)
    for name, statement, params in _reads_of():
        # The due read's retry part has a generic plan that reads every lead by id
        # (its LIMIT and time unknown): its custom plans always look cheaper, so the
        # server never picks it; "auto" checks the plan the server does pick.
        modes = ["custom", "auto"] if name == "due" else ["custom", "generic", "auto"]
        for mode in modes:
            scans = list(_scans(_plan(filled, statement, params, mode)))
            assert scans, (name, mode)
            whole = [scan for scan in scans if scan[0] == "Seq Scan"]
            assert whole == [], (
                f"{name} ({mode} plan, statistics {statistics}): {json.dumps(scans)}"
            )
