"""The reconciliation sweep's reads of the leads: which swept Ids have one, which are in range.

Read-only: the sweep itself never writes. What ``--queue`` takes in goes
through the poll's page work and :mod:`syncd.adapters.ledger`, like any read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from syncd.adapters.orm import Lead

#: Ids per IN list (below every database's limit on bound parameters).
_CHUNK = 900


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def known_states(session: Session, sync_name: str, salesforce_ids: Sequence[str]) -> dict[str, str]:
    """The state of each of ``salesforce_ids`` that has a lead in ``sync_name``."""
    found: dict[str, str] = {}
    for chunk in _chunks(list(dict.fromkeys(salesforce_ids))):
        query = select(Lead.salesforce_id, Lead.state).where(
            Lead.sync_name == sync_name, Lead.salesforce_id.in_(chunk)
        )
        found.update((row[0], row[1]) for row in session.execute(query))
    return found


def leads_in_range(session: Session, sync_name: str, start: datetime, end: datetime) -> list[str]:
    """Ids of the sync's leads whose stored cursor lies in ``[start, end)``.

    Leads whose record syncd knows to be deleted are left out: that is already
    recorded on them (docs/design.md#decisions-stick), not news of a sweep.
    """
    query = select(Lead.salesforce_id).where(
        Lead.sync_name == sync_name,
        Lead.record_cursor >= start,
        Lead.record_cursor < end,
        Lead.deleted_at.is_(None),
    )
    return [row[0] for row in session.execute(query)]
