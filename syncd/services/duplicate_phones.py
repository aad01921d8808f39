"""The duplicate-phone lookup: which (agent, number) pairs another lead already holds.

Every path that may queue a lead (a poll's page, a stream intake, the
re-fetch of ``requeue``) asks the same question before the rules decide, in
the transaction that writes the outcome, after it locked the numbers it may
queue (:mod:`syncd.services.intake_numbers`), so two syncs or replicas never
both queue one number for one agent: it reads the pairs held within the sync's
window (:func:`syncd.adapters.poll_store.recent_phones`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from sqlalchemy.orm import Session

from syncd.adapters import poll_store
from syncd.domain.rules import AgentPhone, IntakeRules


def numbers_taken(
    session: Session,
    rules: IntakeRules,
    now: Callable[[], datetime],
    *,
    phones: Collection[str],
    agents: Collection[str],
    exclude_ids: Collection[int],
) -> set[AgentPhone]:
    """The pairs among ``phones`` and ``agents`` another lead holds; none when the rule is off.

    ``exclude_ids`` are the leads being evaluated again (they must not block
    themselves). ``now`` is read only when there is a number to look up.
    """
    if not rules.checks_numbers or not phones:
        return set()
    since = now() - rules.duplicate_window
    return poll_store.recent_phones(session, phones, since, exclude_ids, agents=agents)
