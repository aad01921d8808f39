"""What the called person's local rules say about a sync's due leads (calling hours).

The zones of a lead: the fixed IANA zone of the sync; or, with ``{field: ...}``,
the zone its record names, falling back to its phone number's zones when that
field is empty or not an IANA zone; otherwise its phone number's zones.

With ``profile: us`` the lead's hours are also the federal window narrowed by
the rules of each state it may be in (its area code's and, with ``state_field``,
its record's: :mod:`syncd.domain.state_rules`), and those states' caps apply.

Builds the check delivery's claim runs on every due lead (see
:func:`syncd.adapters.outbox.claim`), from the sync's ``calling_hours``; the
arithmetic is :mod:`syncd.domain.calling_hours`, the answer's shape
:mod:`syncd.domain.local_rules`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from syncd.config.models import CallingHoursConfig
from syncd.domain.calling_hours import LocalHours, next_opening, zone, zones_for_number
from syncd.domain.frequency import Cap
from syncd.domain.local_rules import CallingRules, DueLead, LocalCall
from syncd.domain.state_rules import FEDERAL, LeadStates, lead_states, strictest
from syncd.logs import get_logger

log = get_logger(__name__)

#: When a lead's zones never share an open window (or none is known), it is
#: looked at again after this long; it is never called meanwhile.
RETRY_UNKNOWN = timedelta(hours=24)


def calling_rules(config: CallingHoursConfig | None) -> CallingRules | None:
    """The claim's check, or None when the sync has no calling hours."""
    if config is None:
        return None
    us = config.profile == "us"
    hours = config.hours.local.narrowed(FEDERAL) if us else config.hours.local
    states = config.state_rules
    described = {code: rule.describe() for code, rule in states.items()}

    @lru_cache(maxsize=1024)
    def strictest_for(found: tuple[str, ...], year: int) -> tuple[LocalHours, tuple[Cap, ...]]:
        return strictest(hours, found, states, year)

    fixed = (config.fixed_zone,) if config.fixed_zone is not None else None
    by_field = config.zone_field is not None
    by_state_field = config.state_field is not None
    rule = config.rule_text

    def check(leads: Sequence[DueLead], now: datetime) -> Mapping[int, LocalCall]:
        answers: dict[int, LocalCall] = {}
        for lead in leads:
            record_zone = lead.time_zone
            own = (record_zone,) if by_field and record_zone and zone(record_zone) else None
            zones, source = _zones(own, fixed, lead.phone_e164)
            week: LocalHours = hours
            caps: tuple[Cap, ...] = ()
            evidence = _evidence(rule, zones, source, now)
            if us:
                found = lead_states(lead.phone_e164, lead.region if by_state_field else None)
                week, caps = strictest_for(found.states, now.year)
                evidence |= _us_evidence(rule, found, described)
            opens = _opening(zones, week, now)
            answers[lead.lead_id] = LocalCall(None if opens == now else opens, caps, evidence)
        return answers

    return check


def _us_evidence(rule: str, found: LeadStates, described: Mapping[str, str]) -> dict[str, Any]:
    """The profile's part of the evidence: the states, how they were found, every rule."""
    applied = [described[state] for state in found.states if state in described]
    return {
        "rule": "; ".join([rule, *applied]),
        "profile": "us",
        "states": list(found.states),
        "state_source": found.source,
    }


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


def _opening(zones: tuple[str, ...], hours: LocalHours, now: datetime) -> datetime:
    opens = next_opening(zones, hours, now)
    if opens is None:
        log.warning(
            "lead has no calling hours in common across its time zones",
            zones=len(zones),
            retry_at=(now + RETRY_UNKNOWN).isoformat(),
        )
        return now + RETRY_UNKNOWN
    return opens
