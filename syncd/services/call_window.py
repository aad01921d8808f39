"""Which due leads of a sync may not be called now, and when they may (calling hours).

The zones of a lead: the fixed IANA zone of the sync; or, with ``{field: ...}``,
the zone its record names, falling back to its phone number's zones when that
field is empty or not an IANA zone; otherwise its phone number's zones.

Builds the check delivery's claim runs on every due lead (see
:func:`syncd.adapters.outbox.claim`), from the sync's ``calling_hours``; the
arithmetic is :mod:`syncd.domain.calling_hours`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from syncd.adapters.outbox import ClosedHours
from syncd.config.models import CallingHoursConfig
from syncd.domain.calling_hours import CallingHours, next_opening, zone, zones_for_number
from syncd.logs import get_logger

log = get_logger(__name__)

#: When a lead's zones never share an open window (or none is known), it is
#: looked at again after this long; it is never called meanwhile.
RETRY_UNKNOWN = timedelta(hours=24)


def closed_hours(config: CallingHoursConfig | None, now: datetime) -> ClosedHours | None:
    """The claim's check for ``now``, or None when the sync has no calling hours."""
    if config is None:
        return None
    hours = config.hours
    fixed = (config.fixed_zone,) if config.fixed_zone is not None else None

    by_field = config.zone_field is not None

    def check(leads: Sequence[tuple[int, str | None, str | None]]) -> Mapping[int, datetime]:
        closed: dict[int, datetime] = {}
        for lead_id, phone, record_zone in leads:
            own = (record_zone,) if by_field and record_zone and zone(record_zone) else None
            opens = _opening(own or fixed, phone, hours, now)
            if opens != now:
                closed[lead_id] = opens
        return closed

    return check


def _opening(
    fixed: tuple[str, ...] | None, phone: str | None, hours: CallingHours, now: datetime
) -> datetime:
    zones = fixed if fixed is not None else (zones_for_number(phone) if phone else ())
    opens = next_opening(zones, hours, now)
    if opens is None:
        log.warning(
            "lead has no calling hours in common across its time zones",
            zones=len(zones),
            retry_at=(now + RETRY_UNKNOWN).isoformat(),
        )
        return now + RETRY_UNKNOWN
    return opens
