"""Moves between states: set-based, guarded by the state the caller read, audited."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Insert,
    Row,
    Select,
    String,
    Update,
    any_,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.orm import Session

from syncd.adapters import writeback_store
from syncd.adapters.ledger.common import (
    LEADS,
    TRANSITIONS,
    LedgerConflict,
    chunks,
    trail,
)
from syncd.adapters.number_param import as_param, id_among, id_array
from syncd.adapters.orm import Lead
from syncd.domain.outcome import ERROR_CODE_CHARS, ERROR_MESSAGE_CHARS, REASON_CHARS, bounded
from syncd.domain.states import LeadState, check_transition

# --------------------------------------------------------------------------- moves


def _move_values(value_names: tuple[str, ...], count_attempt: bool) -> dict[str, Any]:
    """What a move sets: the state, ``updated_at``, and each ``v_<column>`` bound."""
    values: dict[str, Any] = {
        "state": bindparam("target"),
        "updated_at": bindparam("now", type_=LEADS.c.updated_at.type),
    }
    for name in value_names:
        values[name] = bindparam(f"v_{name}", type_=LEADS.c[name].type)
    if count_attempt:
        values["attempts"] = LEADS.c.attempts + 1
    return values


@functools.lru_cache(maxsize=64)
def _move_statement(value_names: tuple[str, ...], count_attempt: bool) -> Update:
    """SQLite: ``UPDATE leads ... WHERE id IN (the ids) AND state = :source``, built once
    per shape.

    Every value is a bound parameter (``v_<column>``) and the ids one JSON text
    (``ids_json``, :func:`syncd.adapters.number_param.id_among`): building the
    statement per batch with 100 literal ids cost more than the SQL itself (each id
    coerced and keyed for the statement cache), and an expanding parameter is still
    rendered again, a bind per id, on every execution.
    """
    return (
        update(LEADS)
        .where(id_among(LEADS.c.id, "sqlite", "ids_json"))
        .where(LEADS.c.state == bindparam("source"))
        .values(_move_values(value_names, count_attempt))
    )


@dataclass(frozen=True, eq=False)
class Along:
    """Writes of the same unit of work as a move, made by the move's own statement on
    PostgreSQL (:func:`move_along`): one round trip for all of them.

    ``ctes`` are data-modifying CTEs (``INSERT``/``UPDATE``/``DELETE ... RETURNING``),
    run whether or not anything refers to them; ``columns`` what the statement returns
    of them (labelled), besides ``moved``, the count of leads moved; ``batch``, when
    set, the batch the moved leads join, an expression over ``ctes`` (a batch row the
    same statement inserts): their ``batch_id`` and their audit rows name it.

    Every part of one statement sees the database as it was when the statement
    started, and none sees another's writes except through ``RETURNING``: the parts
    must write different rows. Made once (module level): the statement is built once
    per ``Along`` and shape of the move, and cached by its identity.
    """

    ctes: tuple[CTE, ...] = ()
    columns: tuple[ColumnElement[Any], ...] = ()
    batch: ColumnElement[Any] | None = None


#: A move with nothing along.
_ALONE = Along()


@functools.lru_cache(maxsize=64)
def _pg_move_statement(
    value_names: tuple[str, ...], count_attempt: bool, along: Along, source: LeadState
) -> Select[Any]:
    """PostgreSQL: the move, its audit rows and ``along`` in one statement, one round trip.

    ``WITH moved AS (UPDATE leads ... RETURNING id), audit AS (INSERT INTO
    lead_transitions SELECT ... FROM moved RETURNING lead_id), <along's CTEs>
    SELECT count of audit AS moved, <along's columns>``: one row. The ids go as one
    JSON text (``ids_json``), compiled once whatever their count.

    The source state is written in the statement, not bound: with a bound state
    the server planned the statement again on every execution (its plan for a
    rare state, ``sending``, read ``ix_leads_state`` and looked cheaper than the
    generic plan), 0.2 ms of its CPU a batch; with the state in the text, the
    plan is made once per connection.
    """
    values = _move_values(value_names, count_attempt)
    batch: ColumnElement[Any] = bindparam("t_batch", type_=TRANSITIONS.c.batch_id.type)
    if along.batch is not None:
        assert "batch_id" not in value_names, "the batch comes from along"
        values["batch_id"] = batch = along.batch
    moved = (
        update(LEADS)
        .where(LEADS.c.id == any_(id_array(bindparam("ids_json", type_=String))))
        .where(LEADS.c.state == literal_column(f"'{source.value}'", String))
        .values(values)
        .returning(LEADS.c.id)
        .cte("moved")
    )
    columns = TRANSITIONS.c
    audit = (
        insert(TRANSITIONS)
        .from_select(
            ["lead_id", "from_state", "to_state", "reason", "batch_id", "at"],
            select(
                moved.c.id,
                bindparam("t_from", type_=columns.from_state.type),
                bindparam("t_to", type_=columns.to_state.type),
                bindparam("t_reason", type_=columns.reason.type),
                batch,
                bindparam("t_at", type_=columns.at.type),
            ).order_by(moved.c.id),
        )
        .returning(TRANSITIONS.c.lead_id)
        .cte("audit")
    )
    counted = select(func.count()).select_from(audit).scalar_subquery().label("moved")
    statement = select(counted, *along.columns)
    return statement.add_cte(*along.ctes) if along.ctes else statement


def _transitions_statement(batch: Any, selected: ColumnElement[bool]) -> Insert:
    """One audit row per moved lead, built by the database (``INSERT ... SELECT``).

    ``batch`` is what each row names as its batch: a bound parameter, or the
    lead's own ``batch_id`` column; ``selected`` which leads.
    """
    columns = TRANSITIONS.c
    return insert(TRANSITIONS).from_select(
        ["lead_id", "from_state", "to_state", "reason", "batch_id", "at"],
        select(
            LEADS.c.id,
            bindparam("t_from", type_=columns.from_state.type),
            bindparam("t_to", type_=columns.to_state.type),
            bindparam("t_reason", type_=columns.reason.type),
            batch,
            bindparam("t_at", type_=columns.at.type),
        )
        .where(selected)
        .order_by(LEADS.c.id),
    )


#: SQLite: the audit rows of :func:`move`, the ids as the UPDATE's (``ids_json``).
_MOVE_TRANSITIONS = _transitions_statement(
    bindparam("t_batch", type_=TRANSITIONS.c.batch_id.type),
    id_among(LEADS.c.id, "sqlite", "ids_json"),
)
#: For moves of leads where they are: each row names the lead's current batch.
_WHERE_TRANSITIONS = _transitions_statement(
    LEADS.c.batch_id, LEADS.c.id.in_(bindparam("ids", expanding=True))
)


def move(
    session: Session,
    lead_ids: Sequence[int],
    *,
    source: LeadState | str,
    target: LeadState | str,
    reason: str,
    now: datetime,
    batch_id: int | None = None,
    values: Mapping[str, Any] | None = None,
    count_attempt: bool = False,
) -> int:
    """Move every one of ``lead_ids`` from ``source`` to ``target``, or raise.

    One UPDATE guarded by ``source`` and one ``INSERT ... SELECT`` of the audit
    rows (on PostgreSQL one statement, the UPDATE in a ``WITH``). A lead that
    was not in ``source`` raises :class:`LedgerConflict` (the caller read or
    locked them: it is a bug, and the transaction rolls back).
    """
    if not lead_ids:
        return 0
    step = _Step.of(lead_ids, source, target, reason, now, batch_id, values)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        statement = _pg_move_statement(step.names, count_attempt, _ALONE, step.start)
        moved: int = connection.execute(statement, step.params).scalar_one()
    else:
        moved = connection.execute(_move_statement(step.names, count_attempt), step.params).rowcount
        if moved == len(step.ids):
            connection.execute(_MOVE_TRANSITIONS, step.params)
    step.check(session, moved)
    return moved


def move_along(
    session: Session,
    lead_ids: Sequence[int],
    along: Along,
    along_params: Mapping[str, Any],
    *,
    source: LeadState | str,
    target: LeadState | str,
    reason: str,
    now: datetime,
    batch_id: int | None = None,
    values: Mapping[str, Any] | None = None,
    count_attempt: bool = False,
) -> Row[Any]:
    """PostgreSQL: :func:`move` and the writes ``along`` it, in one statement.

    Returns the statement's row: ``moved`` and ``along.columns``. A lead that was not
    in ``source`` raises :class:`LedgerConflict` as :func:`move` does; the caller's
    transaction then rolls back every write of the statement. ``along_params`` bind
    the parameters of ``along``'s parts (names of their own: ``ids_json``,
    ``source``, ``target``, ``now``, ``v_*`` and ``t_*`` are the move's). The audit
    rows name ``batch_id``, or the batch of ``along`` when it has one.
    """
    step = _Step.of(lead_ids, source, target, reason, now, batch_id, values)
    assert not step.params.keys() & along_params.keys(), "a parameter of the move's name"
    statement = _pg_move_statement(step.names, count_attempt, along, step.start)
    row = session.connection().execute(statement, {**along_params, **step.params}).one()
    step.check(session, row.moved)
    return row


@dataclass(frozen=True)
class _Step:
    """One move's checked transition and bound parameters (the UPDATE's and the audit's)."""

    ids: list[int]
    start: LeadState
    goal: LeadState
    names: tuple[str, ...]
    params: dict[str, Any]
    now: datetime

    @classmethod
    def of(
        cls,
        lead_ids: Sequence[int],
        source: LeadState | str,
        target: LeadState | str,
        reason: str,
        now: datetime,
        batch_id: int | None,
        values: Mapping[str, Any] | None,
    ) -> _Step:
        goal = check_transition(source, target)
        start = LeadState(source)
        extra = dict(values or {})
        names = tuple(sorted(extra))
        ids = list(lead_ids)
        params: dict[str, Any] = {
            "ids_json": as_param(ids),
            "source": start.value,
            "target": goal.value,
            "now": now,
            "t_from": start.value,
            "t_to": goal.value,
            "t_reason": bounded(reason, REASON_CHARS),
            "t_batch": batch_id,
            "t_at": now,
        }
        params.update((f"v_{name}", extra[name]) for name in names)
        return cls(ids, start, goal, names, params, now)

    def check(self, session: Session, moved: int) -> None:
        """Raise unless every lead moved; then queue the write-backs of the new state."""
        if moved != len(self.ids):
            raise LedgerConflict(
                f"{len(self.ids) - moved} of {len(self.ids)} leads were not {self.start.value}"
            )
        writeback_store.enqueue_moved(session, self.ids, self.goal.value, self.now)


def move_where(
    session: Session,
    clauses: Sequence[ColumnElement[bool]],
    *,
    source: LeadState | str,
    target: LeadState | str,
    reason: str,
    now: datetime,
    values: Mapping[str, Any] | None = None,
) -> dict[int, str]:
    """Move the leads matching ``clauses`` that are in ``source`` now; id -> Salesforce Id.

    For moves that take whatever is there (operator commands, the guard): the
    UPDATE repeats the state, RETURNING says exactly which leads moved, and only
    those get an audit row (``INSERT ... SELECT``, naming each lead's batch) and
    a write-back. ``values`` may hold SQL expressions (say, ``coalesce``).
    """
    goal = check_transition(source, target)
    start = LeadState(source)
    stamps = _first_queued(goal, now)
    result = session.execute(
        update(Lead)
        .where(*clauses, Lead.state == start.value)
        .values({"state": goal.value, "updated_at": now, **stamps, **(values or {})})
        .returning(Lead.id, Lead.salesforce_id)
        .execution_options(synchronize_session=False)
    )
    moved = dict(sorted((lead_id, sf_id) for lead_id, sf_id in result))
    ids = list(moved)
    for chunk in chunks(ids):
        session.connection().execute(
            _WHERE_TRANSITIONS,
            {
                "ids": list(chunk),
                "t_from": start.value,
                "t_to": goal.value,
                "t_reason": bounded(reason, REASON_CHARS),
                "t_at": now,
            },
        )
    if ids:
        writeback_store.enqueue_moved(session, ids, goal.value, now)
    return moved


def _first_queued(goal: LeadState, now: datetime) -> dict[str, Any]:
    """``queued_at`` for a move to ``queued`` (speed to lead): set once, the first time."""
    if goal is not LeadState.QUEUED:
        return {}
    return {"queued_at": func.coalesce(Lead.queued_at, literal(now, LEADS.c.queued_at.type))}


def move_by_salesforce_id(
    session: Session,
    sync_name: str,
    salesforce_ids: Sequence[str],
    *,
    source: LeadState | str,
    target: LeadState | str,
    reason: str,
    now: datetime,
    values: Mapping[str, Any] | None = None,
) -> list[int]:
    """:func:`move_where` for the named records of one sync (in chunks); the ids moved."""
    moved: list[int] = []
    for chunk in chunks(list(salesforce_ids)):
        moved += move_where(
            session,
            [Lead.sync_name == sync_name, Lead.salesforce_id.in_(list(chunk))],
            source=source,
            target=target,
            reason=reason,
            now=now,
            values=values,
        )
    return sorted(moved)


@dataclass(frozen=True)
class Step:
    """One lead's own move (its own reason and values), for :func:`move_each`."""

    lead_id: int
    source: str
    target: str
    reason: str
    values: Mapping[str, Any]


def move_each(
    session: Session,
    steps: Sequence[Step],
    now: datetime,
    *,
    batch_id: int | None = None,
    reset_attempts: bool = False,
) -> None:
    """Moves whose leads each carry their own reason and values, or raise.

    One executemany UPDATE per shape (the same value columns), guarded by each
    lead's source state; one executemany INSERT of the audit rows. A lead not in
    its source state raises :class:`LedgerConflict`. ``reset_attempts`` starts
    the attempts of leads moved to ``queued`` afresh (a re-check sends again).
    """
    if not steps:
        return
    for step in steps:
        if step.source != step.target:  # a lead that stays gets new values and a note
            check_transition(step.source, step.target)
    shapes: dict[tuple[tuple[str, ...], bool, bool], list[Step]] = {}
    for step in steps:
        to_queue = step.target == LeadState.QUEUED.value
        key = (tuple(sorted(step.values)), reset_attempts and to_queue, to_queue)
        shapes.setdefault(key, []).append(step)
    connection = session.connection()
    for (names, queued, to_queue), group in shapes.items():
        result = connection.execute(
            _each_statement(names, queued, to_queue),
            [
                {
                    "b_id": s.lead_id,
                    "b_source": s.source,
                    "b_target": s.target,
                    "b_now": now,
                    **({"b_queued": now} if to_queue else {}),
                    **{f"v_{name}": s.values[name] for name in names},
                }
                for s in group
            ],
        )
        if result.rowcount != len(group):
            raise LedgerConflict(f"{len(group) - result.rowcount} leads left their state")
    trail(session, ((s.lead_id, s.source, s.target, s.reason) for s in steps), now, batch_id)
    writeback_store.enqueue_by_state(session, [(s.lead_id, s.target) for s in steps], now)


@functools.lru_cache(maxsize=64)
def _each_statement(names: tuple[str, ...], reset_attempts: bool, to_queue: bool) -> Update:
    values: dict[str, Any] = {
        "state": bindparam("b_target"),
        "updated_at": bindparam("b_now", type_=LEADS.c.updated_at.type),
    }
    for name in names:
        values[name] = bindparam(f"v_{name}", type_=LEADS.c[name].type)
    if reset_attempts:
        values.update(attempts=0, next_attempt_at=None, error_code=None, error_message=None)
    if to_queue:  # speed to lead: the first time the lead is queued, kept from then on
        values["queued_at"] = func.coalesce(
            LEADS.c.queued_at, bindparam("b_queued", type_=LEADS.c.queued_at.type)
        )
    return (
        update(LEADS)
        .where(LEADS.c.id == bindparam("b_id"), LEADS.c.state == bindparam("b_source"))
        .values(values)
    )


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
    move_each(
        session,
        [
            Step(
                lead_id,
                LeadState.SENDING.value,
                LeadState.REJECTED.value,
                reason,
                {
                    "error_code": bounded(code or None, ERROR_CODE_CHARS),
                    "error_message": bounded(message, ERROR_MESSAGE_CHARS),
                    "simz_batch_id": simz_batch_id,
                },
            )
            for lead_id, code, message in rejections
        ],
        now,
        batch_id=batch_id,
    )
    return len(rejections)


def note(session: Session, notes: Sequence[tuple[int, str, str]], now: datetime) -> None:
    """Audit notes ``(lead_id, state, reason)`` on leads that keep their state."""
    trail(session, ((lead_id, state, state, reason) for lead_id, state, reason in notes), now)


#: Leads per UPDATE when marking many leads uncertain (bounded statement size).
_RECOVERY_CHUNK = 5000


def mark_uncertain(session: Session, lead_ids: Sequence[int], reason: str, now: datetime) -> None:
    """``sending`` leads that may have been posted become ``uncertain`` (recovery).

    :func:`move_where` per chunk: a lead whose answer was recorded meanwhile (it
    left ``sending``) keeps that answer; each moved lead's audit row names its batch.
    """
    for start in range(0, len(lead_ids), _RECOVERY_CHUNK):
        move_where(
            session,
            [Lead.id.in_(list(lead_ids[start : start + _RECOVERY_CHUNK]))],
            source=LeadState.SENDING,
            target=LeadState.UNCERTAIN,
            reason=reason,
            now=now,
        )
