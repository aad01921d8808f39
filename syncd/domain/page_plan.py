"""What one page of mapped records does to the outbox, decided without I/O.

The rules: docs/design.md#polling-salesforce and #mapping-and-safety-rules.

The poll gathers the inputs (the page's mapped records, the leads already
stored for them, the (agent, number) pairs recently sent or queued) and
:func:`plan_page` decides, in three steps: the latest read of each Id and the
page's watermark (:func:`latest_reads`); which records are re-reads, changes
only recorded on a lead delivery already had, or candidates for the rules
(:func:`sort_reads`); and the rules' decisions for the candidates, as leads to
insert and changes to write (:func:`decide_candidates`). The outbox adapter
turns the plan's values into rows.

Records read twice (equal cursor values on a page boundary, the lookback) are
recognised by their Salesforce Id and digest: unchanged records cost no write.
A changed record is evaluated again while its lead is still
``queued``/``invalid``/``skipped``. Once delivery has had the lead, the change
is only recorded (digest, DoNotCall flag, and the payload for a lead that was
not sent) with an audit-trail note. A change never releases a ``held`` lead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from syncd.domain.mapping import MappedLead
from syncd.domain.rules import (
    OPEN_SCREEN,
    AgentPhone,
    Decision,
    IntakeRules,
    NumberScreen,
    decide,
    do_not_call_note,
)
from syncd.domain.states import REEVALUATED_ON_CHANGE, LeadState, check_transition

_REEVALUATED = frozenset(state.value for state in REEVALUATED_ON_CHANGE)
_QUEUED = LeadState.QUEUED.value
#: A change from these to ``queued`` makes a lead sendable: the blast-radius guard counts it.
_REVIVED_FROM = frozenset({LeadState.INVALID.value, LeadState.SKIPPED.value})
_HELD = LeadState.HELD.value
#: States whose payload, number and agent are what was (or may have been) sent.
_SENT_PAYLOAD = frozenset(
    {LeadState.SENDING.value, LeadState.ACCEPTED.value, LeadState.UNCERTAIN.value}
)

Change = Literal["new", "updated"]
#: A record the rules decided: the mapped lead, its state, the note, new or updated.
Decided = tuple[MappedLead, LeadState, str | None, Change]


@dataclass(frozen=True)
class ExistingLead:
    """The stored lead of a record read before: its id, state and the record's digest.

    ``stamp`` is the SystemModstamp of the newest read applied to it; ``discarded``
    says an operator discarded it (final: a change of its record never revives it).
    """

    id: int
    state: str
    record_hash: str
    stamp: datetime | None = None
    discarded: bool = False


def is_stale(read: datetime | None, stored: datetime | None) -> bool:
    """True when a read is older than the one already applied: the ledger ignores it.

    The newest read wins, whatever path made it (poll, stream, backfill, re-fetch)
    and whichever commits last (docs/design.md#the-newest-read-wins). A read of
    the same stamp applies (the same version of the record, perhaps a new mapping).
    """
    return read is not None and stored is not None and read < stored


@dataclass(frozen=True)
class StaleRead:
    """A read older than the lead's stored one: ignored, with a note on the lead."""

    lead_id: int
    state: str
    read_stamp: datetime
    stored_stamp: datetime


@dataclass(frozen=True)
class LeadData:
    """What a record makes of its lead, written when the lead is inserted or evaluated again."""

    agent_id: str | None
    state: str
    payload: dict[str, Any]
    phone_e164: str | None
    record_cursor: datetime
    record_hash: str
    note: str | None
    do_not_call: bool = False
    time_zone: str | None = None
    record_stamp: datetime | None = None
    region: str | None = None
    consent: str | None = None


@dataclass(frozen=True, kw_only=True)
class NewLead(LeadData):
    """A record read for the first time: a lead to insert."""

    salesforce_id: str
    #: The record's CreatedDate (speed to lead), stored once, on insert.
    record_created_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class LeadChange(LeadData):
    """A changed record whose lead was not sent yet: the lead is evaluated again."""

    lead_id: int
    from_state: str
    salesforce_id: str = ""


@dataclass(frozen=True)
class RecordChange:
    """A changed record whose lead delivery already had: stored, never resent by the poll.

    ``payload`` is None for a lead that was sent or may have been (``sending``,
    ``accepted``, ``uncertain``): its payload, number, agent and zone stay what was sent,
    since the duplicate-phone rule must keep seeing the number that was called.
    """

    lead_id: int
    state: str
    record_cursor: datetime
    record_hash: str
    do_not_call: bool
    reason: str
    agent_id: str | None = None
    payload: dict[str, Any] | None = None
    phone_e164: str | None = None
    time_zone: str | None = None
    record_stamp: datetime | None = None
    region: str | None = None
    consent: str | None = None


@dataclass
class _Draft:
    """A page's plan while it is being decided (see :class:`PagePlan` for the fields)."""

    inserts: list[NewLead] = field(default_factory=list)
    changes: list[LeadChange] = field(default_factory=list)
    recorded: list[RecordChange] = field(default_factory=list)
    unchanged: int = 0
    watermark: datetime | None = None
    beyond_window: int = 0
    unrecognised: list[str] = field(default_factory=list)
    decided: list[Decided] = field(default_factory=list)
    stale: list[StaleRead] = field(default_factory=list)
    restamped: list[tuple[int, datetime]] = field(default_factory=list)


@dataclass(frozen=True)
class PagePlan:
    """What one page turns into: rows to insert, rows to update, and counts."""

    inserts: list[NewLead] = field(default_factory=list)
    changes: list[LeadChange] = field(default_factory=list)
    recorded: list[RecordChange] = field(default_factory=list)
    unchanged: int = 0
    watermark: datetime | None = None
    #: Records whose cursor lies at or after the window's end (they leave the watermark alone).
    beyond_window: int = 0
    #: New or changed records whose DoNotCall value was not recognised.
    unrecognised: list[str] = field(default_factory=list)
    decided: list[Decided] = field(default_factory=list)
    #: Reads older than the lead's stored one: ignored (docs/design.md#the-newest-read-wins).
    stale: list[StaleRead] = field(default_factory=list)
    #: Unchanged re-reads with a newer stamp: (lead id, stamp), so older reads stay older.
    restamped: list[tuple[int, datetime]] = field(default_factory=list)
    #: Salesforce Ids of the leads this page makes sendable (new ones ready to call, then
    #: the revived ones), as decided before any hold: what the blast-radius guard counts.
    sendable: tuple[str, ...] = ()

    def revived(self) -> list[LeadChange]:
        """Changes that make a lead sendable again without an operator: the guard counts them."""
        return [c for c in self.changes if c.state == _QUEUED and c.from_state in _REVIVED_FROM]

    def held(self) -> PagePlan:
        """This plan with its new leads ready to call and its revived leads ``held`` instead."""
        revived = {change.salesforce_id for change in self.revived()}
        return replace(
            self,
            inserts=[
                replace(new, state=_HELD) if new.state == _QUEUED else new for new in self.inserts
            ],
            changes=[
                replace(change, state=_HELD) if change.salesforce_id in revived else change
                for change in self.changes
            ],
            decided=[
                (lead, LeadState.HELD, note, change)
                if state is LeadState.QUEUED and (change == "new" or lead.salesforce_id in revived)
                else (lead, state, note, change)
                for lead, state, note, change in self.decided
            ],
        )


def _freeze(draft: _Draft) -> PagePlan:
    """The decided page, with the Ids the guard counts."""
    plan = PagePlan(**vars(draft))
    fresh = [new.salesforce_id for new in plan.inserts if new.state == _QUEUED]
    fresh += sorted({change.salesforce_id for change in plan.revived()})
    return replace(plan, sendable=tuple(fresh))


def plan_page(
    mapped: Sequence[MappedLead],
    existing: Mapping[str, ExistingLead],
    recent: set[AgentPhone],
    rules: IntakeRules,
    window_start: datetime,
    window_end: datetime | None = None,
    *,
    hold: bool = False,
    screen: NumberScreen = OPEN_SCREEN,
) -> PagePlan:
    """Decide, without I/O, what a page of mapped records does to the outbox.

    A cursor at or after ``window_end`` (a record stamped in the future) is
    processed like any other record but does not move the watermark: it would
    otherwise carry the watermark past every record written from now on.
    ``hold`` (the blast-radius guard holds this poll) puts the leads the page
    makes sendable in ``held`` instead of ``queued``. ``screen``: the page's
    numbers on the suppression list, and the consent rule with its time.
    """
    draft = _Draft()
    latest, draft.watermark, draft.beyond_window = latest_reads(mapped, window_end)
    candidates = sort_reads(latest.values(), existing, rules, window_start, draft)
    decide_candidates(candidates, existing, recent, rules, window_start, draft, screen)
    plan = _freeze(draft)
    return plan.held() if hold else plan


def latest_reads(
    mapped: Sequence[MappedLead], window_end: datetime | None
) -> tuple[dict[str, MappedLead], datetime | None, int]:
    """The latest read of each Id, the page's watermark, and how many cursors lie beyond it.

    One Id twice in a page: the later read wins (at the place of the first).
    Records without an Id count for the watermark but are not read.
    """
    latest: dict[str, MappedLead] = {}
    watermark: datetime | None = None
    beyond_window = 0
    for lead in mapped:
        if lead.salesforce_id:
            latest[lead.salesforce_id] = lead
        if lead.cursor is None:
            continue
        if window_end is not None and lead.cursor >= window_end:
            beyond_window += 1
        elif watermark is None or lead.cursor > watermark:
            watermark = lead.cursor
    return latest, watermark, beyond_window


def sort_reads(
    reads: Iterable[MappedLead],
    existing: Mapping[str, ExistingLead],
    rules: IntakeRules,
    window_start: datetime,
    plan: _Draft,
) -> list[MappedLead]:
    """Count the re-reads and record the changes of leads delivery had; return the rest.

    What is returned (new records, and changed ones whose lead is not sent
    yet) goes through the rules in :func:`decide_candidates`.
    """
    candidates: list[MappedLead] = []
    for lead in reads:
        found = existing.get(lead.salesforce_id)
        if found is not None and is_stale(lead.stamp, found.stamp):
            assert lead.stamp is not None and found.stamp is not None  # is_stale says so
            plan.stale.append(StaleRead(found.id, found.state, lead.stamp, found.stamp))
            continue
        if found is not None and found.record_hash == lead.digest:
            plan.unchanged += 1  # a re-read
            if lead.stamp is not None and (found.stamp is None or lead.stamp > found.stamp):
                plan.restamped.append((found.id, lead.stamp))
            continue
        if lead.do_not_call_unrecognised is not None:
            plan.unrecognised.append(lead.salesforce_id)
        if found is not None and not reevaluated(found):
            # Delivery has it, or an operator discarded it: keep the change (and the
            # DoNotCall flag the gate and requeue read), never send it from here.
            plan.recorded.append(record_change(found, lead, lead.cursor or window_start, rules))
            continue
        candidates.append(lead)
    return candidates


def reevaluated(found: ExistingLead) -> bool:
    """Whether a change of the record is evaluated again (not sent yet, not discarded)."""
    return found.state in _REEVALUATED and not found.discarded


def decide_candidates(
    candidates: list[MappedLead],
    existing: Mapping[str, ExistingLead],
    recent: set[AgentPhone],
    rules: IntakeRules,
    window_start: datetime,
    plan: _Draft,
    screen: NumberScreen = OPEN_SCREEN,
) -> None:
    """Apply the rules to the candidates, in page order: new leads and changes into ``plan``."""
    decisions = decide(
        candidates,
        recent=recent,
        respect_do_not_call=rules.respect_do_not_call,
        duplicate_window_label=rules.window_label,
        screen=screen,
    )
    allowed: set[str] = set()  # new-lead states already checked (the check depends on them only)
    for lead, decision in zip(candidates, decisions, strict=True):
        cursor = lead.cursor or window_start
        found = existing.get(lead.salesforce_id)
        if found is None:
            new = new_lead(lead, decision, cursor)
            if new.state not in allowed:
                check_transition(None, new.state)
                allowed.add(new.state)
            plan.inserts.append(new)
            plan.decided.append((lead, decision.state, decision.note, "new"))
        else:
            change = lead_change(found, lead, decision, cursor)
            plan.changes.append(change)
            plan.decided.append((lead, LeadState(change.state), change.note, "updated"))


def _lead_data(lead: MappedLead, state: str, note: str | None, cursor: datetime) -> LeadData:
    """The :class:`LeadData` a mapped record gives its lead, in ``state``."""
    return LeadData(
        agent_id=lead.agent_id,
        state=state,
        payload=lead.payload,
        phone_e164=lead.phone_e164,
        record_cursor=cursor,
        record_hash=lead.digest,
        note=note,
        do_not_call=lead.do_not_call,
        time_zone=lead.time_zone,
        record_stamp=lead.stamp,
        region=lead.region,
        consent=lead.consent,
    )


def new_lead(lead: MappedLead, decision: Decision, cursor: datetime) -> NewLead:
    """The lead a record read for the first time becomes."""
    data = _lead_data(lead, decision.state.value, decision.note, cursor)
    return NewLead(salesforce_id=lead.salesforce_id, record_created_at=lead.created, **vars(data))


def lead_change(
    found: ExistingLead, lead: MappedLead, decision: Decision, cursor: datetime
) -> LeadChange:
    """What a changed record does to its lead not sent yet; a held lead stays held."""
    state = decision.state.value
    if found.state == _HELD and state == _QUEUED:
        state = found.state  # a change never releases a held lead
    if state != found.state:
        check_transition(found.state, state)
    data = _lead_data(lead, state, decision.note, cursor)
    return LeadChange(
        lead_id=found.id, from_state=found.state, salesforce_id=lead.salesforce_id, **vars(data)
    )


def record_change(
    found: ExistingLead, lead: MappedLead, cursor: datetime, rules: IntakeRules
) -> RecordChange:
    """What a changed record does to a lead delivery already has: stored, with a note.

    A discarded lead is treated alike: an operator's discard is final.
    """
    if found.discarded:
        reason = "polled: record changed; stored, the lead stays discarded by an operator"
    else:
        reason = f"polled: record changed while {found.state}; stored, not sent again by the poll"
    if rules.respect_do_not_call and lead.do_not_call:
        reason += f"; {do_not_call_note(lead)}"
    keep_sent = found.state in _SENT_PAYLOAD
    return RecordChange(
        found.id,
        found.state,
        cursor,
        lead.digest,
        lead.do_not_call,
        reason,
        agent_id=None if keep_sent else lead.agent_id,
        payload=None if keep_sent else lead.payload,
        phone_e164=None if keep_sent else lead.phone_e164,
        time_zone=None if keep_sent else lead.time_zone,
        record_stamp=lead.stamp,
        region=None if keep_sent else lead.region,
        consent=None if keep_sent else lead.consent,
    )


# --------------------------------------------------------------------------- the page's lookups


def pairs_to_lock(
    mapped: Sequence[MappedLead], existing: Mapping[str, ExistingLead]
) -> set[AgentPhone]:
    """(agent, number) of the leads this page may queue: new or changed, not yet sent."""
    pairs: set[AgentPhone] = set()
    for lead in mapped:
        if not (lead.phone_e164 and lead.agent_id and lead.state is LeadState.QUEUED):
            continue
        found = existing.get(lead.salesforce_id)
        if found is None or (reevaluated(found) and found.record_hash != lead.digest):
            pairs.add((lead.agent_id, lead.phone_e164))
    return pairs


def reevaluated_ids(mapped: Sequence[MappedLead], existing: Mapping[str, ExistingLead]) -> set[int]:
    """Leads this page evaluates again (changed, not yet sent): they must not block themselves.

    An unchanged lead read again still holds its number, like any other.
    """
    digests = {lead.salesforce_id: lead.digest for lead in mapped}
    return {
        found.id
        for sf_id, found in existing.items()
        if reevaluated(found) and found.record_hash != digests.get(sf_id)
    }
