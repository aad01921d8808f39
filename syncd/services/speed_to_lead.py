"""Speed to lead observed: ``syncd_speed_to_lead_seconds`` as each stage's end is committed.

The moments are stamped in the ledger (:mod:`syncd.adapters.ledger`) and the
outbox; the stages are observed here, once per lead and stage, by the process
whose transaction stamped the later moment, after it committed:

* the intake (poll, stream, backfill, reconciliation) observes ``read`` and,
  for a lead it queued, ``queued`` (:func:`observe_intake`);
* delivery observes ``sent``, ``accepted`` and ``total`` for every lead SimZ
  accepted (:func:`observe_accepted`);
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
from syncd.domain.speed_to_lead import StageTime, Timeline, interval, stage_times
from syncd.domain.states import LeadState
from syncd.metrics import SPEED_TO_LEAD, SPEED_TO_LEAD_SKEW

_QUEUED = LeadState.QUEUED.value
#: The stages delivery observes when SimZ accepts a lead.
ACCEPTED_STAGES = ("sent", "accepted", "total")


def observe(sync_name: str, stages: Iterable[StageTime]) -> None:
    """Observe stages of one sync's leads; a clamped one is counted as clock skew."""
    skewed = 0
    for value in stages:
        SPEED_TO_LEAD.labels(sync=sync_name, stage=value.stage).observe(value.seconds)
        skewed += value.skewed
    if skewed:
        SPEED_TO_LEAD_SKEW.labels(sync=sync_name).inc(skewed)


def observe_intake(
    sync_name: str,
    inserts: Sequence[NewLead],
    read_at: datetime | None,
    written_at: datetime | None,
) -> None:
    """The new leads of a committed page: ``read`` for each, ``queued`` for those queued."""
    if read_at is None or written_at is None:
        return
    found: list[StageTime] = []
    for lead in inserts:
        read = interval("read", lead.record_created_at, read_at)
        if read is not None:
            found.append(read)
        if lead.state == _QUEUED:
            queued = interval("queued", read_at, written_at)
            if queued is not None:
                found.append(queued)
    observe(sync_name, found)


def observe_accepted(sync_name: str, timelines: Iterable[Timeline]) -> None:
    """Leads whose acceptance was committed: ``sent``, ``accepted`` and ``total``."""
    observe(
        sync_name,
        (value for timeline in timelines for value in stage_times(timeline, ACCEPTED_STAGES)),
    )


def observe_batch(claim: Claim, plan: OutcomePlan, accepted_at: datetime) -> None:
    """The leads of ``claim`` that ``plan`` (committed) moved to ``accepted``."""
    accepted = {
        lead_id
        for step in plan.moves
        if step.target is LeadState.ACCEPTED
        for lead_id in step.lead_ids
    }
    if not accepted:
        return
    observe_accepted(
        claim.sync_name,
        (
            Timeline(
                created=lead.record_created_at,
                queued=lead.queued_at,
                sent=claim.sent_at,
                accepted=accepted_at,
            )
            for lead in claim.leads
            if lead.id in accepted
        ),
    )


def observe_first_call(
    sync_name: str, accepted_at: datetime | None, first_call_at: datetime | None
) -> None:
    """A lead's first call outcome, committed: ``first_call`` (accepted -> first call)."""
    value = interval("first_call", accepted_at, first_call_at)
    if value is not None:
        observe(sync_name, [value])
