"""Carry out the plan of a SimZ answer (:func:`syncd.domain.outcome.plan_outcome`).

The plan is plain data decided without I/O; this writes it in the caller's
transaction (docs/design.md#one-transaction-per-page-and-per-batch-outcome):
the state moves, the rejections, the pauses, the batch row and the release of
a batch claimed ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from syncd.adapters.ledger.moves import Along, move_along
from syncd.adapters.outbox.claims import (
    CLOSED,
    RELEASED,
    close_batch,
    close_params,
    mark_posted,
    not_released,
)
from syncd.adapters.outbox.common import move, reject
from syncd.adapters.outbox.pauses import CLEARED, ActivePause, clear_pauses, pause, pause_keys
from syncd.domain.outcome import Move, OutcomePlan
from syncd.domain.states import LeadState


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


def _accepted_at(step: Move, now: datetime) -> dict[str, Any]:
    """Speed to lead: when SimZ's accepting answer was recorded."""
    return {"accepted_at": now} if step.target is LeadState.ACCEPTED else {}


def _close_planned(session: Session, batch_id: int, plan: OutcomePlan, now: datetime) -> None:
    close_batch(session, batch_id, now=now, **_closing_fields(plan))


def _closing_fields(plan: OutcomePlan) -> dict[str, Any]:
    """What the plan writes on its batch row when it closes it."""
    row = plan.batch
    return {
        "outcome": row.outcome,
        "http_status": row.http_status,
        "simz_batch_id": row.simz_batch_id,
        "accepted": row.accepted,
        "rejected": row.rejected,
        "duration": row.duration,
        "excerpt": row.excerpt,
    }


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
    On PostgreSQL a plan of one move and nothing per lead (no rejection, no pause:
    a plain success, say) is carried out in one statement (:func:`_apply_at_once`).
    """
    if _at_once(session, plan):
        return _apply_at_once(session, plan, batch_id, credential, agent_id, now, release)
    for step in plan.moves:
        move(
            session,
            step.lead_ids,
            source=LeadState.SENDING,
            target=step.target,
            reason=step.reason,
            batch_id=batch_id,
            now=now,
            values={**_move_values(step), **_accepted_at(step, now)},
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
    if not plan.keep_batch_row:
        _close_planned(session, batch_id, plan, now)
    if release is not None:
        mark_posted(session, release, now)
    return Applied(opened, cleared)


def _at_once(session: Session, plan: OutcomePlan) -> bool:
    """Whether :func:`_apply_at_once` carries out ``plan``: on PostgreSQL, one move and
    the batch row's close, the pauses' end and a release, nothing else."""
    return (
        len(plan.moves) == 1
        and not plan.rejections
        and plan.pause is None
        and not plan.keep_batch_row
        and session.connection().dialect.name == "postgresql"
    )


def _answer_along(clear_pauses: bool) -> Along:
    """What an answer writes besides its move: the batch row closed, a batch claimed
    ahead released (``r_batch``, NULL for none) and, after a success, the pauses ended."""
    ctes = (CLEARED, CLOSED, RELEASED) if clear_pauses else (CLOSED, RELEASED)
    columns = tuple(
        select(func.count()).select_from(cte).scalar_subquery().label(cte.name) for cte in ctes
    )
    return Along(ctes=ctes, columns=columns)


_ANSWER_ALONG = {clear: _answer_along(clear) for clear in (False, True)}


def _apply_at_once(
    session: Session,
    plan: OutcomePlan,
    batch_id: int,
    credential: str,
    agent_id: str,
    now: datetime,
    release: int | None,
) -> Applied:
    """PostgreSQL: the plan's move, the pauses' end, the batch row's close and the
    release of ``release`` in one statement (one round trip instead of four)."""
    [step] = plan.moves
    params = close_params("c_", batch_id, now=now, **_closing_fields(plan))
    params.update(pause_keys(credential, agent_id), r_batch=release, r_now=now)
    done = move_along(
        session,
        step.lead_ids,
        _ANSWER_ALONG[plan.clear_pauses],
        params,
        source=LeadState.SENDING,
        target=step.target,
        reason=step.reason,
        now=now,
        batch_id=batch_id,
        values={**_move_values(step), **_accepted_at(step, now)},
        count_attempt=step.count_attempt,
    )
    if release is not None and done.released != 1:
        raise not_released(release)
    return Applied(None, done.cleared if plan.clear_pauses else 0)
