"""Retry delays: exponential backoff with full jitter, and ``Retry-After`` parsing.

Pure code: the random source and the current time are passed in, so tests
pick them. Full jitter (a uniform draw between zero and the exponential cap)
spreads retries of many leads and replicas instead of having them knock on
SimZ's door in step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class BackoffPolicy:
    initial: timedelta
    maximum: timedelta
    multiplier: float = 2.0


def capped_exponential(attempt: int, base: float, cap: float, multiplier: float = 2.0) -> float:
    """Seconds to wait before retry ``attempt``: base * multiplier^(attempt-1), at most cap.

    No jitter: for one client retrying alone (a stream's connection, a batch of
    its own), where nobody else knocks at the same time. Never overflows: the
    growth stops at ``cap``.
    """
    if attempt <= 1:
        return min(base, cap)
    seconds = base
    for _ in range(attempt - 1):
        seconds *= multiplier
        if seconds >= cap:
            return cap
    return seconds


def exponential(failures: int, policy: BackoffPolicy) -> timedelta:
    """The cap after ``failures`` failures: initial * multiplier^(failures-1), at most maximum."""
    if failures <= 1:
        return min(policy.initial, policy.maximum)
    seconds = capped_exponential(
        failures, policy.initial.total_seconds(), policy.maximum.total_seconds(), policy.multiplier
    )
    return (
        policy.maximum if seconds >= policy.maximum.total_seconds() else timedelta(seconds=seconds)
    )


def full_jitter(failures: int, policy: BackoffPolicy, rng: Callable[[], float]) -> timedelta:
    """A delay drawn uniformly from [0, exponential(failures)); ``rng`` returns [0, 1)."""
    return exponential(failures, policy) * rng()


def equal_jitter(failures: int, policy: BackoffPolicy, rng: Callable[[], float]) -> timedelta:
    """A delay drawn uniformly from [cap/2, cap), cap = exponential(failures).

    For a single client retrying one connection (a stream, a write-back call):
    it never retries at once, yet two replicas still drift apart.
    """
    return exponential(failures, policy) * (0.5 + rng() / 2)


#: Longest delta-seconds taken literally (a year); longer is read as this before any cap.
_SECONDS_CEILING = 365 * 24 * 3600


def parse_retry_after(
    value: str | None, now: datetime, *, maximum: timedelta | None = None
) -> timedelta | None:
    """How long ``Retry-After`` asks to wait: delta-seconds or an HTTP date.

    ``None`` when the header is absent or unreadable (the caller then backs
    off on its own); a date in the past gives zero; ``maximum`` caps an
    absurd value so one header cannot stall delivery for a year. Whatever the
    header holds, this never raises: only ASCII digits count as seconds, and
    a number too long to be meant is capped before it is converted.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    wait = _delta_seconds(text) if _ASCII_DIGITS.fullmatch(text) else _until_date(text, now)
    if wait is None:
        return None
    if maximum is not None and wait > maximum:
        return maximum
    return wait


_ASCII_DIGITS = re.compile(r"[0-9]+")


def _delta_seconds(digits: str) -> timedelta:
    """ASCII digits as seconds, at most :data:`_SECONDS_CEILING` (checked before ``int``)."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(_SECONDS_CEILING)):
        return timedelta(seconds=_SECONDS_CEILING)
    return timedelta(seconds=min(int(significant), _SECONDS_CEILING))


def _until_date(text: str, now: datetime) -> timedelta | None:
    """The wait until an HTTP date (zero if it is past); None if ``text`` is not one."""
    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:  # RFC 850 / asctime dates are GMT
            when = when.replace(tzinfo=UTC)
        return max(when - now, timedelta(0))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
