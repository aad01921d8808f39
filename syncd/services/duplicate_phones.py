"""The duplicate-phone lookup: which (agent, number) pairs another lead already holds.

Every path that may queue a lead (a poll's page, a stream intake, the
re-fetch of ``requeue``) asks the same question before the rules decide, in
the transaction that writes the outcome: on PostgreSQL it first locks the
pairs it may queue (:mod:`syncd.adapters.number_locks`), so two syncs or
replicas never both queue one number for one agent, then reads the pairs held
within the sync's window (:func:`syncd.adapters.poll_store.recent_phones`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from syncd.adapters import poll_store
from syncd.adapters.number_locks import lock_numbers
from syncd.domain.rules import AgentPhone, IntakeRules


def numbers_taken(
    session: Session,
    rules: IntakeRules,
    now: Callable[[], datetime],
    *,
    phones: Collection[str],
    agents: Collection[str],
    exclude_ids: Collection[int],
    lock: Iterable[AgentPhone] | None = None,
) -> set[AgentPhone]:
    """The pairs among ``phones`` and ``agents`` another lead holds; none when the rule is off.

    ``lock``: the pairs to lock first, held until the caller's transaction
    ends. ``exclude_ids`` are the leads being evaluated again (they must not
    block themselves). ``now`` is read only when there is a number to look up.
    """
    if not rules.checks_numbers:
        return set()
    if lock is not None:
        lock_numbers(session, lock)
    if not phones:
        return set()
    since = now() - rules.duplicate_window
    return poll_store.recent_phones(session, phones, since, exclude_ids, agents=agents)
