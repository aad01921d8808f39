"""The record of every dial decision: one ``dial_decisions`` row per lead sent, and its rules.

In the claim's transaction, each lead the send gate moves to ``sending`` gets
one row with the inputs every rule read (:func:`syncd.domain.dial_record.dial_inputs`)
and the version of the sync's effective rules; the rules themselves are kept
once per version in ``rules_versions``, written when a delivery starts
(docs/safety.md#the-record-of-every-dial-decision).

A claim writes its rows with one statement: the varying values of every row go
as one JSON array, which the database unpacks (``json_each`` on SQLite,
``json_array_elements`` on PostgreSQL) in an ``INSERT ... SELECT``, and equal
``inputs`` (the gate shares them) are serialised once. An executemany of the
same rows took 2 to 5 ms of CPU per claim of 100 on SQLite (eight parameters
bound per row), about a third of the whole claim; this takes about 1 ms
(docs/performance.md#the-send-gates-checks-2026-12-07).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, TextClause, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from syncd.adapters.orm import DialDecision, RulesVersion, UTCDateTime
from syncd.adapters.outbox.common import Claim

DIAL_DECISIONS: Table = DialDecision.__table__  # type: ignore[assignment]
RULES_VERSIONS: Table = RulesVersion.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Dial:
    """One lead the gate let through, with its dial decision's ``inputs``."""

    lead_id: int
    phone_e164: str | None
    inputs: Mapping[str, Any]


_COLUMNS = "lead_id, sync_name, agent_id, phone_e164, batch_id, decided_at, rules_version, inputs"
#: One row per element ``[lead_id, phone_e164, inputs]`` of the JSON array ``rows``.
_INSERT_SQL = {
    "sqlite": (
        f"INSERT INTO dial_decisions ({_COLUMNS}) "
        "SELECT json_extract(value, '$[0]'), :sync_name, :agent_id, "
        "json_extract(value, '$[1]'), :batch_id, :now, :version, json_extract(value, '$[2]') "
        "FROM json_each(:rows)"
    ),
    "postgresql": (
        f"INSERT INTO dial_decisions ({_COLUMNS}) "
        "SELECT CAST(r.value ->> 0 AS BIGINT), :sync_name, :agent_id, "
        "r.value ->> 1, :batch_id, :now, :version, r.value -> 2 "
        "FROM json_array_elements(CAST(:rows AS JSON)) AS r"
    ),
}


_INSERT: dict[str, TextClause] = {
    dialect: text(sql).bindparams(bindparam("now", type_=UTCDateTime()))
    for dialect, sql in _INSERT_SQL.items()
}


def record_dials(
    session: Session, claim: Claim, dials: Sequence[Dial], rules_version: str, now: datetime
) -> None:
    """One ``dial_decisions`` row per lead of ``claim``, in one ``INSERT ... SELECT``."""
    if not dials:
        return
    connection = session.connection()
    connection.execute(
        _INSERT[connection.dialect.name],
        {
            "rows": _rows_json(dials),
            "sync_name": claim.sync_name,
            "agent_id": claim.agent_id,
            "batch_id": claim.batch_id,
            "now": now,
            "version": rules_version,
        },
    )


def _rows_json(dials: Sequence[Dial]) -> str:
    """The JSON array ``[[lead_id, phone_e164, inputs], ...]``; each distinct ``inputs``
    value (the gate shares equal ones) is serialised once."""
    texts: dict[int, str] = {}
    parts: list[str] = []
    for dial in dials:
        body = texts.get(id(dial.inputs))
        if body is None:
            body = texts[id(dial.inputs)] = _json(dial.inputs)
        parts.append(f"[{int(dial.lead_id)},{_json(dial.phone_e164)},{body}]")
    return f"[{','.join(parts)}]"


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
