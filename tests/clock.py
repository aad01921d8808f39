"""Test clocks: what the code under test is given as ``now``, set and advanced by the test.

:class:`Clock` stands for a wall clock (``Callable[[], datetime]``, e.g. the
``now`` of the services and adapters); :class:`MonotonicClock` for a seconds
counter (``Callable[[], float]``, ``time.monotonic``'s kind). Either one says
``at`` when called, until the test sets ``at`` or calls :meth:`advance`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

#: Where a :class:`Clock` starts unless told otherwise.
START = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """A settable wall clock."""

    def __init__(self, at: datetime = START) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta = timedelta(), /, **parts: float) -> None:
        """Move on by ``delta`` and/or ``timedelta(**parts)``: ``advance(minutes=2)``."""
        self.at += delta + timedelta(**parts)


class MonotonicClock:
    """A settable seconds counter."""

    def __init__(self, at: float = 0.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds
