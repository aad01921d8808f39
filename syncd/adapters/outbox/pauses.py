"""SimZ's pauses: an API key or an agent refused, until a time that grows with each refusal.

They end by themselves when their time passes (docs/design.md#simz-answers),
unlike an operator's pause (:mod:`syncd.adapters.operator_pauses`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, bindparam, cast, delete, literal, null, select, union_all
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from syncd.adapters import operator_pauses
from syncd.adapters.orm import OperatorPause, Pause
from syncd.adapters.outbox.common import PAUSES
from syncd.domain.outcome import REASON_CHARS, bounded
from syncd.domain.outcome import SCOPE_AGENT as SCOPE_AGENT
from syncd.domain.outcome import SCOPE_API_KEY as SCOPE_API_KEY
from syncd.domain.outcome import agent_pause_key as agent_pause_key


@dataclass(frozen=True)
class ActivePause:
    scope: str
    key: str
    reason: str
    http_status: int | None
    failures: int
    paused_until: datetime


_OF_KEY_OR_AGENT = (PAUSES.c.scope == SCOPE_API_KEY) & (PAUSES.c.key == bindparam("key_pause")) | (
    PAUSES.c.scope == SCOPE_AGENT
) & (PAUSES.c.key == bindparam("agent_pause"))
_ACTIVE_PAUSES = select(
    PAUSES.c.scope,
    PAUSES.c.key,
    PAUSES.c.reason,
    PAUSES.c.http_status,
    PAUSES.c.failures,
    PAUSES.c.paused_until,
).where(_OF_KEY_OR_AGENT, PAUSES.c.paused_until > bindparam("now", type_=Pause.paused_until.type))


def pause_keys(credential: str, agent_id: str | None) -> dict[str, str | None]:
    """The parameters naming the pauses of ``credential`` and of ``agent_id`` under it."""
    agent_key = agent_pause_key(credential, agent_id) if agent_id is not None else None
    return {"key_pause": credential, "agent_pause": agent_key}


def active_pauses(
    session: Session, credential: str, agent_id: str | None, now: datetime
) -> list[ActivePause]:
    """Pauses of this API key (and of this agent under it) that have not yet expired."""
    rows = session.connection().execute(
        _ACTIVE_PAUSES, {**pause_keys(credential, agent_id), "now": now}
    )
    return [ActivePause(*row) for row in rows]


_OPERATOR: Any = OperatorPause.__table__
_NO_TEXT = cast(null(), String)
_NO_NUMBER = cast(null(), Integer)
#: Both kinds of pause that stop a claim, in one round trip: the operator's
#: (:mod:`syncd.adapters.operator_pauses`, of the sync or the agent) and SimZ's
#: (of the API key or the agent under it) that have not yet expired.
_CLAIM_PAUSES = union_all(
    select(
        literal("operator", String).label("kind"),
        _OPERATOR.c.scope,
        _OPERATOR.c.name.label("key"),
        _OPERATOR.c.reason,
        _OPERATOR.c.paused_by,
        _NO_NUMBER.label("http_status"),
        _NO_NUMBER.label("failures"),
        _OPERATOR.c.paused_at.label("at"),
    ).where(
        (
            (_OPERATOR.c.scope == operator_pauses.OPERATOR_SYNC)
            & (_OPERATOR.c.name == bindparam("op_sync"))
        )
        | (
            (_OPERATOR.c.scope == operator_pauses.OPERATOR_AGENT)
            & (_OPERATOR.c.name == bindparam("op_agent"))
        )
    ),
    select(
        literal("simz", String),
        PAUSES.c.scope,
        PAUSES.c.key,
        PAUSES.c.reason,
        _NO_TEXT,
        PAUSES.c.http_status,
        PAUSES.c.failures,
        PAUSES.c.paused_until,
    ).where(
        _OF_KEY_OR_AGENT, PAUSES.c.paused_until > bindparam("now", type_=Pause.paused_until.type)
    ),
)


@dataclass(frozen=True)
class ClaimPauses:
    """What stops a claim of one agent now: operator pauses and SimZ's active pauses."""

    operator: list[operator_pauses.Pause]
    simz: list[ActivePause]


def claim_pauses(
    session: Session, sync_name: str, credential: str, agent_id: str, now: datetime
) -> ClaimPauses:
    """:func:`syncd.adapters.operator_pauses.pauses_of` and :func:`active_pauses` at once,
    in one statement (one round trip per claim, not two)."""
    rows = session.connection().execute(
        _CLAIM_PAUSES,
        {
            "op_sync": sync_name,
            "op_agent": agent_id,
            **pause_keys(credential, agent_id),
            "now": now,
        },
    )
    found = ClaimPauses([], [])
    for kind, scope, key, reason, paused_by, http_status, failures, at in rows:
        if kind == "operator":
            found.operator.append(operator_pauses.Pause(scope, key, reason, paused_by, at))
        else:
            found.simz.append(ActivePause(scope, key, reason, http_status, failures, at))
    return found


def pause(
    session: Session,
    *,
    scope: str,
    key: str,
    reason: str,
    http_status: int | None,
    now: datetime,
    until: Callable[[int], datetime],
) -> ActivePause:
    """Open or extend a pause; ``until(failures)`` says when it ends (failures counts up).

    An upsert (``ON CONFLICT``), so two workers pausing the same key at once
    cannot fail on the unique constraint; at worst both count the same failure.
    """
    previous = session.scalar(select(Pause.failures).where(Pause.scope == scope, Pause.key == key))
    failures = (previous or 0) + 1
    ends = until(failures)
    values: dict[str, Any] = {
        "scope": scope,
        "key": key,
        "reason": bounded(reason, REASON_CHARS),
        "http_status": http_status,
        "failures": failures,
        "paused_until": ends,
        "created_at": now,
        "updated_at": now,
    }
    upsert = (
        postgresql_insert(Pause)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite_insert(Pause)
    )
    statement = upsert.values(**values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[Pause.scope, Pause.key],
            set_={
                name: statement.excluded[name]
                for name in ("reason", "http_status", "failures", "paused_until", "updated_at")
            },
        )
    )
    return ActivePause(scope, key, bounded(reason, REASON_CHARS), http_status, failures, ends)


_CLEAR_PAUSES = delete(PAUSES).where(_OF_KEY_OR_AGENT)
#: PostgreSQL: :func:`clear_pauses` as a CTE of an answer's statement (:func:`pause_keys`):
#: a row per pause ended.
CLEARED = _CLEAR_PAUSES.returning(PAUSES.c.id).cte("cleared")


def clear_pauses(session: Session, credential: str, agent_id: str) -> int:
    """A successful answer ends the key's and the agent's pauses."""
    result = session.connection().execute(_CLEAR_PAUSES, pause_keys(credential, agent_id))
    cleared: int = result.rowcount
    return cleared
