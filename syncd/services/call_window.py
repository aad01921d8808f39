"""What the called person's local rules say about a sync's due leads (calling hours).

The zones of a lead: the fixed IANA zone of the sync; or, with ``{field: ...}``,
the zone its record names, falling back to its phone number's zones when that
field is empty or not an IANA zone; otherwise its phone number's zones.

Builds the check delivery's claim runs on every due lead (see
:func:`syncd.adapters.outbox.claim`), from the sync's ``calling_hours``; the
arithmetic is :mod:`syncd.domain.calling_hours`, the answer's shape
:mod:`syncd.domain.local_rules`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from syncd.config.models import CallingHoursConfig
from syncd.domain.calling_hours import CallingHours, next_opening, zone, zones_for_number
from syncd.domain.local_rules import CallingRules, DueLead, LocalCall
from syncd.logs import get_logger

log = get_logger(__name__)

#: When a lead's zones never share an open window (or none is known), it is
#: looked at again after this long; it is never called meanwhile.
RETRY_UNKNOWN = timedelta(hours=24)


def calling_rules(config: CallingHoursConfig | None) -> CallingRules | None:
    """The claim's check, or None when the sync has no calling hours."""
    if config is None:
        return None
    hours = config.hours
    fixed = (config.fixed_zone,) if config.fixed_zone is not None else None
    by_field = config.zone_field is not None
    rule = f"{config.window} {config.days}"

    def check(leads: Sequence[DueLead], now: datetime) -> Mapping[int, LocalCall]:
        answers: dict[int, LocalCall] = {}
        for lead in leads:
            record_zone = lead.time_zone
            own = (record_zone,) if by_field and record_zone and zone(record_zone) else None
            zones, source = _zones(own, fixed, lead.phone_e164)
            opens = _opening(zones, hours, now)
            evidence = _evidence(rule, zones, source, now)
            answers[lead.lead_id] = LocalCall(None if opens == now else opens, (), evidence)
        return answers

    return check


def _zones(
    own: tuple[str, ...] | None, fixed: tuple[str, ...] | None, phone: str | None
) -> tuple[tuple[str, ...], str]:
    if own is not None:
        return own, "field"
    if fixed is not None:
        return fixed, "fixed"
    return (zones_for_number(phone) if phone else ()), "phone"


def _evidence(rule: str, zones: tuple[str, ...], source: str, now: datetime) -> dict[str, Any]:
    first = zone(zones[0]) if zones else None
    return {
        "rule": rule,
        "zones": list(zones),
        "zone_source": source,
        "local_time": now.astimezone(first).isoformat() if first else None,
    }


def _opening(zones: tuple[str, ...], hours: CallingHours, now: datetime) -> datetime:
    opens = next_opening(zones, hours, now)
    if opens is None:
        log.warning(
            "lead has no calling hours in common across its time zones",
            zones=len(zones),
            retry_at=(now + RETRY_UNKNOWN).isoformat(),
        )
        return now + RETRY_UNKNOWN
    return opens
