"""Delivery's SQL: claim a batch, record its outcome, pauses, start-up recovery.

Every function takes an open :class:`~sqlalchemy.orm.Session` inside the
caller's unit of work (``with session_factory.begin() as session``); none
commits. State changes are set-based (one ``UPDATE`` per target state, one
executemany ``INSERT`` of transitions) so a batch costs a handful of
statements, not one per lead (plus one ``INSERT ... SELECT`` of write-backs
when a sync writes the target state back, see
:mod:`syncd.adapters.writeback_store`). Every move passes
:func:`syncd.domain.states.check_transition` and is guarded in SQL by the
source state, so a lead changed behind our back makes the move fail loudly
instead of silently overwriting it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from syncd.adapters import writeback_store
from syncd.adapters.orm import Batch, Lead, LeadTransition, Pause
from syncd.domain.states import LeadState, check_transition

#: Core tables for the per-batch moves: plain UPDATE and executemany INSERT, without
#: the ORM's bulk bookkeeping (which cost more than the SQL itself).
_TRANSITIONS: Table = LeadTransition.__table__  # type: ignore[assignment]
_LEADS: Table = Lead.__table__  # type: ignore[assignment]
_BATCHES: Table = Batch.__table__  # type: ignore[assignment]
_PAUSES_TABLE: Table = Pause.__table__  # type: ignore[assignment]

SCOPE_API_KEY = "api_key"
SCOPE_AGENT = "agent"


class OutboxConflict(RuntimeError):
    """A lead was not in the state delivery expected: a bug, never papered over."""


@dataclass(frozen=True)
class ClaimedLead:
    id: int
    salesforce_id: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Claim:
    """Leads moved to ``sending`` under one open batch row."""

    batch_id: int
    sync_name: str
    agent_id: str
    leads: tuple[ClaimedLead, ...]


@dataclass(frozen=True)
class ActivePause:
    scope: str
    key: str
    reason: str
    http_status: int | None
    failures: int
    paused_until: datetime


def agent_pause_key(credential: str, agent_id: str) -> str:
    return f"{credential}/{agent_id}"


# --------------------------------------------------------------------------- reads


def queued_agents(session: Session, sync_name: str) -> list[str]:
    """Agents that have queued leads in this sync (due or not)."""
    rows = session.execute(
        select(Lead.agent_id)
        .where(
            Lead.sync_name == sync_name,
            Lead.state == LeadState.QUEUED.value,
            Lead.agent_id.is_not(None),
        )
        .distinct()
        .order_by(Lead.agent_id)
    )
    return [agent for (agent,) in rows if agent]


_PAUSES = (_PAUSES_TABLE.c.scope == SCOPE_API_KEY) & (
    _PAUSES_TABLE.c.key == bindparam("key_pause")
) | (_PAUSES_TABLE.c.scope == SCOPE_AGENT) & (_PAUSES_TABLE.c.key == bindparam("agent_pause"))
_ACTIVE_PAUSES = select(
    _PAUSES_TABLE.c.scope,
    _PAUSES_TABLE.c.key,
    _PAUSES_TABLE.c.reason,
    _PAUSES_TABLE.c.http_status,
    _PAUSES_TABLE.c.failures,
    _PAUSES_TABLE.c.paused_until,
).where(_PAUSES, _PAUSES_TABLE.c.paused_until > bindparam("now", type_=Pause.paused_until.type))


def _pause_keys(credential: str, agent_id: str | None) -> dict[str, str | None]:
    agent_key = agent_pause_key(credential, agent_id) if agent_id is not None else None
    return {"key_pause": credential, "agent_pause": agent_key}


def active_pauses(
    session: Session, credential: str, agent_id: str | None, now: datetime
) -> list[ActivePause]:
    """Pauses of this API key (and of this agent under it) that have not yet expired."""
    rows = session.connection().execute(
        _ACTIVE_PAUSES, {**_pause_keys(credential, agent_id), "now": now}
    )
    return [ActivePause(*row) for row in rows]


# --------------------------------------------------------------------------- claims


def _due_queries() -> tuple[Select[Any], Select[Any]]:
    """The due leads, oldest first, as two queries that each read ``ix_leads_claim`` in order.

    One query with ``next_attempt_at IS NULL OR next_attempt_at <= now`` cannot
    walk the index in id order: PostgreSQL then sorts every queued lead of the
    agent on each claim (60 ms at 100,000 queued, growing with the queue). Split,
    the never-tried leads come straight off the index in id order and stop at
    ``limit``; the retries due now are few and sorted on their own.
    """
    leads = _LEADS.c
    base = select(leads.id, leads.salesforce_id, leads.payload, leads.attempts).where(
        leads.sync_name == bindparam("sync_name"),
        leads.agent_id == bindparam("agent_id"),
        leads.state == LeadState.QUEUED.value,
    )
    # Ordering the never-tried ones by (next_attempt_at, id), all NULL, is ordering
    # by id in the index's own order: PostgreSQL does not infer that from IS NULL.
    fresh = base.where(leads.next_attempt_at.is_(None)).order_by(leads.next_attempt_at, leads.id)
    retry = base.where(
        leads.next_attempt_at <= bindparam("now", type_=leads.next_attempt_at.type)
    ).order_by(leads.id)
    # PostgreSQL: concurrent workers skip each other's rows; SQLite ignores it
    # (BEGIN IMMEDIATE already serialises writers).
    return (
        fresh.limit(bindparam("limit")).with_for_update(skip_locked=True),
        retry.limit(bindparam("limit")).with_for_update(skip_locked=True),
    )


_DUE = _due_queries()
#: A Core INSERT ... RETURNING: no ORM object, flush or identity map per batch.
_NEW_BATCH = insert(_BATCHES).returning(_BATCHES.c.id)


def _new_batch(
    session: Session,
    *,
    sync_name: str,
    agent_id: str,
    credential: str,
    lead_count: int,
    now: datetime,
    worker: str | None,
    posted: bool,
) -> int:
    batch_id: int = (
        session.connection()
        .execute(
            _NEW_BATCH,
            {
                "sync_name": sync_name,
                "agent_id": agent_id,
                "api_key_id": credential,
                "lead_count": lead_count,
                "created_at": now,
                "posted_at": now if posted else None,
                "worker": worker,
            },
        )
        .scalar_one()
    )
    return batch_id


def claim(
    session: Session,
    *,
    sync_name: str,
    agent_id: str,
    credential: str,
    limit: int,
    now: datetime,
    worker: str | None,
    posted: bool = True,
) -> Claim | None:
    """Move up to ``limit`` due leads to ``sending`` under a new in-flight batch row.

    ``posted=False`` claims a batch *ahead*, while another is in flight: it must
    not be sent before :func:`mark_posted` commits; until then recovery knows it
    was never sent and puts its leads back in the queue.
    """
    # The oldest ``limit`` of both; rows locked but not taken are free again at commit.
    connection = session.connection()
    params = {"sync_name": sync_name, "agent_id": agent_id, "now": now, "limit": limit}
    found = [row for query in _DUE for row in connection.execute(query, params)]
    rows = sorted(found, key=lambda row: row.id)[:limit]
    if not rows:
        return None
    leads = tuple(ClaimedLead(r.id, r.salesforce_id, r.payload, r.attempts) for r in rows)
    batch_id = _new_batch(
        session,
        sync_name=sync_name,
        agent_id=agent_id,
        credential=credential,
        lead_count=len(leads),
        now=now,
        worker=worker,
        posted=posted,
    )
    move(
        session,
        [lead.id for lead in leads],
        source=LeadState.QUEUED,
        target=LeadState.SENDING,
        reason="claimed into a batch",
        batch_id=batch_id,
        now=now,
        values={"batch_id": batch_id, "sent_at": now},
    )
    return Claim(batch_id, sync_name, agent_id, leads)


def rebatch(
    session: Session,
    parent: Claim,
    leads: Sequence[ClaimedLead],
    *,
    credential: str,
    now: datetime,
    worker: str | None,
) -> Claim:
    """A new in-flight batch row for part of a split batch; its leads stay ``sending``."""
    batch_id = _new_batch(
        session,
        sync_name=parent.sync_name,
        agent_id=parent.agent_id,
        credential=credential,
        lead_count=len(leads),
        now=now,
        worker=worker,
        posted=True,
    )
    ids = [lead.id for lead in leads]
    result = session.execute(
        update(Lead)
        .where(Lead.id.in_(ids), Lead.state == LeadState.SENDING.value)
        .values(batch_id=batch_id, sent_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != len(ids):  # type: ignore[attr-defined]
        raise OutboxConflict(f"{len(ids) - result.rowcount} leads left sending mid-split")  # type: ignore[attr-defined]
    return Claim(batch_id, parent.sync_name, parent.agent_id, tuple(leads))


_MARK_POSTED = (
    update(_BATCHES)
    .where(
        _BATCHES.c.id == bindparam("batch"),
        _BATCHES.c.outcome.is_(None),
        _BATCHES.c.posted_at.is_(None),
    )
    .values(posted_at=bindparam("now", type_=_BATCHES.c.posted_at.type))
)


def mark_posted(session: Session, batch_id: int, now: datetime) -> None:
    """Release a batch claimed ahead for sending; commit before its POST starts."""
    result = session.connection().execute(_MARK_POSTED, {"batch": batch_id, "now": now})
    if result.rowcount != 1:
        raise OutboxConflict(f"batch {batch_id} is not an open batch waiting to be posted")


_CLOSE_BATCH = (
    update(_BATCHES)
    .where(_BATCHES.c.id == bindparam("batch"))
    .values(
        {
            name: bindparam(f"v_{name}", type_=_BATCHES.c[name].type)
            for name in (
                "outcome",
                "finished_at",
                "http_status",
                "simz_batch_id",
                "accepted",
                "rejected",
                "duration_seconds",
                "response_excerpt",
            )
        }
    )
)


def close_batch(
    session: Session,
    batch_id: int,
    *,
    outcome: str,
    now: datetime,
    http_status: int | None = None,
    simz_batch_id: str | None = None,
    accepted: int | None = None,
    rejected: int | None = None,
    duration: float | None = None,
    excerpt: str | None = None,
) -> None:
    session.connection().execute(
        _CLOSE_BATCH,
        {
            "batch": batch_id,
            "v_outcome": outcome,
            "v_finished_at": now,
            "v_http_status": http_status,
            "v_simz_batch_id": simz_batch_id,
            "v_accepted": accepted,
            "v_rejected": rejected,
            "v_duration_seconds": duration,
            "v_response_excerpt": excerpt,
        },
    )


# --------------------------------------------------------------------------- state moves


def _transitions(
    session: Session,
    rows: Iterable[tuple[int, str | None]],
    *,
    target: LeadState,
    reason: str,
    batch_id: int | None,
    now: datetime,
) -> None:
    params = [
        {
            "lead_id": lead_id,
            "from_state": source,
            "to_state": target.value,
            "reason": reason[:500],
            "batch_id": batch_id,
            "at": now,
        }
        for lead_id, source in rows
    ]
    if params:
        session.execute(insert(_TRANSITIONS), params)


@functools.lru_cache(maxsize=64)
def _move_statement(value_names: tuple[str, ...], count_attempt: bool) -> Update:
    """``UPDATE leads ... WHERE id IN :ids AND state = :source``, built once per shape.

    Every value is a bound parameter (``v_<column>``) and the ids one expanding
    parameter: building the statement per batch with 100 literal ids cost more
    than the SQL itself (each id coerced and keyed for the statement cache).
    """
    values: dict[str, Any] = {
        "state": bindparam("target"),
        "updated_at": bindparam("now", type_=_LEADS.c.updated_at.type),
    }
    for name in value_names:
        values[name] = bindparam(f"v_{name}", type_=_LEADS.c[name].type)
    if count_attempt:
        values["attempts"] = _LEADS.c.attempts + 1
    return (
        update(_LEADS)
        .where(_LEADS.c.id.in_(bindparam("ids", expanding=True)))
        .where(_LEADS.c.state == bindparam("source"))
        .values(values)
    )


def _transitions_statement() -> Insert:
    """One audit row per moved lead, built by the database (``INSERT ... SELECT``)."""
    columns = _TRANSITIONS.c
    return insert(_TRANSITIONS).from_select(
        ["lead_id", "from_state", "to_state", "reason", "batch_id", "at"],
        select(
            _LEADS.c.id,
            bindparam("t_from", type_=columns.from_state.type),
            bindparam("t_to", type_=columns.to_state.type),
            bindparam("t_reason", type_=columns.reason.type),
            bindparam("t_batch", type_=columns.batch_id.type),
            bindparam("t_at", type_=columns.at.type),
        )
        .where(_LEADS.c.id.in_(bindparam("ids", expanding=True)))
        .order_by(_LEADS.c.id),
    )


_MOVE_TRANSITIONS = _transitions_statement()


def move(
    session: Session,
    lead_ids: Sequence[int],
    *,
    source: LeadState,
    target: LeadState,
    reason: str,
    batch_id: int | None,
    now: datetime,
    values: Mapping[str, Any] | None = None,
    count_attempt: bool = False,
) -> int:
    """Move leads from ``source`` to ``target`` in one UPDATE and record the transitions."""
    if not lead_ids:
        return 0
    check_transition(source, target)
    extra = dict(values or {})
    names = tuple(sorted(extra))
    ids = list(lead_ids)
    params: dict[str, Any] = {
        "ids": ids,
        "source": source.value,
        "target": target.value,
        "now": now,
    }
    params.update((f"v_{name}", extra[name]) for name in names)
    connection = session.connection()
    result = connection.execute(_move_statement(names, count_attempt), params)
    moved: int = result.rowcount
    if moved != len(ids):
        raise OutboxConflict(f"{len(ids) - moved} of {len(ids)} leads were not {source.value}")
    connection.execute(
        _MOVE_TRANSITIONS,
        {
            "ids": ids,
            "t_from": source.value,
            "t_to": target.value,
            "t_reason": reason[:500],
            "t_batch": batch_id,
            "t_at": now,
        },
    )
    writeback_store.enqueue_moved(session, ids, target.value, now)
    return moved


def reject(
    session: Session,
    rejections: Sequence[tuple[int, str | None, str | None]],
    *,
    reason: str,
    batch_id: int,
    now: datetime,
    simz_batch_id: str | None = None,
) -> int:
    """``sending`` -> ``rejected`` keeping each lead's own code and message (executemany)."""
    if not rejections:
        return 0
    check_transition(LeadState.SENDING, LeadState.REJECTED)
    statement = (
        update(Lead)
        .where(Lead.id == bindparam("lead_id"), Lead.state == LeadState.SENDING.value)
        .values(
            state=LeadState.REJECTED.value,
            error_code=bindparam("code"),
            error_message=bindparam("message"),
            simz_batch_id=simz_batch_id,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    params = [
        {"lead_id": lead_id, "code": (code or "")[:100] or None, "message": message}
        for lead_id, code, message in rejections
    ]
    session.connection().execute(statement, params)
    _transitions(
        session,
        ((lead_id, LeadState.SENDING.value) for lead_id, _c, _m in rejections),
        target=LeadState.REJECTED,
        reason=reason,
        batch_id=batch_id,
        now=now,
    )
    writeback_store.enqueue_moved(
        session, [lead_id for lead_id, _c, _m in rejections], LeadState.REJECTED.value, now
    )
    return len(rejections)


# --------------------------------------------------------------------------- pauses


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
        "reason": reason[:500],
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
    return ActivePause(scope, key, reason[:500], http_status, failures, ends)


_CLEAR_PAUSES = delete(_PAUSES_TABLE).where(_PAUSES)


def clear_pauses(session: Session, credential: str, agent_id: str) -> int:
    """A successful answer ends the key's and the agent's pauses."""
    result = session.connection().execute(_CLEAR_PAUSES, _pause_keys(credential, agent_id))
    cleared: int = result.rowcount
    return cleared


# --------------------------------------------------------------------------- recovery


def recover_in_flight(
    session: Session, now: datetime, reason: str, sync_name: str | None = None
) -> int:
    """Leads left ``sending`` (all, or those of ``sync_name``) after their process died.

    A lead whose batch row is open and was released for sending (``posted_at``)
    may have been posted: it becomes ``uncertain`` and the batch ``interrupted``.
    Two kinds of ``sending`` lead were certainly never sent and go back to
    ``queued``: one whose batch row is already closed belongs to the unsent half
    of a split batch (SimZ had answered that nothing was queued, and the half
    never got its own batch row); one whose open batch was claimed ahead and never
    released (no ``posted_at``), whose batch is closed ``abandoned``. Returns how
    many became ``uncertain``.
    """
    leads_filter: list[ColumnElement[bool]] = [Lead.state == LeadState.SENDING.value]
    batches_filter: list[ColumnElement[bool]] = [Batch.outcome.is_(None)]
    if sync_name is not None:
        leads_filter.append(Lead.sync_name == sync_name)
        batches_filter.append(Batch.sync_name == sync_name)
    found = session.execute(
        select(Lead.id, Lead.batch_id, Batch.outcome, Batch.posted_at)
        .outerjoin(Batch, Batch.id == Lead.batch_id)
        .where(*leads_filter)
    ).all()
    split = [r for r in found if r.outcome is not None]
    ahead = [r for r in found if r.outcome is None and r.batch_id is not None and not r.posted_at]
    for group, why in (
        (split, "part of a split batch that was never sent (SimZ had queued nothing)"),
        (ahead, "claimed ahead and never sent (the process stopped first)"),
    ):
        for batch_id in sorted({r.batch_id for r in group}):
            move(
                session,
                [r.id for r in group if r.batch_id == batch_id],
                source=LeadState.SENDING,
                target=LeadState.QUEUED,
                reason=why,
                batch_id=batch_id,
                now=now,
                values={"batch_id": None},
            )
    if ahead:
        session.execute(
            update(Batch)
            .where(Batch.id.in_(sorted({r.batch_id for r in ahead})))
            .values(outcome="abandoned", finished_at=now)
            .execution_options(synchronize_session=False)
        )
    rows = [r for r in found if r.outcome is None and (r.batch_id is None or r.posted_at)]
    check_transition(LeadState.SENDING, LeadState.UNCERTAIN)
    for start in range(0, len(rows), 5000):
        chunk = [r.id for r in rows[start : start + 5000]]
        session.execute(
            update(Lead)
            .where(Lead.id.in_(chunk))
            .values(state=LeadState.UNCERTAIN.value, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        writeback_store.enqueue_moved(session, chunk, LeadState.UNCERTAIN.value, now)
    if rows:
        params = [
            {
                "lead_id": r.id,
                "from_state": LeadState.SENDING.value,
                "to_state": LeadState.UNCERTAIN.value,
                "reason": reason,
                "batch_id": r.batch_id,
                "at": now,
            }
            for r in rows
        ]
        session.execute(insert(LeadTransition), params)
    session.execute(
        update(Batch)
        .where(*batches_filter)
        .values(outcome="interrupted", finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return len(rows)


def requeue_uncertain(session: Session, sync_name: str, now: datetime, reason: str) -> int:
    """``uncertain`` -> ``queued`` for a sync (the opt-in ``resend_uncertain``)."""
    ids = list(
        session.scalars(
            select(Lead.id).where(
                Lead.sync_name == sync_name, Lead.state == LeadState.UNCERTAIN.value
            )
        )
    )
    return move(
        session,
        ids,
        source=LeadState.UNCERTAIN,
        target=LeadState.QUEUED,
        reason=reason,
        batch_id=None,
        now=now,
        values={"next_attempt_at": None},
    )


def count_in_flight(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(Lead).where(Lead.state == LeadState.SENDING.value)
        )
        or 0
    )
