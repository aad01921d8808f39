"""The record of every dial decision: one ``dial_decisions`` row per lead sent, and its rules.

In the claim's transaction, each lead the send gate moves to ``sending`` gets
one row with the inputs every rule read (:func:`syncd.domain.dial_record.dial_inputs`)
and the version of the sync's effective rules; the rules themselves are kept
once per version in ``rules_versions``, written when a delivery starts
(docs/safety.md#the-record-of-every-dial-decision).

A claim writes its rows with one statement, and equal ``inputs`` (the gate
shares them) are serialised once. On PostgreSQL the varying values of every
row go as one JSON array and the distinct inputs as another, which the server
unpacks (``json_array_elements``) in an ``INSERT ... SELECT`` made by the
claim's own statement (:func:`dials_along`: the batch row, the move and these
rows in one round trip), each distinct inputs value sent and parsed once. On
SQLite, in process, the
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

from sqlalchemy import (
    CTE,
    JSON,
    BigInteger,
    ColumnElement,
    Connection,
    String,
    Table,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import TableValuedAlias

from syncd.adapters.orm import DialDecision, RulesVersion, UTCDateTime
from syncd.adapters.outbox.common import Claim

DIAL_DECISIONS: Table = DialDecision.__table__  # type: ignore[assignment]
RULES_VERSIONS: Table = RulesVersion.__table__  # type: ignore[assignment]


class Dial(NamedTuple):
    """One lead the gate let through, with its dial decision's ``inputs``."""

    lead_id: int
    phone_e164: str | None
    inputs: Mapping[str, Any]


#: SQLite: the driver's own executemany of one prepared statement (no statement text
#: or parameter processing per row in SQLAlchemy; the values are bound as given).
_INSERT_EACH = (
    "INSERT INTO dial_decisions (lead_id, sync_name, agent_id, phone_e164, batch_id, "
    "decided_at, rules_version, inputs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def dials_along(batch: ColumnElement[Any]) -> CTE:
    """PostgreSQL: a claim's rows as a data-modifying CTE (``dials``) of the claim's
    statement (:func:`syncd.adapters.ledger.moves.move_along`), naming ``batch``.

    One row per element ``[lead_id, phone_e164, n]`` of the JSON array ``d_rows``,
    whose inputs are the ``n``-th (from 1) element of the JSON array ``d_bodies``
    (:func:`dial_params`); it returns a row per row written.
    """
    rows = _elements("d_rows").render_derived("r")
    bodies = _elements("d_bodies", with_ordinality="n").render_derived("b")
    values = select(
        cast(_item(rows.c.value, 0), BigInteger),
        bindparam("d_sync_name", type_=String),
        bindparam("d_agent_id", type_=String),
        _item(rows.c.value, 1),
        batch,
        bindparam("d_now", type_=UTCDateTime()),
        bindparam("d_version", type_=String),
        bodies.c.value,
    ).select_from(rows.join(bodies, bodies.c.n == cast(_item(rows.c.value, 2), BigInteger)))
    columns = [
        "lead_id",
        "sync_name",
        "agent_id",
        "phone_e164",
        "batch_id",
        "decided_at",
        "rules_version",
        "inputs",
    ]
    written = insert(DIAL_DECISIONS).from_select(columns, values)
    return written.returning(DIAL_DECISIONS.c.lead_id).cte("dials")


def _elements(name: str, **named: str) -> TableValuedAlias:
    """The elements (``value``) of the JSON array bound as ``name``."""
    listed = cast(bindparam(name, type_=String), JSON)
    return func.json_array_elements(listed).table_valued("value", **named)


def _item(value: ColumnElement[Any], index: int) -> ColumnElement[Any]:
    """``value ->> index``: the element of a JSON array, as text."""
    return value.op("->>")(literal_column(str(index)))


def dial_params(
    sync_name: str,
    agent_id: str,
    dials: Sequence[Dial],
    rules_version: str,
    now: datetime,
) -> dict[str, Any]:
    """The parameters of :func:`dials_along` for a claim's ``dials``."""
    bodies, which = _distinct_inputs(dials)
    rows = [(dial.lead_id, dial.phone_e164, i + 1) for dial, i in zip(dials, which, strict=True)]
    return {
        "d_rows": _json(rows),
        "d_bodies": f"[{','.join(bodies)}]",
        "d_sync_name": sync_name,
        "d_agent_id": agent_id,
        "d_now": now,
        "d_version": rules_version,
    }


def record_dials(
    session: Session, claim: Claim, dials: Sequence[Dial], rules_version: str, now: datetime
) -> None:
    """SQLite: one ``dial_decisions`` row per lead of ``claim``, in one statement."""
    if not dials:
        return
    connection = session.connection()
    bodies, which = _distinct_inputs(dials)
    _insert_each(connection, claim, dials, [bodies[i] for i in which], rules_version, now)


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
