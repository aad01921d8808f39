"""``restore``: bring back leads an operator discarded, never straight to a call.

A discard is final (docs/design.md#decisions-stick): no change of the record
revives the lead. Only this command does, and only after the same checks as a
requeue: every selected record is fetched again from Salesforce and every rule
re-applied (:func:`syncd.services.refetch.recheck` with ``restore``). A lead
whose record passes goes to ``held``, so the blast-radius guard holds it until
the operator's ``syncd release``: restoring never dials anyone by itself. A
lead whose record now fails a rule stays ``skipped`` (or becomes ``invalid``)
with the reason. Either way the discard is lifted, so a later change of the
record is evaluated again like any other. One transaction; Salesforce
unreachable changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import recheck_store
from syncd.adapters.orm import utcnow
from syncd.config import SyncConfig
from syncd.domain.states import LeadState
from syncd.services import refetch
from syncd.services.operator.common import log
from syncd.services.refetch import RecordSource

RESTORE_REASON = "operator restore"
_SKIPPED = LeadState.SKIPPED.value


@dataclass(frozen=True)
class RestoredLead:
    """Where one restored lead went: ``held``, or still ``skipped``/``invalid`` and why."""

    salesforce_id: str
    state: str
    note: str | None


@dataclass(frozen=True)
class RestoreResult:
    sync: str
    leads: list[RestoredLead]
    changed_meanwhile: int
    reason: str
    actor: str
    at: datetime

    @property
    def held(self) -> list[str]:
        return [lead.salesforce_id for lead in self.leads if lead.state == LeadState.HELD.value]

    @property
    def not_restored(self) -> list[RestoredLead]:
        return [lead for lead in self.leads if lead.state != LeadState.HELD.value]


def discarded(
    session_factory: sessionmaker[Session],
    *,
    sync: str,
    salesforce_ids: Iterable[str] | None = None,
) -> list[str]:
    """The Salesforce Ids of the sync's discarded leads (of ``salesforce_ids``), oldest first."""
    ids = list(dict.fromkeys(salesforce_ids)) if salesforce_ids else None
    with session_factory() as session:
        leads = recheck_store.select_leads(
            session, sync=sync, states=[_SKIPPED], salesforce_ids=ids, discarded=True
        )
    return [lead.salesforce_id for lead in leads]


def restore(
    session_factory: sessionmaker[Session],
    *,
    sources: Callable[[str], RecordSource],
    syncs: Mapping[str, SyncConfig],
    sync: str,
    salesforce_ids: Iterable[str] | None = None,
    reason: str = RESTORE_REASON,
    actor: str,
    now: Callable[[], datetime] = utcnow,
) -> RestoreResult:
    """Fetch the discarded leads' records again, re-check them, and move them (see above).

    Raises ValueError when ``sync`` is not configured and
    :class:`~syncd.services.refetch.SalesforceUnreachable` (changing nothing)
    when the records cannot be fetched.
    """
    if sync not in syncs:
        raise ValueError(f"sync {sync!r} is not in the configuration")
    reason = (reason or RESTORE_REASON).strip() or RESTORE_REASON
    ids = list(dict.fromkeys(salesforce_ids)) if salesforce_ids else None
    with session_factory() as session:
        selected = recheck_store.select_leads(
            session, sync=sync, states=[_SKIPPED], salesforce_ids=ids, discarded=True
        )
    checked = refetch.recheck(
        session_factory,
        sources,
        syncs,
        selected,
        reason=f"{reason} (by {actor or 'unknown'})",
        now=now,
        restore=True,
    )
    leads = [RestoredLead(o.lead.salesforce_id, o.target.value, o.note) for o in checked.held]
    result = RestoreResult(sync, leads, checked.changed_meanwhile, reason, actor, now())
    log.warning(
        "discarded leads restored",
        sync=sync,
        held=len(result.held),
        not_restored=len(result.not_restored),
        changed_meanwhile=result.changed_meanwhile,
        actor=actor,
        reason=reason,
    )
    return result
