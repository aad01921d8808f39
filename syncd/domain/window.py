"""Plan the time window of one poll (docs/design.md#polling-salesforce).

Pure code. The window is ``[from, to)`` on the cursor field: ``from`` starts a
lookback behind the watermark so rows committed late with an older timestamp
are still read, and ``to`` stays a small lag behind the present so a
transaction still in flight at Salesforce is read by the next poll, not missed.
Both ends are whole seconds because SOQL datetime literals carry whole
seconds: ``from`` is rounded down (reads a little more, never less) and ``to``
is rounded down too (the next window starts at or before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal


@dataclass(frozen=True)
class PollWindow:
    """The half-open cursor range ``[start, end)`` one poll reads."""

    start: datetime
    end: datetime


def floor_second(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def plan_window(
    *,
    start_at: datetime,
    watermark: datetime | None,
    lookback: timedelta,
    lag: timedelta,
    now: datetime,
) -> PollWindow | None:
    """The window to read now, or None when there is nothing to read yet.

    ``from = max(start_at, watermark - lookback)`` (just ``start_at`` before the
    first page was processed), ``to = now - lag``. The start never goes back
    before ``start_at``: a sync never reads history it was told to leave alone.
    """
    start = start_at if watermark is None else max(start_at, watermark - lookback)
    start = floor_second(start)
    end = floor_second(now - lag)
    if end <= start:
        return None
    return PollWindow(start=start, end=end)


@dataclass(frozen=True)
class CursorPolicy:
    """How a sync reads its records over time: the cursor field and the window's bounds.

    ``start_at`` is where the first poll starts (``"now"``: never read the
    org's history); ``lookback`` re-reads behind the watermark, ``lag`` keeps
    the window's end behind the present.
    """

    field: str
    start_at: Literal["now"] | datetime
    lookback: timedelta
    lag: timedelta

    def window(
        self, start_at: datetime, watermark: datetime | None, now: datetime
    ) -> PollWindow | None:
        """The window to read now (see :func:`plan_window`) from the sync's stored start."""
        return plan_window(
            start_at=start_at, watermark=watermark, lookback=self.lookback, lag=self.lag, now=now
        )

    def resume_from(
        self, start_at: datetime | None, watermark: datetime | None, now: datetime
    ) -> datetime:
        """Where the regular poll's window begins now (before its rounding to seconds).

        A backfill reads up to here by default, so the two do not read the same records.
        """
        if start_at is None or watermark is None:
            return now - self.lag
        return max(start_at, watermark - self.lookback)
