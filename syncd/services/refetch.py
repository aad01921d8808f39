"""Send a lead again only as its record is now: fetch, map, re-apply the rules, then queue.

``syncd requeue`` and the opt-in ``simz.resend_uncertain`` move leads that were
already in delivery's hands (``failed``, ``rejected``, ``uncertain``) back to
``queued``. Their stored payload may be stale: the record may have become
DoNotCall, been deleted, stopped matching the sync's ``where``, or changed its
number. So both go through :func:`recheck`:

1. read the selected leads (one short read);
2. fetch their records from Salesforce by Id with the sync's fields and
   ``where`` (in chunks); the records not returned are fetched once more
   without ``where`` to tell "no longer matched" from "deleted". Any
   Salesforce error raises :class:`SalesforceUnreachable` and nothing changes;
3. in ONE transaction: map each record again and apply every intake rule
   (invalid, DoNotCall, the suppression list, consent, the duplicate-phone
   window against every other lead, under the per-number locks on PostgreSQL;
   a record that says DoNotCall puts its number on the suppression list, see
   :mod:`syncd.services.intake_numbers`), then move each lead to ``queued``
   with its new payload, or to ``skipped``/``invalid`` with the reason. Every
   move is guarded by the state read in step 1 (a lead changed meanwhile is left
   alone) and recorded in the audit trail.

Nothing is written before step 3 commits, so a process killed while fetching
changes nothing, and a lead is queued at most once per requeue.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import recheck_store
from syncd.adapters.salesforce import SalesforceSourceError
from syncd.config.models import SyncConfig
from syncd.domain.mapping import MappedLead, Mapper, read_datetime
from syncd.domain.page_plan import is_stale
from syncd.domain.rules import OPEN_SCREEN, AgentPhone, NumberScreen, decide
from syncd.domain.soql import SALESFORCE_ID, STAMP_FIELD, build_ids_query
from syncd.domain.states import LeadState, check_transition
from syncd.logs import get_logger
from syncd.services.intake_numbers import Intake, Screened, screen_numbers

log = get_logger(__name__)

#: Ids per SOQL query (18 characters each: a query far below Salesforce's length limit).
ID_CHUNK = 200

NOT_FOUND_NOTE = "record not found in Salesforce (deleted, or not readable by this user)"
UNMATCHED_NOTE = "record no longer matched by the sync's where"
BAD_ID_NOTE = "not a Salesforce Id; the record cannot be fetched"
RESTORED_NOTE = "restored by an operator; held until `syncd release`"


class RecordSource(Protocol):
    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]: ...


class SalesforceUnreachable(Exception):
    """The records could not be fetched again; nothing was changed."""


@dataclass(frozen=True)
class Fetched:
    """The records of some Ids as Salesforce has them now."""

    records: dict[str, dict[str, Any]]
    unmatched: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Outcome:
    """Where one re-checked lead goes, and why."""

    lead: recheck_store.Selected
    target: LeadState
    note: str | None
    mapped: MappedLead | None


@dataclass
class RecheckResult:
    """What a re-check moved: per (sync, from state, to state) counts, and the held leads."""

    moved: dict[tuple[str, str, str], int] = field(default_factory=dict)
    held: list[Outcome] = field(default_factory=list)
    changed_meanwhile: int = 0

    def count(self, target: LeadState) -> int:
        return sum(n for (_s, _f, to), n in self.moved.items() if to == target.value)


def fetch(source: RecordSource, sync: SyncConfig, ids: Sequence[str]) -> Fetched:
    """The records of ``ids`` (valid Salesforce Ids only) as the sync reads them now.

    Raises :class:`SalesforceUnreachable` on any Salesforce error.
    """
    wanted = [value for value in dict.fromkeys(ids) if SALESFORCE_ID.fullmatch(value)]
    try:
        records = _query(source, sync, wanted, with_where=True)
        missing = [value for value in wanted if value not in records]
        unmatched: set[str] = set()
        if missing and sync.where and sync.where.strip():
            unmatched = set(_query(source, sync, missing, with_where=False))
    except SalesforceSourceError as exc:
        raise SalesforceUnreachable(f"{type(exc).__name__}: {exc}") from exc
    return Fetched(records, frozenset(unmatched))


def _query(
    source: RecordSource, sync: SyncConfig, ids: Sequence[str], *, with_where: bool
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), ID_CHUNK):
        soql = build_ids_query(
            sync.query_spec, ids[start : start + ID_CHUNK], with_where=with_where
        )
        for page in source.query_pages(soql):
            for record in page:
                found[_id_of(record, ids)] = record
    return found


def _id_of(record: Mapping[str, Any], asked: Sequence[str]) -> str:
    """The record's Id as the lead stores it (a 15-character Id matches its 18-character form)."""
    value = str(record.get("Id") or "")
    if value in asked:
        return value
    return next((a for a in asked if len(a) == 15 and value.startswith(a)), value)


def decide_outcomes(
    leads: Sequence[recheck_store.Selected],
    fetched: Fetched,
    mapper: Mapper,
    sync: SyncConfig,
    recent: set[AgentPhone],
    screen: NumberScreen = OPEN_SCREEN,
) -> list[Outcome]:
    """Without I/O: where each lead goes once its record was fetched again."""
    outcomes: list[Outcome] = []
    found: list[tuple[recheck_store.Selected, MappedLead]] = []
    for lead in leads:
        record = fetched.records.get(lead.salesforce_id)
        if record is None:
            if not SALESFORCE_ID.fullmatch(lead.salesforce_id):
                note = BAD_ID_NOTE
            elif lead.salesforce_id in fetched.unmatched:
                note = UNMATCHED_NOTE
            else:
                note = NOT_FOUND_NOTE
            outcomes.append(Outcome(lead, LeadState.SKIPPED, note, None))
        else:
            found.append((lead, mapper.map(record)))
    rules = sync.intake_rules
    decisions = decide(
        [mapped for _lead, mapped in found],
        recent=recent,
        respect_do_not_call=rules.respect_do_not_call,
        duplicate_window_label=rules.window_label,
        screen=screen,
    )
    for (lead, mapped), decision in zip(found, decisions, strict=True):
        outcomes.append(Outcome(lead, decision.state, decision.note, mapped))
    return outcomes


def recheck(
    session_factory: sessionmaker[Session],
    sources: Callable[[str], RecordSource],
    syncs: Mapping[str, SyncConfig],
    leads: Iterable[recheck_store.Selected],
    *,
    reason: str,
    now: Callable[[], datetime],
    restore: bool = False,
) -> RecheckResult:
    """Fetch, re-apply the rules and move ``leads``; see the module docstring.

    Every lead's sync must be in ``syncs`` (ValueError otherwise, before any
    fetch). Raises :class:`SalesforceUnreachable` before any change.

    ``restore`` (``syncd restore``, for discarded leads): the discard is lifted,
    and a lead whose record passes every rule goes to ``held``, never straight to
    ``queued``: the blast-radius guard holds it until ``syncd release``.
    """
    by_sync: dict[str, list[recheck_store.Selected]] = {}
    for lead in leads:
        by_sync.setdefault(lead.sync_name, []).append(lead)
    unknown = sorted(name for name in by_sync if name not in syncs)
    if unknown:
        raise ValueError(f"sync {unknown[0]!r} is not in the configuration: cannot fetch")
    fetched = {
        name: fetch(sources(name), syncs[name], [lead.salesforce_id for lead in selected])
        for name, selected in sorted(by_sync.items())
    }
    result = RecheckResult()
    with session_factory.begin() as session:
        at = now()
        for name, selected in sorted(by_sync.items()):
            _apply(session, syncs[name], selected, fetched[name], reason, at, result, restore)
    return result


def _apply(
    session: Session,
    sync: SyncConfig,
    selected: list[recheck_store.Selected],
    fetched: Fetched,
    reason: str,
    at: datetime,
    result: RecheckResult,
    restore: bool = False,
) -> None:
    """Decide and move one sync's leads inside the caller's transaction."""
    current = recheck_store.current_states(session, [lead.lead_id for lead in selected])
    still = [lead for lead in selected if _unchanged(current.get(lead.lead_id), lead, fetched)]
    result.changed_meanwhile += len(selected) - len(still)
    mapper = Mapper(sync.mapping_spec)
    screened = _screen(session, sync, mapper, fetched, still, at)
    outcomes = decide_outcomes(still, fetched, mapper, sync, screened.taken, screened.screen)
    if restore:
        outcomes = [
            dataclasses.replace(o, target=LeadState.HELD, note=RESTORED_NOTE)
            if o.target is LeadState.QUEUED
            else o
            for o in outcomes
        ]
    for outcome in outcomes:
        if outcome.target.value != outcome.lead.state:
            check_transition(outcome.lead.state, outcome.target)
    moves = [_move(o, reason, restore) for o in outcomes]
    moved = recheck_store.apply_outcomes(session, moves, at)
    _count(result, sync.name, outcomes, moved)


def _screen(
    session: Session,
    sync: SyncConfig,
    mapper: Mapper,
    fetched: Fetched,
    still: Sequence[recheck_store.Selected],
    at: datetime,
) -> Screened:
    """The fetched records' numbers: locked, DoNotCall ones suppressed, the list and
    the numbers other leads hold for the agents they would be queued for."""
    mapped = [mapper.map(r) for r in fetched.records.values()]
    pairs = {
        (m.agent_id, m.phone_e164)
        for m in mapped
        if m.agent_id and m.phone_e164 and m.state is LeadState.QUEUED
    }
    return screen_numbers(
        session,
        Intake(sync.name, sync.intake_rules),
        lambda: at,
        mapped=mapped,
        queue=pairs,
        exclude_ids={lead.lead_id for lead in still},
    )


def _move(outcome: Outcome, reason: str, restore: bool) -> recheck_store.RecheckMove:
    """The ledger's move of one re-checked lead, with the record's new values when found."""
    mapped = outcome.mapped
    return recheck_store.RecheckMove(
        outcome.lead.lead_id,
        outcome.lead.state,
        outcome.target.value,
        _trail(reason, outcome),
        outcome.note,
        mapped.payload if mapped else None,
        mapped.agent_id if mapped else None,
        mapped.phone_e164 if mapped else None,
        mapped.digest if mapped else None,
        mapped.cursor if mapped else None,
        mapped.do_not_call if mapped else None,
        mapped.time_zone if mapped else None,
        mapped.stamp if mapped else None,
        mapped.region if mapped else None,
        restores=restore,
        consent=mapped.consent if mapped else None,
    )


def _count(
    result: RecheckResult, sync_name: str, outcomes: Sequence[Outcome], moved: Collection[int]
) -> None:
    """Add the moves to ``result``; a lead not moved was changed meanwhile."""
    for outcome in outcomes:
        if outcome.lead.lead_id not in moved:
            result.changed_meanwhile += 1
            continue
        key = (sync_name, outcome.lead.state, outcome.target.value)
        result.moved[key] = result.moved.get(key, 0) + 1
        if outcome.target is not LeadState.QUEUED:
            result.held.append(outcome)


def _unchanged(
    now: recheck_store.Current | None, lead: recheck_store.Selected, fetched: Fetched
) -> bool:
    """Whether the lead is as it was chosen: same state, and no read newer than the fetch.

    A change stored while the records were being fetched (the stream or a poll
    read the record after this fetch, say with DoNotCall set) wins over the
    older fetch: the lead is left alone and counted as changed meanwhile
    (docs/design.md#the-newest-read-wins).
    """
    if now is None or now.state != lead.state:
        return False
    record = fetched.records.get(lead.salesforce_id)
    stamp = read_datetime(record.get(STAMP_FIELD)) if record is not None else None
    return not is_stale(stamp, now.stamp)


def _trail(reason: str, outcome: Outcome) -> str:
    what = f"{reason}; record fetched again from Salesforce"
    if outcome.target is LeadState.QUEUED:
        return what[:500]
    return f"{what}: {outcome.note}"[:500]


def resend_uncertain(
    session_factory: sessionmaker[Session],
    source: RecordSource,
    sync: SyncConfig,
    *,
    now: Callable[[], datetime],
) -> RecheckResult:
    """The opt-in ``simz.resend_uncertain``: re-check this sync's uncertain leads and queue them.

    Run by the poll job (it has the Salesforce source); a Salesforce error leaves
    them uncertain until the next poll.
    """
    with session_factory() as session:
        leads = recheck_store.select_leads(
            session, sync=sync.name, states=[LeadState.UNCERTAIN.value]
        )
    if not leads:
        return RecheckResult()
    result = recheck(
        session_factory,
        lambda _name: source,
        {sync.name: sync},
        leads,
        reason=RESEND_REASON,
        now=now,
    )
    log.warning(
        "uncertain leads fetched again and requeued for resending",
        sync=sync.name,
        requeued=result.count(LeadState.QUEUED),
        skipped=result.count(LeadState.SKIPPED),
        invalid=result.count(LeadState.INVALID),
        reason=RESEND_REASON,
        risk="SimZ may already have some of them: a person may be called twice",
    )
    return result


RESEND_REASON = "resend_uncertain enabled"
