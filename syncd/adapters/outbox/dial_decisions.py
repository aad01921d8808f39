"""The record of every dial decision: one ``dial_decisions`` row per lead sent, and its rules.

In the claim's transaction, each lead the send gate moves to ``sending`` gets
one row with the inputs every rule read (:func:`syncd.domain.dial_record.dial_inputs`)
and the version of the sync's effective rules; the rules themselves are kept
once per version in ``rules_versions``, written when a delivery starts
(docs/safety.md#the-record-of-every-dial-decision).

A claim writes its rows with one statement, and equal ``inputs`` (the gate
shares them) are serialised once. On PostgreSQL the varying values of every row
go as one JSON array, which the server unpacks (``json_array_elements``) in an
``INSERT ... SELECT``: one round trip. On SQLite, in process, the driver's own
executemany of one prepared statement is the cheapest: SQLAlchemy's executemany
of the same rows took 2 to 5 ms of CPU per claim of 100 (its per-row parameter
handling), and unpacking a JSON array with ``json_each`` about 1.2 ms, most of it
parsing the JSON text of the inputs again; the driver's takes about 0.8 ms
(docs/performance.md#the-send-gates-checks-2026-12-07).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Table, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from syncd.adapters.orm import DialDecision, RulesVersion, UTCDateTime
from syncd.adapters.outbox.common import Claim

DIAL_DECISIONS: Table = DialDecision.__table__  # type: ignore[assignment]
RULES_VERSIONS: Table = RulesVersion.__table__  # type: ignore[assignment]


class Dial(NamedTuple):
    """One lead the gate let through, with its dial decision's ``inputs``."""

    lead_id: int
    phone_e164: str | None
    inputs: Mapping[str, Any]


_COLUMNS = "lead_id, sync_name, agent_id, phone_e164, batch_id, decided_at, rules_version, inputs"
#: PostgreSQL: one row per element ``[lead_id, phone_e164, inputs]`` of the JSON array
#: ``rows``, where ``inputs`` is the JSON text of the inputs as a string, stored as it is.
_INSERT_FROM_JSON = text(
    f"INSERT INTO dial_decisions ({_COLUMNS}) "
    "SELECT CAST(r.value ->> 0 AS BIGINT), :sync_name, :agent_id, "
    "r.value ->> 1, :batch_id, :now, :version, CAST(r.value ->> 2 AS JSON) "
    "FROM json_array_elements(CAST(:rows AS JSON)) AS r"
).bindparams(bindparam("now", type_=UTCDateTime()))
#: SQLite: the driver's own executemany of one prepared statement (no statement text
#: or parameter processing per row in SQLAlchemy; the values are bound as given).
_INSERT_EACH = f"INSERT INTO dial_decisions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def record_dials(
    session: Session, claim: Claim, dials: Sequence[Dial], rules_version: str, now: datetime
) -> None:
    """One ``dial_decisions`` row per lead of ``claim``, in one statement."""
    if not dials:
        return
    connection = session.connection()
    bodies = _bodies(dials)
    if connection.dialect.name == "sqlite":
        _insert_each(connection, claim, dials, bodies, rules_version, now)
        return
    rows = [
        (lead_id, phone, body) for (lead_id, phone, _i), body in zip(dials, bodies, strict=True)
    ]
    connection.execute(
        _INSERT_FROM_JSON,
        {
            "rows": _json(rows),
            "sync_name": claim.sync_name,
            "agent_id": claim.agent_id,
            "batch_id": claim.batch_id,
            "now": now,
            "version": rules_version,
        },
    )


def _insert_each(
    connection: Connection,
    claim: Claim,
    dials: Sequence[Dial],
    bodies: Sequence[str],
    rules_version: str,
    now: datetime,
) -> None:
    """SQLite: the rows through the driver's executemany, ``decided_at`` bound once as
    the column's type binds it (UTC, SQLite's text form)."""
    decided_at = connection.dialect.type_descriptor(DIAL_DECISIONS.c.decided_at.type)
    bind = decided_at.bind_processor(connection.dialect)
    at = bind(now) if bind is not None else now
    name, agent, batch = claim.sync_name, claim.agent_id, claim.batch_id
    connection.exec_driver_sql(
        _INSERT_EACH,
        [
            (lead_id, name, agent, phone, batch, at, rules_version, body)
            for (lead_id, phone, _inputs), body in zip(dials, bodies, strict=True)
        ],
    )


def _bodies(dials: Sequence[Dial]) -> list[str]:
    """The JSON text of each dial's ``inputs``; each distinct value (the gate shares
    equal ones) is serialised once."""
    texts: dict[int, str] = {}
    bodies: list[str] = []
    for dial in dials:
        body = texts.get(id(dial.inputs))
        if body is None:
            body = texts[id(dial.inputs)] = _json(dial.inputs)
        bodies.append(body)
    return bodies


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def record_rules_version(
    session: Session, *, sync_name: str, version: str, rules: Mapping[str, Any], now: datetime
) -> None:
    """Keep the rules ``version`` stands for, unless a row already does (insert-if-absent).

    Two syncs with the same effective rules share one version; its row names the
    sync that used it first.
    """
    values = {
        "version": version,
        "sync_name": sync_name,
        "rules": dict(rules),
        "first_seen_at": now,
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(RULES_VERSIONS)
        .values(values)
        .on_conflict_do_nothing(index_elements=[RULES_VERSIONS.c.version])
    )
    session.execute(statement)
