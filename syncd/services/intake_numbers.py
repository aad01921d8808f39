"""The numbers intake may queue: their locks, DoNotCall propagation, the suppression list.

Every path that may queue a lead (a poll's page, a stream intake, a backfill
page, the re-fetch of ``requeue``, ``restore`` and ``resend_uncertain``) calls
:func:`screen_numbers` in the transaction that writes its outcome, before the
rules decide (docs/safety.md#the-suppression-list):

1. on PostgreSQL, lock every number it may queue or put on the list, in one
   call (ascending key order, so two intakes never deadlock), held until commit;
2. with ``rules.propagate_do_not_call``, put the numbers of the records that
   say DoNotCall on the suppression list (an entry already there is kept);
3. read which of the numbers it may queue are on the list: those leads are
   skipped with the entry's reason;
4. the duplicate-phone lookup (:mod:`syncd.services.duplicate_phones`).

Nothing here catches an error: a failed read or write of the list fails the
caller's transaction, so nothing is queued unchecked (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from syncd.adapters import suppression_store
from syncd.adapters.number_locks import lock_phones
from syncd.adapters.suppression_store import SuppressionEntry
from syncd.domain.mapping import MappedLead
from syncd.domain.rules import AgentPhone, IntakeRules, NumberScreen
from syncd.domain.suppression import do_not_call_opt_outs
from syncd.services.duplicate_phones import numbers_taken
from syncd.services.suppression_lag import observe_additions


@dataclass(frozen=True)
class Screened:
    """What the rules need to know about the numbers, and the list entries this read added."""

    taken: set[AgentPhone]
    screen: NumberScreen
    added: list[SuppressionEntry] = field(default_factory=list)


@dataclass(frozen=True)
class Intake:
    """Who reads and how: the sync, whether to lock and write, whether the lag is measured.

    ``write`` False (a dry run): nothing is locked or added; the numbers a real
    read would add count as on the list. The lag of an addition is measured
    against ``suppression.max_lag`` unless ``measure_lag`` is off (a backfill
    reads history) or the record changed before ``measured_since`` (when syncd
    started watching the sync: that is history too).
    """

    sync_name: str
    rules: IntakeRules
    lock: bool = True
    write: bool = True
    measure_lag: bool = True
    measured_since: datetime | None = None


def screen_numbers(
    session: Session,
    intake: Intake,
    now: Callable[[], datetime],
    *,
    mapped: Sequence[MappedLead],
    queue: Collection[AgentPhone],
    exclude_ids: Collection[int],
) -> Screened:
    """Lock, propagate, read the list and the duplicates for leads that may be queued.

    ``queue``: the (agent, number) pairs the read may queue (new or changed
    leads ready to call); ``mapped``: every record read (any of them may say
    DoNotCall); ``exclude_ids``: the leads evaluated again (they must not block
    themselves in the duplicate lookup).
    """
    rules = intake.rules
    at = now()
    phones = {phone for _agent, phone in queue}
    opt_outs = do_not_call_opt_outs(mapped, intake.sync_name) if rules.propagate_do_not_call else {}
    if intake.lock and intake.write:
        lock_phones(session, phones | set(opt_outs))
    added: list[SuppressionEntry] = []
    if intake.write:
        added = suppression_store.add(session, list(opt_outs.values()), lambda: at)
        if intake.measure_lag:
            observe_additions(added, since=intake.measured_since)
    listed = {
        phone: entry.describe()
        for phone, entry in suppression_store.suppressed_among(session, phones).items()
    }
    if not intake.write:  # a dry run: what a real read would have added counts
        listed.update(
            (phone, f"number is on the suppression list (do_not_call: {opt_out.reason})")
            for phone, opt_out in opt_outs.items()
            if phone in phones and phone not in listed
        )
    taken = numbers_taken(
        session,
        rules,
        lambda: at,
        phones=phones,
        agents={agent for agent, _phone in queue},
        exclude_ids=exclude_ids,
    )
    return Screened(taken, NumberScreen(listed, rules.consent, at), added)
