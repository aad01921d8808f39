"""Claims: due leads to ``sending`` under a new batch row, split parts, release, close.

Claiming ahead (docs/design.md#claim-ahead-release-after-the-answer): a batch
claimed while another is in flight has no ``posted_at`` until
:func:`mark_posted` releases it, so recovery knows it was never sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Update, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from syncd.adapters.ledger.moves import Along, move_along
from syncd.adapters.orm import Lead
from syncd.adapters.outbox.common import BATCHES, Claim, ClaimedLead, OutboxConflict, move
from syncd.adapters.outbox.dial_decisions import Dial, dial_params, dials_along, record_dials
from syncd.adapters.outbox.send_gate import gate_round
from syncd.domain.gate import GateRules
from syncd.domain.local_rules import CallingRules
from syncd.domain.states import LeadState

#: The gate's rules when a caller names none: DoNotCall and the suppression list only.
_DEFAULT_RULES = GateRules()
#: Claim rounds at most: each round that finds nothing to send has skipped or deferred
#: at least one lead, so the next one looks at others.
_GATE_ROUNDS = 20

#: A Core INSERT ... RETURNING: no ORM object, flush or identity map per batch.
_NEW_BATCH = insert(BATCHES).returning(BATCHES.c.id)
#: What a new batch row is given (the rest is set when it is posted and closed).
_BATCH_VALUES = (
    "sync_name",
    "agent_id",
    "api_key_id",
    "lead_count",
    "created_at",
    "posted_at",
    "worker",
)


def _batch_row(
    *,
    sync_name: str,
    agent_id: str,
    credential: str,
    lead_count: int,
    now: datetime,
    worker: str | None,
    posted: bool,
) -> dict[str, Any]:
    """The values of a new batch row (:data:`_BATCH_VALUES`)."""
    return {
        "sync_name": sync_name,
        "agent_id": agent_id,
        "api_key_id": credential,
        "lead_count": lead_count,
        "created_at": now,
        "posted_at": now if posted else None,
        "worker": worker,
    }


def _new_batch(session: Session, row: dict[str, Any]) -> int:
    batch_id: int = session.connection().execute(_NEW_BATCH, row).scalar_one()
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
    rules: GateRules = _DEFAULT_RULES,
    calling_rules: CallingRules | None = None,
) -> Claim | None:
    """Move up to ``limit`` due leads that pass the send gate to ``sending`` under a new batch.

    The gate (:func:`syncd.domain.gate.decide`) runs in this same transaction: a
    lead it skips becomes ``skipped`` with the reason in its note and audit trail,
    one it defers stays queued until the time it names, and each lead it lets
    through gets its dial decision row, naming ``rules.version``. A lead whose
    number lock another transaction holds (PostgreSQL) is left queued for the
    next claim (:mod:`syncd.adapters.number_locks`). ``calling_rules`` (calling
    hours) is asked about every due lead first; those whose window is closed
    wait for its opening (:mod:`syncd.adapters.outbox.send_gate`).

    ``posted=False`` claims a batch *ahead*, while another is in flight: it must
    not be sent before :func:`mark_posted` commits; until then recovery knows it
    was never sent and puts its leads back in the queue.
    """
    leads, dials = _gate(session, sync_name, agent_id, limit, now, rules, calling_rules)
    if not leads:
        return None
    batch = _batch_row(
        sync_name=sync_name,
        agent_id=agent_id,
        credential=credential,
        lead_count=len(leads),
        now=now,
        worker=worker,
        posted=posted,
    )
    if session.connection().dialect.name == "postgresql":
        batch_id = _claim_at_once(session, leads, dials, batch, rules.version, now)
        return Claim(batch_id, sync_name, agent_id, leads, now)
    batch_id = _new_batch(session, batch)
    move(
        session,
        [lead.id for lead in leads],
        source=LeadState.QUEUED,
        target=LeadState.SENDING,
        reason=_CLAIMED,
        batch_id=batch_id,
        now=now,
        values={"batch_id": batch_id, "sent_at": now, "waiting_for": None},
    )
    claimed = Claim(batch_id, sync_name, agent_id, leads, now)
    record_dials(session, claimed, dials, rules.version, now)
    return claimed


_CLAIMED = "claimed into a batch"
#: PostgreSQL: the claim's batch row, the move to ``sending`` (each lead joining the
#: batch, with its audit row) and the dial decisions, in one statement: one round trip.
_BATCH_ROW = (
    insert(BATCHES)
    .values({name: bindparam(f"b_{name}", type_=BATCHES.c[name].type) for name in _BATCH_VALUES})
    .returning(BATCHES.c.id)
    .cte("batch")
)
_BATCH_ID = select(_BATCH_ROW.c.id).scalar_subquery()
_DIALS = dials_along(_BATCH_ID)
_CLAIM_ALONG = Along(
    ctes=(_BATCH_ROW, _DIALS),
    columns=(
        _BATCH_ID.label("batch_id"),
        select(func.count()).select_from(_DIALS).scalar_subquery().label("dials"),
    ),
    batch=_BATCH_ID,
)


def _claim_at_once(
    session: Session,
    leads: Sequence[ClaimedLead],
    dials: Sequence[Dial],
    batch: dict[str, Any],
    rules_version: str,
    now: datetime,
) -> int:
    """PostgreSQL: the batch row, the move and the dial decisions in one statement; the
    new batch's id. A lead that left ``queued`` raises, as :func:`move` does."""
    params = {f"b_{name}": value for name, value in batch.items()}
    params.update(dial_params(batch["sync_name"], batch["agent_id"], dials, rules_version, now))
    row = move_along(
        session,
        [lead.id for lead in leads],
        _CLAIM_ALONG,
        params,
        source=LeadState.QUEUED,
        target=LeadState.SENDING,
        reason=_CLAIMED,
        now=now,
        values={"sent_at": now, "waiting_for": None},
    )
    if row.dials != len(dials):
        raise OutboxConflict(f"{row.dials} dial decisions written for {len(dials)} leads claimed")
    batch_id: int = row.batch_id
    return batch_id


def _gate(
    session: Session,
    sync_name: str,
    agent_id: str,
    limit: int,
    now: datetime,
    rules: GateRules,
    calling_rules: CallingRules | None,
) -> tuple[tuple[ClaimedLead, ...], tuple[Dial, ...]]:
    """Gate rounds until one finds leads to send or makes no progress; its leads and dials."""
    for _round in range(_GATE_ROUNDS):
        sendable, progressed, dials = gate_round(
            session, sync_name, agent_id, limit, now, rules, calling_rules
        )
        if sendable or not progressed:
            return sendable, dials
    return (), ()


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
    row = _batch_row(
        sync_name=parent.sync_name,
        agent_id=parent.agent_id,
        credential=credential,
        lead_count=len(leads),
        now=now,
        worker=worker,
        posted=True,
    )
    batch_id = _new_batch(session, row)
    ids = [lead.id for lead in leads]
    result = session.execute(
        update(Lead)
        .where(Lead.id.in_(ids), Lead.state == LeadState.SENDING.value)
        .values(batch_id=batch_id, sent_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != len(ids):  # type: ignore[attr-defined]
        raise OutboxConflict(f"{len(ids) - result.rowcount} leads left sending mid-split")  # type: ignore[attr-defined]
    return Claim(batch_id, parent.sync_name, parent.agent_id, tuple(leads), now)


def _posting(prefix: str) -> Update:
    """Set ``posted_at`` of the open batch bound as ``<prefix>batch`` that was not posted."""
    return (
        update(BATCHES)
        .where(
            BATCHES.c.id == bindparam(f"{prefix}batch"),
            BATCHES.c.outcome.is_(None),
            BATCHES.c.posted_at.is_(None),
        )
        .values(posted_at=bindparam(f"{prefix}now", type_=BATCHES.c.posted_at.type))
    )


_MARK_POSTED = _posting("")
#: PostgreSQL: :func:`mark_posted` as a CTE of an answer's statement (``r_batch`` and
#: ``r_now``; a NULL batch releases nothing): a row per batch released.
RELEASED = _posting("r_").returning(BATCHES.c.id).cte("released")


def mark_posted(session: Session, batch_id: int, now: datetime) -> None:
    """Release a batch claimed ahead for sending; commit before its POST starts."""
    result = session.connection().execute(_MARK_POSTED, {"batch": batch_id, "now": now})
    if result.rowcount != 1:
        raise not_released(batch_id)


def not_released(batch_id: int) -> OutboxConflict:
    return OutboxConflict(f"batch {batch_id} is not an open batch waiting to be posted")


#: What closing a batch row sets.
_CLOSING = (
    "outcome",
    "finished_at",
    "http_status",
    "simz_batch_id",
    "accepted",
    "rejected",
    "duration_seconds",
    "response_excerpt",
)


def _closing(prefix: str) -> Update:
    """Close the batch bound as ``<prefix>batch``: each column set from ``<prefix><column>``."""
    return (
        update(BATCHES)
        .where(BATCHES.c.id == bindparam(f"{prefix}batch"))
        .values(
            {name: bindparam(f"{prefix}{name}", type_=BATCHES.c[name].type) for name in _CLOSING}
        )
    )


_CLOSE_BATCH = _closing("v_")
#: PostgreSQL: :func:`close_batch` as a CTE of an answer's statement (``c_`` parameters,
#: :func:`close_params`).
CLOSED = _closing("c_").returning(BATCHES.c.id).cte("closed")


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
        close_params(
            "v_",
            batch_id,
            outcome=outcome,
            now=now,
            http_status=http_status,
            simz_batch_id=simz_batch_id,
            accepted=accepted,
            rejected=rejected,
            duration=duration,
            excerpt=excerpt,
        ),
    )


def close_params(
    prefix: str,
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
) -> dict[str, Any]:
    """The parameters of a batch row's close, named with ``prefix``."""
    values = (outcome, now, http_status, simz_batch_id, accepted, rejected, duration, excerpt)
    params = {f"{prefix}{name}": value for name, value in zip(_CLOSING, values, strict=True)}
    params[f"{prefix}batch"] = batch_id
    return params
