"""The suppression list's SQL: which numbers nobody may call (docs/safety.md#the-suppression-list).

One global list of E.164 numbers, across syncs and agents. Every path that may
queue or send a lead reads it in its own transaction, after taking the numbers'
locks (:mod:`syncd.adapters.number_locks`); whatever adds a number takes the
same lock first, so a check and an addition of one number never interleave.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from syncd.adapters.orm import Suppression

SUPPRESSIONS = Suppression.__table__


@dataclass(frozen=True)
class SuppressionEntry:
    """One number on the list: where the opt-out came from, when and why."""

    phone_e164: str
    source: str
    reason: str
    added_by: str
    record_id: str | None
    sync_name: str | None
    seen_at: datetime
    added_at: datetime

    def describe(self) -> str:
        """The entry in words, for a lead's note: ``on the suppression list (source: why)``."""
        return f"number is on the suppression list ({self.source}: {self.reason})"


_AMONG = select(SUPPRESSIONS).where(
    SUPPRESSIONS.c.phone_e164.in_(bindparam("phones", expanding=True))
)


def suppressed_among(session: Session, phones: Collection[str]) -> dict[str, SuppressionEntry]:
    """The entries of those of ``phones`` that are on the list, by number."""
    wanted = sorted({phone for phone in phones if phone})
    if not wanted:
        return {}
    rows = session.connection().execute(_AMONG, {"phones": wanted})
    return {row.phone_e164: SuppressionEntry(**row._mapping) for row in rows}
