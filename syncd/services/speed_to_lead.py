"""Speed to lead observed: ``syncd_speed_to_lead_seconds`` as each stage's end is committed.

The moments are stamped in the ledger (:mod:`syncd.adapters.ledger`) and the
outbox; the stages are observed here, once per lead and stage, by the process
whose transaction stamped the later moment, after it committed:

* the intake (poll, stream, backfill, reconciliation) observes ``read`` and,
  for a lead it queued, ``queued`` (:func:`observe_intake`);
* delivery observes ``sent``, ``accepted`` and ``total`` for every lead SimZ
  accepted (:func:`observe_batch`);
* the processing of call outcomes observes ``first_call`` when it stamps a
  lead's first call (:func:`observe_first_call`).

Stages are defined in :mod:`syncd.domain.speed_to_lead`. A negative interval
(Salesforce's clock ahead of syncd's) is observed as 0 and counted in
``syncd_speed_to_lead_clock_skew_total``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from syncd.adapters.outbox import Claim
from syncd.domain.outcome import OutcomePlan
from syncd.domain.page_plan import NewLead
from syncd.domain.speed_to_lead import StageTime, interval
from syncd.domain.states import LeadState
from syncd.metrics import SPEED_TO_LEAD, SPEED_TO_LEAD_SKEW

_QUEUED = LeadState.QUEUED.value


class _Stages:
    """One sync's observations of one commit, each stage's series looked up once.

    Every lead adds up to five observations; looking the labelled series up
    for each of them was most of their cost (docs/performance.md).
    """

    def __init__(self, sync_name: str) -> None:
        self.sync_name = sync_name
        self.skewed = 0
        self._series: dict[str, object] = {}

    def add(self, stage: str, start: datetime | None, end: datetime | None) -> None:
        """The stage from ``start`` to ``end``; nothing when either is unknown."""
        if start is None or end is None:
            return
        self.add_seconds(stage, (end - start).total_seconds())

    def add_seconds(self, stage: str, seconds: float) -> None:
        series = self._series.get(stage)
        if series is None:
            series = self._series[stage] = SPEED_TO_LEAD.labels(sync=self.sync_name, stage=stage)
        if seconds < 0:  # Salesforce's clock ahead of syncd's: observed as 0, counted
            seconds = 0.0
            self.skewed += 1
        series.observe(seconds)  # type: ignore[attr-defined]

    def done(self) -> None:
        if self.skewed:
            SPEED_TO_LEAD_SKEW.labels(sync=self.sync_name).inc(self.skewed)


def observe(sync_name: str, stages: Iterable[StageTime]) -> None:
    """Observe stages of one sync's leads; a clamped one is counted as clock skew."""
    found = _Stages(sync_name)
    for value in stages:
        found.add_seconds(value.stage, value.seconds)
        found.skewed += value.skewed
    found.done()


def observe_intake(
    sync_name: str,
    inserts: Sequence[NewLead],
    read_at: datetime | None,
    written_at: datetime | None,
) -> None:
    """The new leads of a committed page: ``read`` for each, ``queued`` for those queued."""
    if read_at is None or written_at is None or not inserts:
        return
    found = _Stages(sync_name)
    queued = (written_at - read_at).total_seconds()  # the same for every lead of the page
    for lead in inserts:
        found.add("read", lead.record_created_at, read_at)
        if lead.state == _QUEUED:
            found.add_seconds("queued", queued)
    found.done()


def observe_batch(claim: Claim, plan: OutcomePlan, accepted_at: datetime) -> None:
    """The leads of ``claim`` that ``plan`` (committed) moved to ``accepted``: ``sent``
    (queued to the request), ``accepted`` (the request to the answer recorded) and
    ``total`` (the record's creation to the answer)."""
    accepted = {
        lead_id
        for step in plan.moves
        if step.target is LeadState.ACCEPTED
        for lead_id in step.lead_ids
    }
    if not accepted:
        return
    found = _Stages(claim.sync_name)
    sent_at = claim.sent_at
    answered = None if sent_at is None else (accepted_at - sent_at).total_seconds()
    for lead in claim.leads:
        if lead.id in accepted:
            found.add("sent", lead.queued_at, sent_at)
            if answered is not None:
                found.add_seconds("accepted", answered)
            found.add("total", lead.record_created_at, accepted_at)
    found.done()


def observe_first_call(
    sync_name: str, accepted_at: datetime | None, first_call_at: datetime | None
) -> None:
    """A lead's first call outcome, committed: ``first_call`` (accepted -> first call)."""
    value = interval("first_call", accepted_at, first_call_at)
    if value is not None:
        observe(sync_name, [value])
