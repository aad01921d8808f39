"""The blast-radius guard: how many new leads one poll may queue, and what it holds (pure).

The limit of a poll is the smaller of ``max_new_per_poll`` and, once the sync
has ``min_history`` completed polls that the guard did not hold,
``max_factor`` times the average number of new leads ready to call over the
last :data:`GUARD_HISTORY` of them (never below ``factor_floor``). A poll that
finds *more* new leads ready to call than its limit holds them all.

:class:`PollGuard` is one poll's guard as a value: each page gives the next
one (:meth:`PollGuard.page`), and the poll service writes what it says.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from syncd.domain.page_plan import PagePlan

#: How many recent polls the trailing average covers.
GUARD_HISTORY = 20


def poll_limit(
    *,
    max_new_per_poll: int | None,
    max_factor: float | None,
    min_history: int,
    factor_floor: int,
    history: Sequence[int],
) -> int | None:
    """The most new leads a poll may queue; None when nothing limits it.

    ``history`` holds the new leads ready to call of recent completed polls
    that the guard did not hold, newest first; only the first
    :data:`GUARD_HISTORY` count.
    """
    limits: list[int] = []
    if max_new_per_poll is not None:
        limits.append(max_new_per_poll)
    recent = list(history[:GUARD_HISTORY])
    if max_factor is not None and len(recent) >= min_history:
        average = sum(recent) / len(recent)
        limits.append(max(factor_floor, math.floor(max_factor * average)))
    return min(limits) if limits else None


def over_limit(count: int, limit: int | None) -> bool:
    """True when ``count`` new leads exceed ``limit``."""
    return limit is not None and count > limit


# --------------------------------------------------------------------------- one poll's guard


class Holding(Enum):
    """Whether a poll puts its new leads ready to call in ``held``."""

    #: Before the first page: the poll does not know its size yet.
    UNDECIDED = "undecided"
    HOLDING = "holding"
    QUEUEING = "queueing"


@dataclass(frozen=True)
class NewLeads:
    """The Ids of a poll's new leads ready to call, kept while the poll may still move them.

    Kept only while they may have to move: to ``held`` when a later page crosses
    the limit, back to ``queued`` when a held poll ends within it. Not kept
    (``kept`` False, no Ids) when nothing limits the poll, or once it is held
    for good.
    """

    ids: tuple[str, ...] = ()
    kept: bool = True

    def add(self, fresh: Sequence[str], limit: int | None) -> NewLeads:
        """These plus ``fresh``; forgotten once more than ``limit``: held for good then."""
        if not self.kept:
            return self
        ids = (*self.ids, *fresh)
        if over_limit(len(ids), limit):
            return FORGOTTEN
        return NewLeads(ids)


FORGOTTEN = NewLeads(kept=False)


class Ending(Enum):
    """What the end of a guarded poll does with its new leads."""

    #: Nothing to settle: no limit, queued as usual, or a dry run within it.
    NOTHING = "nothing"
    #: The poll found more than its limit: every new lead ready to call stays held.
    OVER_LIMIT = "over_limit"
    #: Held until the end, which came early (error, stop, pause): they stay held.
    STAYS_HELD = "stays_held"
    #: Held until the end, which found the poll within its limit: release them.
    RELEASE = "release"


@dataclass(frozen=True)
class GuardStep:
    """What the guard makes of one page (:meth:`PollGuard.page`).

    ``plan`` is the page, held when the poll holds; ``to_hold`` the poll's
    earlier new leads, committed ``queued``, that this page's crossing of the
    limit moves to ``held``; ``held_at_once`` the leads a stream intake holds
    when it would take its window over the limit.
    """

    guard: PollGuard
    plan: PagePlan
    to_hold: tuple[str, ...] = ()
    held_at_once: int = 0


@dataclass(frozen=True)
class PollGuard:
    """The blast-radius guard of one poll, one value per step (docs/design.md).

    A poll decides before its first page is written (:meth:`start`): from the
    query's size when the source tells it, and within the limit it cannot cross
    it; otherwise every new lead ready to call is held from the first page on,
    and released at the end if the poll stayed within the limit
    (:meth:`ending`). A stream intake has no size to go by: it decides from its
    one page (``stream``). Should a source return more records than it
    announced, the page that crosses the limit holds the poll's earlier new
    leads too (:attr:`GuardStep.to_hold`).
    """

    limit: int | None
    holding: Holding = Holding.UNDECIDED
    #: New leads ready to call (and revived ones) so far, held or not.
    eligible: int = 0
    new_leads: NewLeads = field(default_factory=NewLeads)

    @classmethod
    def limited(cls, limit: int | None) -> PollGuard:
        """A poll's guard before its first page; with no limit it remembers nothing."""
        return cls(limit, new_leads=NewLeads() if limit is not None else FORGOTTEN)

    @property
    def holds(self) -> bool:
        return self.holding is Holding.HOLDING

    def start(self, size: int | None) -> PollGuard:
        """Decide at the first page, from the query's record count (None: unknown)."""
        if self.holding is not Holding.UNDECIDED:
            return self
        hold = self.limit is not None and (not isinstance(size, int) or size > self.limit)
        return replace(self, holding=Holding.HOLDING if hold else Holding.QUEUEING)

    def for_window(self, limit: int | None) -> PollGuard:
        """A stream intake's guard: what its rolling window has left, decided by its page."""
        if limit is None:
            return replace(self, limit=None)
        return replace(self, limit=limit, holding=Holding.UNDECIDED)

    def count(self, sendable: int) -> PollGuard:
        """A dry run's page: counted, never held (nothing is written)."""
        return replace(self, eligible=self.eligible + sendable)

    def page(self, plan: PagePlan, *, stream: bool = False) -> GuardStep:
        """Hold the page when the poll holds, or when the page takes it over the limit."""
        fresh = plan.sendable
        guard, held_at_once = self, 0
        if stream and guard.holding is Holding.UNDECIDED:
            hold = over_limit(len(fresh), guard.limit)
            guard = replace(guard, holding=Holding.HOLDING if hold else Holding.QUEUEING)
            held_at_once = len(fresh) if hold else 0
        guard = replace(guard, eligible=guard.eligible + len(fresh))
        crossing = not guard.holds and over_limit(guard.eligible, guard.limit)
        if guard.holds or crossing:
            plan = plan.held()
        to_hold: tuple[str, ...] = ()
        if crossing:
            to_hold = guard.new_leads.ids
            guard = replace(guard, holding=Holding.HOLDING)
        guard = replace(guard, new_leads=guard.new_leads.add(fresh, guard.limit))
        return GuardStep(guard, plan, to_hold, held_at_once)

    def ending(self, *, finished: bool, dry_run: bool) -> Ending:
        """What the poll's end does; ``finished``: every page read and the poll ``ok``."""
        if self.limit is None:
            return Ending.NOTHING
        if over_limit(self.eligible, self.limit):
            return Ending.OVER_LIMIT
        if dry_run or not self.holds or not self.new_leads.ids:
            return Ending.NOTHING
        return Ending.RELEASE if finished else Ending.STAYS_HELD


def window_limit(max_new_per_poll: int | None, admitted: int) -> int | None:
    """What a stream's rolling window has left of ``max_new_per_poll`` after ``admitted``."""
    return None if max_new_per_poll is None else max(0, max_new_per_poll - admitted)
