"""Durations as people write them (``90s``, ``10m``, ``24h``, ``1d``): pure, no I/O.

The configuration reads durations in this form and the rules quote them back
in notes (``duplicate phone within 24h``), so both directions live here, where
the domain can use them without reaching into the configuration.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: Ten years: longer is surely a typo, and timedelta overflows not far beyond.
_MAX_SECONDS = 3650 * 86400.0


def parse_duration(value: Any) -> timedelta:
    """Turn ``90``, ``"90s"``, ``"10m"``, ``"24h"`` or ``"1d"`` into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m, 24h or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    else:
        raise ValueError(
            f"{value!r} is not a duration; use a number of seconds or 30s, 10m, 24h, 1d"
        )
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a duration; use a number of seconds or 30s, 10m, 24h")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > _MAX_SECONDS:
        raise ValueError(f"{value!r} is too long a duration (at most 3650d)")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest whole unit that states ``value`` exactly: ``24h``, ``90s``, ``1.5s``."""
    seconds = value.total_seconds()
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
