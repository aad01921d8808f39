"""The record of every dial decision: one ``dial_decisions`` row per lead sent, and its rules.

In the claim's transaction, each lead the send gate moves to ``sending`` gets
one row with the inputs every rule read (:func:`syncd.domain.dial_record.dial_inputs`)
and the version of the sync's effective rules; the rules themselves are kept
once per version in ``rules_versions``, written when a delivery starts
(docs/safety.md#the-record-of-every-dial-decision).

A claim writes its rows with one statement, and equal ``inputs`` (the gate
shares them) are serialised once. On PostgreSQL the varying values of every
row go as one JSON array and the distinct inputs as another, which the server
unpacks (``json_array_elements``) in an ``INSERT ... SELECT``: one round trip,
each distinct inputs value sent and parsed once. On SQLite, in process, the
driver's own executemany of one prepared statement is the cheapest:
SQLAlchemy's executemany of the same rows took 2 to 5 ms of CPU per claim of
100 (its per-row parameter handling), and unpacking a JSON array with
``json_each`` about 1.2 ms, most of it parsing the inputs' JSON text again; the
driver's takes about 0.8 ms
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
from syncd.adapters.outbox.common import Claim, OutboxConflict

DIAL_DECISIONS: Table = DialDecision.__table__  # type: ignore[assignment]
RULES_VERSIONS: Table = RulesVersion.__table__  # type: ignore[assignment]


class Dial(NamedTuple):
    """One lead the gate let through, with its dial decision's ``inputs``."""

    lead_id: int
    phone_e164: str | None
    inputs: Mapping[str, Any]


_COLUMNS = "lead_id, sync_name, agent_id, phone_e164, batch_id, decided_at, rules_version, inputs"
#: PostgreSQL: one row per element ``[lead_id, phone_e164, n]`` of the JSON array ``rows``,
#: whose inputs are the ``n``-th (from 1) element of the JSON array ``bodies``.
_INSERT_FROM_JSON = text(
    f"INSERT INTO dial_decisions ({_COLUMNS}) "
    "SELECT CAST(r.value ->> 0 AS BIGINT), :sync_name, :agent_id, "
    "r.value ->> 1, :batch_id, :now, :version, b.value "
    "FROM json_array_elements(CAST(:rows AS JSON)) AS r "
    "JOIN json_array_elements(CAST(:bodies AS JSON)) WITH ORDINALITY AS b(value, n) "
    "ON b.n = CAST(r.value ->> 2 AS BIGINT)"
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
    bodies, which = _distinct_inputs(dials)
    if connection.dialect.name == "sqlite":
        _insert_each(connection, claim, dials, [bodies[i] for i in which], rules_version, now)
        return
    rows = [(dial.lead_id, dial.phone_e164, i + 1) for dial, i in zip(dials, which, strict=True)]
    written = connection.execute(
        _INSERT_FROM_JSON,
        {
            "rows": _json(rows),
            "bodies": f"[{','.join(bodies)}]",
            "sync_name": claim.sync_name,
            "agent_id": claim.agent_id,
            "batch_id": claim.batch_id,
            "now": now,
            "version": rules_version,
        },
    ).rowcount
    if written != len(dials):
        raise OutboxConflict(f"{written} dial decisions written for {len(dials)} leads claimed")


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


def _distinct_inputs(dials: Sequence[Dial]) -> tuple[list[str], list[int]]:
    """The JSON text of each distinct ``inputs`` value (the gate shares equal ones),
    serialised once, and which of them each dial has."""
    seen: dict[int, int] = {}
    bodies: list[str] = []
    which: list[int] = []
    for dial in dials:
        index = seen.get(id(dial.inputs))
        if index is None:
            index = seen[id(dial.inputs)] = len(bodies)
            bodies.append(_json(dial.inputs))
        which.append(index)
    return bodies, which


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
