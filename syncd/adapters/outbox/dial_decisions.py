"""The record of every dial decision: one ``dial_decisions`` row per lead sent, and its rules.

In the claim's transaction, each lead the send gate moves to ``sending`` gets
one row with the inputs every rule read (:func:`syncd.domain.dial_record.dial_inputs`)
and the version of the sync's effective rules; the rules themselves are kept
once per version in ``rules_versions``, written when a delivery starts
(docs/safety.md#the-record-of-every-dial-decision). A claim writes its rows
with one executemany ``INSERT``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from syncd.adapters.orm import DialDecision, RulesVersion
from syncd.adapters.outbox.common import Claim

DIAL_DECISIONS: Table = DialDecision.__table__  # type: ignore[assignment]
RULES_VERSIONS: Table = RulesVersion.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Dial:
    """One lead the gate let through, with its dial decision's ``inputs``."""

    lead_id: int
    phone_e164: str | None
    inputs: Mapping[str, Any]


_INSERT = insert(DIAL_DECISIONS)


def record_dials(
    session: Session, claim: Claim, dials: Sequence[Dial], rules_version: str, now: datetime
) -> None:
    """One ``dial_decisions`` row per lead of ``claim``: one executemany ``INSERT``."""
    if not dials:
        return
    session.connection().execute(
        _INSERT,
        [
            {
                "lead_id": dial.lead_id,
                "sync_name": claim.sync_name,
                "agent_id": claim.agent_id,
                "phone_e164": dial.phone_e164,
                "batch_id": claim.batch_id,
                "decided_at": now,
                "rules_version": rules_version,
                "inputs": dict(dial.inputs),
            }
            for dial in dials
        ],
    )


def record_rules_version(
    session: Session, *, sync_name: str, version: str, rules: Mapping[str, Any], now: datetime
) -> None:
    """Keep the rules ``version`` stands for, unless a row already does (insert-if-absent).

    Two syncs with the same effective rules share one version; its row names the
    sync that used it first.
    """
    values = {
        "version": version,
        "sync_name": sync_name,
        "rules": dict(rules),
        "first_seen_at": now,
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(RULES_VERSIONS)
        .values(values)
        .on_conflict_do_nothing(index_elements=[RULES_VERSIONS.c.version])
    )
    session.execute(statement)
