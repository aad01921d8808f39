"""Regions whose law limits the hours of sales calls, and how a sync can reach their numbers.

``check-config`` and the daemon's start-up log warn when a sync can send such
numbers but sets no ``calling_hours`` (docs/holding-and-calling-hours.md):
without it a web form filled in at midnight is dialled at once. A sync reaches a
region when its numbers without a country code are read as that region's
(``phone.default_region``) or when its route sends that country's leads to an
agent (``route.values``, keyed by a country code or name). Only the United
States are listed: ``calling_hours: {profile: us}`` applies the TCPA's federal
window (one daily window in the called person's local time) and the stricter
rules of the lead's states (docs/safety.md#state-calling-rules), so that is
what the warning suggests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LegalHours:
    """A region with legal calling hours, why a sync reaches it, and what to configure."""

    region: str
    because: str
    suggestion: str
    law: str


#: The US and its territories under the TCPA (all +1 numbers), by ISO 3166 code.
_US_REGIONS = frozenset({"US", "PR", "GU", "VI", "AS", "MP"})
#: Route values (a country field, trimmed, any case) that mean the United States.
_US_NAMES = frozenset(
    {
        *(code.lower() for code in _US_REGIONS),
        "usa",
        "u.s.",
        "u.s.a.",
        "united states",
        "united states of america",
        "puerto rico",
    }
)
_US_SUGGESTION = "{profile: us, timezone: from_phone}"
_US_LAW = (
    "the TCPA's hours, 8 a.m. to 9 p.m. in the called person's local time, and the "
    "states' stricter rules"
)


def legal_hours_regions(default_region: str, route_values: Mapping[str, str]) -> list[LegalHours]:
    """The regions with legal calling hours a sync with these settings can send numbers of."""
    reasons = []
    if default_region.upper() in _US_REGIONS:
        reasons.append(f"phone.default_region: {default_region}")
    routed = [key for key in route_values if key.strip().lower() in _US_NAMES]
    if routed:
        pairs = ", ".join(f"{key} -> {route_values[key]}" for key in routed)
        reasons.append(f"route.values: {pairs}")
    if not reasons:
        return []
    return [LegalHours("US", "; ".join(reasons), _US_SUGGESTION, _US_LAW)]
