"""What the outbox's modules share: the Core tables, the claimed batch, the ledger's moves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table

from syncd.adapters import ledger
from syncd.adapters.orm import Batch, Lead, Pause

#: Core tables for the per-batch moves: plain UPDATE and executemany INSERT, without
#: the ORM's bulk bookkeeping (which cost more than the SQL itself).
LEADS: Table = Lead.__table__  # type: ignore[assignment]
BATCHES: Table = Batch.__table__  # type: ignore[assignment]
PAUSES: Table = Pause.__table__  # type: ignore[assignment]

#: A lead was not in the state delivery expected: a bug, never papered over.
OutboxConflict = ledger.LedgerConflict

#: One ledger writes lead states (docs/design.md#one-ledger); delivery's moves go through it.
move = ledger.move
reject = ledger.reject


@dataclass(frozen=True)
class ClaimedLead:
    id: int
    salesforce_id: str
    payload: dict[str, Any]
    attempts: int
    #: Speed to lead: the record's CreatedDate and when the lead was first queued.
    record_created_at: datetime | None = None
    queued_at: datetime | None = None


@dataclass(frozen=True)
class Claim:
    """Leads moved to ``sending`` under one open batch row."""

    batch_id: int
    sync_name: str
    agent_id: str
    leads: tuple[ClaimedLead, ...]
    #: When the leads' ``sent_at`` was set (the claim, or a split part's own batch).
    sent_at: datetime | None = None
