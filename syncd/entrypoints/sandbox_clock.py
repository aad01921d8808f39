"""A shifted clock for end-to-end tests of time-dependent behaviour (calling hours).

``SYNCD_TEST_NOW=2026-01-05T13:00:00Z syncd once ...`` runs that one command on
a clock that starts at the given instant and then advances in real time. It is
honoured only when SimZ's ``base_url`` is on a loopback address (the sandbox's
emulator); with any other SimZ the command refuses to start, so a stray
variable can never shift a production daemon's idea of the time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from syncd.adapters.orm import utcnow
from syncd.config import Config
from syncd.config.models import is_loopback_host

VARIABLE = "SYNCD_TEST_NOW"


class ClockRefused(ValueError):
    """The variable is set but may not be used here, or cannot be read."""


def clock(config: Config) -> Callable[[], datetime]:
    """The real UTC clock, or the test clock when ``SYNCD_TEST_NOW`` is set and allowed."""
    value = os.environ.get(VARIABLE)
    if not value:
        return utcnow
    host = config.simz.base_url.host
    if host is None or not is_loopback_host(host):
        raise ClockRefused(
            f"{VARIABLE} is set, but SimZ is not on a loopback address: "
            "the test clock only runs against the sandbox"
        )
    try:
        start = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ClockRefused(f"{VARIABLE}={value!r} is not an ISO 8601 time") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    offset = start - datetime.now(UTC)
    began = time.monotonic()
    base = datetime.now(UTC) + offset

    def now() -> datetime:
        return base + timedelta(seconds=time.monotonic() - began)

    return now
