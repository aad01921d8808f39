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
