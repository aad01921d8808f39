"""``requeue``: the one manual repair syncd allows, after fetching the records again.

It fetches the selected records again from Salesforce first
(:mod:`syncd.services.refetch`) and refuses, changing nothing, when Salesforce
cannot be reached: a lead is never sent again from stale data.

``requeue`` is the only way an ``uncertain`` lead is ever sent again (guarantee
3): SimZ has no idempotency key, so a lead whose earlier POST did reach SimZ
will be called twice. Hence the rules, which the CLI states in its help:

* at least one selector (sync, states or Salesforce Ids); never "everything";
* only ``uncertain``, ``failed`` and ``rejected`` leads move, never ``accepted``;
* an explicit Id list is all-or-nothing: if any named Id does not exist or is in
  a state the command would not move, nothing moves and every problem is named;
* every selected record is fetched again and every rule re-applied: a record
  now DoNotCall, deleted, no longer matched by ``where``, a duplicate or invalid
  becomes ``skipped``/``invalid`` with the reason instead of ``queued``;
* one transaction; each UPDATE repeats the state condition, so a lead whose state
  changed since it was selected is left alone;
* one ``lead_transitions`` row per moved lead, with the reason and who did it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import operator_queries as q
from syncd.adapters import recheck_store
from syncd.adapters.orm import utcnow
from syncd.config import SyncConfig
from syncd.domain.states import LeadState
from syncd.services import refetch
from syncd.services.operator.common import REQUEUE_STATES, STATE_ORDER, log
from syncd.services.refetch import RecordSource

DEFAULT_REASON = "operator requeue"


class RequeueRefused(Exception):
    """Nothing was moved; ``problems`` says why, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class RequeueCount:
    sync: str
    state: str
    leads: int


@dataclass(frozen=True)
class RequeuePreview:
    """What ``requeue`` would move now, and the problems that would stop it."""

    counts: list[RequeueCount]
    problems: list[str]

    @property
    def total(self) -> int:
        return sum(c.leads for c in self.counts)

    def by_state(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for c in self.counts:
            found[c.state] = found.get(c.state, 0) + c.leads
        return found

    @property
    def uncertain(self) -> int:
        return self.by_state().get(LeadState.UNCERTAIN.value, 0)


@dataclass(frozen=True)
class HeldLead:
    """A lead a requeue did not queue: its record now fails a rule, or is gone."""

    sync: str
    salesforce_id: str
    from_state: str
    state: str
    note: str


@dataclass(frozen=True)
class RequeueResult:
    moved: list[RequeueCount]
    reason: str
    actor: str
    at: datetime
    skipped_by_filter: int = 0
    held: list[HeldLead] = dataclasses.field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(c.leads for c in self.moved)


def _selection(
    sync: str | None, states: Iterable[str] | None, salesforce_ids: Iterable[str] | None
) -> tuple[list[str], list[str] | None]:
    ids = list(dict.fromkeys(salesforce_ids)) if salesforce_ids is not None else None
    chosen = list(dict.fromkeys(states)) if states else None
    if sync is None and not chosen and not ids:
        raise ValueError(
            "requeue needs at least one selector: a sync, one or more states, or Salesforce Ids"
        )
    for name in chosen or ():
        if name not in REQUEUE_STATES:
            raise ValueError(
                f"{name!r} leads cannot be requeued; only {', '.join(REQUEUE_STATES)} can"
            )
    return chosen or list(REQUEUE_STATES), ids


def _preview(
    session: Session, sync: str | None, states: list[str], ids: list[str] | None
) -> RequeuePreview:
    problems: list[str] = []
    if ids:
        found = q.states_of_ids(session, ids, sync)
        seen = {sf_id for sf_id, _, _ in found}
        where = f" in sync {sync!r}" if sync else ""
        problems += [f"{sf_id}: no such lead{where}" for sf_id in ids if sf_id not in seen]
        for sf_id, name, state in sorted(found):
            if state == LeadState.ACCEPTED.value:
                problems.append(
                    f"{sf_id} ({name}) is accepted: SimZ already took it; it is never requeued"
                )
            elif state not in REQUEUE_STATES:
                problems.append(
                    f"{sf_id} ({name}) is {state}: only {', '.join(REQUEUE_STATES)} "
                    "leads can be requeued"
                )
            elif state not in states:
                problems.append(
                    f"{sf_id} ({name}) is {state}, not one of the selected states "
                    f"({', '.join(states)})"
                )
    counts = q.count_matching(session, q.lead_filter(sync=sync, states=states, salesforce_ids=ids))
    ordered = sorted(counts.items(), key=lambda kv: (kv[0][0], STATE_ORDER.index(kv[0][1])))
    return RequeuePreview([RequeueCount(s, st, n) for (s, st), n in ordered], problems)


def preview_requeue(
    session_factory: sessionmaker[Session],
    *,
    sync: str | None = None,
    states: Iterable[str] | None = None,
    salesforce_ids: Iterable[str] | None = None,
) -> RequeuePreview:
    """What :func:`requeue` with the same selectors would move, for the confirmation prompt.

    Raises ValueError for a bare selection or a state that is not requeueable.
    """
    chosen, ids = _selection(sync, states, salesforce_ids)
    with session_factory() as session:
        return _preview(session, sync, chosen, ids)


def _select_or_refuse(
    session_factory: sessionmaker[Session],
    syncs: Mapping[str, SyncConfig],
    sync: str | None,
    chosen: list[str],
    ids: list[str] | None,
) -> list[recheck_store.Selected]:
    """The leads to fetch again; :class:`RequeueRefused` when any of them cannot be."""
    with session_factory() as session:
        preview = _preview(session, sync, chosen, ids)
        if preview.problems:
            raise RequeueRefused(preview.problems)
        selected = recheck_store.select_leads(session, sync=sync, states=chosen, salesforce_ids=ids)
    unknown = sorted({lead.sync_name for lead in selected} - set(syncs))
    if unknown:
        raise RequeueRefused(
            [
                f"sync {name!r} is not in the configuration: its records cannot be fetched again"
                for name in unknown
            ]
        )
    return selected


def requeue(
    session_factory: sessionmaker[Session],
    *,
    sources: Callable[[str], RecordSource],
    syncs: Mapping[str, SyncConfig],
    sync: str | None = None,
    states: Iterable[str] | None = None,
    salesforce_ids: Iterable[str] | None = None,
    reason: str = DEFAULT_REASON,
    actor: str,
    now: Callable[[], datetime] = utcnow,
) -> RequeueResult:
    """Fetch the selected uncertain/failed/rejected leads' records again, re-apply the rules, and
    move each to ``queued`` (new payload), ``skipped`` or ``invalid`` (with the reason).

    Without ``states`` every requeueable state is selected. Raises ValueError for
    a bare selection; :class:`RequeueRefused` (moving nothing) when an explicit
    Salesforce Id is unknown or names a lead this call would not move, or a lead's
    sync is not configured; :class:`SalesforceUnreachable` (moving nothing) when
    the records cannot be fetched. The moves happen in one transaction.
    """
    chosen, ids = _selection(sync, states, salesforce_ids)
    reason = (reason or DEFAULT_REASON).strip() or DEFAULT_REASON
    trail_reason = f"{reason} (by {actor or 'unknown'})"[:500]
    selected = _select_or_refuse(session_factory, syncs, sync, chosen, ids)
    checked = refetch.recheck(
        session_factory, sources, syncs, selected, reason=trail_reason, now=now
    )
    moved = [
        RequeueCount(name, source, count)
        for (name, source, target), count in sorted(checked.moved.items())
        if target == LeadState.QUEUED.value
    ]
    held = [
        HeldLead(o.lead.sync_name, o.lead.salesforce_id, o.lead.state, o.target.value, o.note or "")
        for o in checked.held
    ]
    result = RequeueResult(
        moved, reason, actor, now(), skipped_by_filter=checked.changed_meanwhile, held=held
    )
    log.info(
        "leads requeued",
        leads=result.total,
        held=len(held),
        by_state={c.state: c.leads for c in moved},
        sync=sync,
        ids=len(ids) if ids else 0,
        actor=actor,
        reason=reason,
    )
    return result
