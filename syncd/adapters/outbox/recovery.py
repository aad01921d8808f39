"""Start-up recovery: leads a dead process left ``sending`` (docs/design.md#crash-recovery)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from syncd.adapters import ledger
from syncd.adapters.orm import Batch, Lead
from syncd.adapters.outbox.common import move
from syncd.domain.states import LeadState


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
