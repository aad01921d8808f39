"""Delivery's SQL: claim a batch, record its outcome, pauses, start-up recovery.

Every function takes an open :class:`~sqlalchemy.orm.Session` inside the
caller's unit of work (``with session_factory.begin() as session``); none
commits. Every state change goes through :mod:`syncd.adapters.ledger`:
set-based (one ``UPDATE`` per target state and one ``INSERT ... SELECT`` of
transitions), so a batch costs a handful of statements, not one per lead;
checked by :func:`syncd.domain.states.check_transition` and guarded in SQL by
the source state, so a lead changed behind our back makes the move fail loudly
instead of silently overwriting it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from syncd.adapters import ledger
from syncd.adapters.number_locks import try_lock_numbers
from syncd.adapters.orm import Batch, Lead, LeadTransition, Pause
from syncd.domain.calling_hours import WAITING_FOR
from syncd.domain.gate import Action, Candidate, GateRules, Rival, Verdict, judge
from syncd.domain.outcome import (
    REASON_CHARS,
    Move,
    OutcomePlan,
    bounded,
)
from syncd.domain.outcome import SCOPE_AGENT as SCOPE_AGENT
from syncd.domain.outcome import SCOPE_API_KEY as SCOPE_API_KEY
from syncd.domain.outcome import agent_pause_key as agent_pause_key
from syncd.domain.states import LeadState
from syncd.logs import get_logger
from syncd.metrics import GATE_SKIPPED

#: Core tables for the per-batch moves: plain UPDATE and executemany INSERT, without
#: the ORM's bulk bookkeeping (which cost more than the SQL itself).
_TRANSITIONS: Table = LeadTransition.__table__  # type: ignore[assignment]
_LEADS: Table = Lead.__table__  # type: ignore[assignment]
_BATCHES: Table = Batch.__table__  # type: ignore[assignment]
_PAUSES_TABLE: Table = Pause.__table__  # type: ignore[assignment]

log = get_logger(__name__)

#: The gate's rules when a caller names none: DoNotCall only.
_DEFAULT_RULES = GateRules()
#: Claim rounds at most: each round that finds nothing to send has skipped or deferred
#: at least one lead, so the next one looks at others.
_GATE_ROUNDS = 20


#: A lead was not in the state delivery expected: a bug, never papered over.
OutboxConflict = ledger.LedgerConflict


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
    base = select(
        leads.id,
        leads.salesforce_id,
        leads.payload,
        leads.attempts,
        leads.phone_e164,
        leads.do_not_call,
        leads.time_zone,
        leads.deleted_at,
        leads.discarded_at,
    ).where(
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


#: Given (lead id, phone, record's zone field) of due leads: the ids whose calling hours
#: are closed now, each with the time its window opens (see :func:`claim`).
ClosedHours = Callable[[Sequence[tuple[int, str | None, str | None]]], Mapping[int, datetime]]


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
    rules: GateRules = _DEFAULT_RULES,
    closed_hours: ClosedHours | None = None,
) -> Claim | None:
    """Move up to ``limit`` due leads that pass the send gate to ``sending`` under a new batch.

    The gate (:func:`syncd.domain.gate.judge`) runs in this same transaction: a
    lead it skips becomes ``skipped`` with the reason in its note and audit trail,
    one it defers stays queued until the time it names. On PostgreSQL a lead whose
    (agent, number) lock another transaction holds is left queued for the next
    claim (see :mod:`syncd.adapters.number_locks`).

    ``posted=False`` claims a batch *ahead*, while another is in flight: it must
    not be sent before :func:`mark_posted` commits; until then recovery knows it
    was never sent and puts its leads back in the queue.

    ``closed_hours`` (a sync with calling hours) is asked about every due lead
    inside this transaction, before the gate; the leads it names are not claimed
    but deferred (:func:`defer_to_calling_hours`) and the claim looks again for others.
    """
    leads: tuple[ClaimedLead, ...] = ()
    for _round in range(_GATE_ROUNDS):
        sendable, progressed = _gate_round(
            session, sync_name, agent_id, limit, now, rules, closed_hours
        )
        if sendable or not progressed:
            leads = sendable
            break
    if not leads:
        return None
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
        values={"batch_id": batch_id, "sent_at": now, "waiting_for": None},
    )
    return Claim(batch_id, sync_name, agent_id, leads)


def _gate_round(
    session: Session,
    sync_name: str,
    agent_id: str,
    limit: int,
    now: datetime,
    rules: GateRules,
    closed_hours: ClosedHours | None = None,
) -> tuple[tuple[ClaimedLead, ...], bool]:
    """The due leads that pass the gate now, and whether any was skipped or deferred.

    Calling hours come first: a lead outside its window is deferred to the opening
    (no attempt, no state change) and the gate judges the others.
    """
    params = {"sync_name": sync_name, "agent_id": agent_id, "now": now, "limit": limit}
    rows = _due(session, params, limit)
    if not rows:
        return (), False
    closed: Mapping[int, datetime] = {}
    if closed_hours is not None:
        closed = closed_hours([(row.id, row.phone_e164, row.time_zone) for row in rows])
        defer_to_calling_hours(session, closed, now)
        rows = [row for row in rows if row.id not in closed]
    if rules.checks_numbers:
        pairs = {(agent_id, row.phone_e164) for row in rows if row.phone_e164}
        held = try_lock_numbers(session, pairs)
        rows = [r for r in rows if not r.phone_e164 or (agent_id, r.phone_e164) in held]
    candidates = [
        Candidate(r.id, agent_id, r.phone_e164, bool(r.do_not_call), _stopped(r)) for r in rows
    ]
    rivals: list[Rival] = []
    if rules.checks_numbers:
        phones = sorted({c.phone_e164 for c in candidates if c.phone_e164})
        rivals = _rivals(session, agent_id, phones, now - rules.duplicate_window)
    verdicts = judge(candidates, rivals, rules, now)
    skips = [(r.id, v) for r, v in zip(rows, verdicts, strict=True) if v.action is Action.SKIP]
    waits = [(r.id, v) for r, v in zip(rows, verdicts, strict=True) if v.action is Action.WAIT]
    _skip_at_gate(session, skips, now)
    _defer_at_gate(session, waits, now)
    if skips or waits:
        _count_gate(sync_name, [v for _id, v in skips + waits])
    sendable = tuple(
        ClaimedLead(r.id, r.salesforce_id, r.payload, r.attempts)
        for r, v in zip(rows, verdicts, strict=True)
        if v.action is Action.SEND
    )
    progressed = (
        bool(skips)
        or any(v.until is not None and v.until > now for _i, v in waits)
        or any(opens > now for opens in closed.values())
    )
    return sendable, progressed


def _stopped(row: Any) -> str | None:
    """Why a decision that sticks stops a due lead: its record deleted, or discarded."""
    if row.deleted_at is not None:
        return ledger.DELETED_NOTE
    if row.discarded_at is not None:
        return "discarded by an operator"
    return None


_RIVAL_STATES = [LeadState.QUEUED.value, LeadState.SENDING.value, LeadState.UNCERTAIN.value]
#: Other leads of the agent holding one of the numbers: queued or in flight whatever
#: their age, accepted within the window; read through ix_leads_phone (agent, phone).
_RIVALS = select(_LEADS.c.id, _LEADS.c.phone_e164, _LEADS.c.state, _LEADS.c.sent_at).where(
    _LEADS.c.agent_id == bindparam("agent_id"),
    _LEADS.c.phone_e164.in_(bindparam("phones", expanding=True)),
    or_(
        _LEADS.c.state.in_(_RIVAL_STATES),
        and_(
            _LEADS.c.state == LeadState.ACCEPTED.value,
            or_(
                _LEADS.c.sent_at.is_(None),
                _LEADS.c.sent_at >= bindparam("since", type_=_LEADS.c.sent_at.type),
            ),
        ),
    ),
)


def _rivals(session: Session, agent_id: str, phones: Sequence[str], since: datetime) -> list[Rival]:
    if not phones:
        return []
    rows = session.connection().execute(
        _RIVALS, {"agent_id": agent_id, "phones": list(phones), "since": since}
    )
    return [Rival(r.id, r.phone_e164, LeadState(r.state), r.sent_at) for r in rows]


_GATE_WAIT = (
    update(_LEADS)
    .where(_LEADS.c.id == bindparam("b_id"), _LEADS.c.state == LeadState.QUEUED.value)
    .values(
        next_attempt_at=bindparam("b_until", type_=_LEADS.c.next_attempt_at.type),
        updated_at=bindparam("b_now", type_=_LEADS.c.updated_at.type),
    )
)


def _due(session: Session, params: Mapping[str, Any], limit: int) -> list[Any]:
    """The oldest ``limit`` due leads; rows locked but not taken are free again at commit."""
    connection = session.connection()
    found = [row for query in _DUE for row in connection.execute(query, params)]
    return sorted(found, key=lambda row: row.id)[:limit]


_DEFER = (
    update(_LEADS)
    .where(
        _LEADS.c.id == bindparam("lead"),
        _LEADS.c.state == LeadState.QUEUED.value,
    )
    .values(
        next_attempt_at=bindparam("opens", type_=_LEADS.c.next_attempt_at.type),
        waiting_for=WAITING_FOR,
        updated_at=bindparam("now", type_=_LEADS.c.updated_at.type),
    )
)


def _skip_at_gate(session: Session, skips: Sequence[tuple[int, Verdict]], now: datetime) -> None:
    """``queued`` -> ``skipped`` with each lead's own reason, through the ledger."""
    ledger.move_each(
        session,
        [
            ledger.Step(
                lead_id,
                LeadState.QUEUED.value,
                LeadState.SKIPPED.value,
                _why(verdict),
                {"note": verdict.note, "next_attempt_at": None},
            )
            for lead_id, verdict in skips
        ],
        now,
    )


def _defer_at_gate(session: Session, waits: Sequence[tuple[int, Verdict]], now: datetime) -> None:
    """Leave deferred leads queued, due again at the time their verdict names."""
    if not waits:
        return
    session.connection().execute(
        _GATE_WAIT,
        [{"b_id": lead_id, "b_until": verdict.until, "b_now": now} for lead_id, verdict in waits],
    )
    queued = LeadState.QUEUED.value
    ledger.note(session, [(lead_id, queued, _why(verdict)) for lead_id, verdict in waits], now)


def _why(verdict: Verdict) -> str:
    return verdict.note or verdict.rule or "send gate"


def _count_gate(sync_name: str, verdicts: Sequence[Verdict]) -> None:
    for verdict in verdicts:
        GATE_SKIPPED.labels(sync=sync_name, rule=verdict.rule or "other").inc()
        log.warning(
            "send gate held a lead back",
            sync=sync_name,
            rule=verdict.rule,
            action=verdict.action.value,
            note=verdict.note,
        )


def defer_to_calling_hours(session: Session, opens: Mapping[int, datetime], now: datetime) -> None:
    """Queued leads wait until their calling hours open: no attempt counted, no state change.

    ``next_attempt_at`` becomes the opening, so the due-retry query picks the
    lead up then; ``waiting_for`` tells operators why it waits.
    """
    params = [{"lead": lead_id, "opens": at, "now": now} for lead_id, at in opens.items()]
    if params:
        session.connection().execute(_DEFER, params)


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


#: One ledger writes lead states (docs/design.md#one-ledger); delivery's moves go through it.
move = ledger.move
reject = ledger.reject


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


_CLEAR_PAUSES = delete(_PAUSES_TABLE).where(_PAUSES)


def clear_pauses(session: Session, credential: str, agent_id: str) -> int:
    """A successful answer ends the key's and the agent's pauses."""
    result = session.connection().execute(_CLEAR_PAUSES, _pause_keys(credential, agent_id))
    cleared: int = result.rowcount
    return cleared


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Applied:
    """What carrying out a plan did beyond the plan itself."""

    #: The pause opened or extended, as stored (failures counted, end computed).
    pause: ActivePause | None = None
    #: How many pauses a success ended.
    cleared: int = 0


def _move_values(step: Move) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if step.clear_batch:
        values["batch_id"] = None
    if step.set_error:
        values["error_code"] = step.error_code
        values["error_message"] = step.error_message
    if step.next_attempt_at is not None:
        values["next_attempt_at"] = step.next_attempt_at
    if step.target is LeadState.ACCEPTED:
        values["simz_batch_id"] = step.simz_batch_id
    return values


def _close_planned(session: Session, batch_id: int, plan: OutcomePlan, now: datetime) -> None:
    row = plan.batch
    close_batch(
        session,
        batch_id,
        outcome=row.outcome,
        now=now,
        http_status=row.http_status,
        simz_batch_id=row.simz_batch_id,
        accepted=row.accepted,
        rejected=row.rejected,
        duration=row.duration,
        excerpt=row.excerpt,
    )


def apply_plan(
    session: Session,
    plan: OutcomePlan,
    *,
    batch_id: int,
    credential: str,
    agent_id: str,
    now: datetime,
    release: int | None = None,
) -> Applied:
    """Carry out ``plan`` (the answer to batch ``batch_id``) in the caller's transaction.

    ``release``: a batch claimed ahead, released for sending in the same transaction.
    """
    for step in plan.moves:
        move(
            session,
            step.lead_ids,
            source=LeadState.SENDING,
            target=step.target,
            reason=step.reason,
            batch_id=batch_id,
            now=now,
            values=_move_values(step),
            count_attempt=step.count_attempt,
        )
    reject(
        session,
        [(r.lead_id, r.code, r.message) for r in plan.rejections],
        reason=plan.rejection_reason,
        batch_id=batch_id,
        now=now,
        simz_batch_id=plan.rejection_batch_id,
    )
    cleared = clear_pauses(session, credential, agent_id) if plan.clear_pauses else 0
    opened = None
    if plan.pause is not None:
        opened = pause(
            session,
            scope=plan.pause.scope,
            key=plan.pause.key,
            reason=plan.pause.reason,
            http_status=plan.pause.http_status,
            now=now,
            until=plan.pause.ends,
        )
    _close_planned(session, batch_id, plan, now)
    if release is not None:
        mark_posted(session, release, now)
    return Applied(opened, cleared)


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
    split, ahead, maybe_posted = _sort_stranded(_stranded_leads(session, sync_name))
    _requeue_unsent(session, split, _SPLIT_UNSENT, now)
    _requeue_unsent(session, ahead, _AHEAD_UNSENT, now)
    _close_batches(session, {r.batch_id for r in ahead}, "abandoned", now)
    ledger.mark_uncertain(session, [r.id for r in maybe_posted], reason, now)
    _interrupt_open_batches(session, sync_name, now)
    return len(maybe_posted)


_SPLIT_UNSENT = "part of a split batch that was never sent (SimZ had queued nothing)"
_AHEAD_UNSENT = "claimed ahead and never sent (the process stopped first)"


def _stranded_leads(session: Session, sync_name: str | None) -> Sequence[Any]:
    """Every ``sending`` lead (of ``sync_name``) with its batch's outcome and ``posted_at``."""
    leads_filter: list[ColumnElement[bool]] = [Lead.state == LeadState.SENDING.value]
    if sync_name is not None:
        leads_filter.append(Lead.sync_name == sync_name)
    return session.execute(
        select(Lead.id, Lead.batch_id, Batch.outcome, Batch.posted_at)
        .outerjoin(Batch, Batch.id == Lead.batch_id)
        .where(*leads_filter)
    ).all()


def _sort_stranded(found: Sequence[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """Stranded leads as (unsent split parts, unreleased claims ahead, maybe posted)."""
    split: list[Any] = []
    ahead: list[Any] = []
    maybe_posted: list[Any] = []
    for row in found:
        if row.outcome is not None:
            split.append(row)
        elif row.batch_id is not None and not row.posted_at:
            ahead.append(row)
        else:
            maybe_posted.append(row)
    return split, ahead, maybe_posted


def _requeue_unsent(session: Session, rows: Sequence[Any], why: str, now: datetime) -> None:
    """Leads certainly never sent back to ``queued``, one move per batch."""
    for batch_id in sorted({r.batch_id for r in rows}):
        move(
            session,
            [r.id for r in rows if r.batch_id == batch_id],
            source=LeadState.SENDING,
            target=LeadState.QUEUED,
            reason=why,
            batch_id=batch_id,
            now=now,
            values={"batch_id": None},
        )


def _close_batches(session: Session, batch_ids: set[int], outcome: str, now: datetime) -> None:
    if batch_ids:
        session.execute(
            update(Batch)
            .where(Batch.id.in_(sorted(batch_ids)))
            .values(outcome=outcome, finished_at=now)
            .execution_options(synchronize_session=False)
        )


def _interrupt_open_batches(session: Session, sync_name: str | None, now: datetime) -> None:
    """Every batch row still open (of ``sync_name``) is closed ``interrupted``."""
    batches_filter: list[ColumnElement[bool]] = [Batch.outcome.is_(None)]
    if sync_name is not None:
        batches_filter.append(Batch.sync_name == sync_name)
    session.execute(
        update(Batch)
        .where(*batches_filter)
        .values(outcome="interrupted", finished_at=now)
        .execution_options(synchronize_session=False)
    )


def count_in_flight(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(Lead).where(Lead.state == LeadState.SENDING.value)
        )
        or 0
    )
