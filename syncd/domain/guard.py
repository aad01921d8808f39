"""The blast-radius guard's limit: how many new leads one poll may queue (pure, no I/O).

The limit of a poll is the smaller of ``max_new_per_poll`` and, once the sync
has ``min_history`` completed polls that the guard did not hold,
``max_factor`` times the average number of new leads ready to call over the
last :data:`GUARD_HISTORY` of them (never below ``factor_floor``). A poll that
finds *more* new leads ready to call than its limit holds them all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
