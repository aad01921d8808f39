"""Which US state a lead is in, and that state's public holidays (pure, no I/O).

A number's state comes from its area code, as the phonenumbers library's
geocoder names it ("Florida", or "Miami, FL" for some prefixes); toll-free and
other non-geographic numbers have none. A record's address state may be a
USPS code ("FL") or a name ("Florida"), in any case. Holidays are those the
``holidays`` package lists for the state (federal and state public holidays,
with the days they are observed on), computed once per state and year.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import phonenumbers

#: USPS code -> name: the states, DC and the territories the TCPA covers.
STATES: dict[str, str] = {
    "AL": "Alabama",
    "AK": "Alaska",
    "AZ": "Arizona",
    "AR": "Arkansas",
    "CA": "California",
    "CO": "Colorado",
    "CT": "Connecticut",
    "DE": "Delaware",
    "DC": "District of Columbia",
    "FL": "Florida",
    "GA": "Georgia",
    "HI": "Hawaii",
    "ID": "Idaho",
    "IL": "Illinois",
    "IN": "Indiana",
    "IA": "Iowa",
    "KS": "Kansas",
    "KY": "Kentucky",
    "LA": "Louisiana",
    "ME": "Maine",
    "MD": "Maryland",
    "MA": "Massachusetts",
    "MI": "Michigan",
    "MN": "Minnesota",
    "MS": "Mississippi",
    "MO": "Missouri",
    "MT": "Montana",
    "NE": "Nebraska",
    "NV": "Nevada",
    "NH": "New Hampshire",
    "NJ": "New Jersey",
    "NM": "New Mexico",
    "NY": "New York",
    "NC": "North Carolina",
    "ND": "North Dakota",
    "OH": "Ohio",
    "OK": "Oklahoma",
    "OR": "Oregon",
    "PA": "Pennsylvania",
    "RI": "Rhode Island",
    "SC": "South Carolina",
    "SD": "South Dakota",
    "TN": "Tennessee",
    "TX": "Texas",
    "UT": "Utah",
    "VT": "Vermont",
    "VA": "Virginia",
    "WA": "Washington",
    "WV": "West Virginia",
    "WI": "Wisconsin",
    "WY": "Wyoming",
    "PR": "Puerto Rico",
    "GU": "Guam",
    "VI": "U.S. Virgin Islands",
    "AS": "American Samoa",
    "MP": "Northern Mariana Islands",
}
#: Other names the geocoder or a record may use.
_ALIASES = {
    "washington state": "WA",
    "washington d.c.": "DC",
    "washington, d.c.": "DC",
    "washington dc": "DC",
    "d.c.": "DC",
    "us virgin islands": "VI",
    "virgin islands": "VI",
}
_BY_NAME = {name.lower(): code for code, name in STATES.items()} | _ALIASES
#: The regions of +1 numbers that are US states or territories.
_US_REGIONS = frozenset({"US", "PR", "GU", "VI", "AS", "MP"})


def state_code(text: str | None) -> str | None:
    """The USPS code that ``text`` (a code or a name, any case) names, else None."""
    if text is None:
        return None
    cleaned = " ".join(text.split()).strip().rstrip(".")
    if cleaned.upper() in STATES:
        return cleaned.upper()
    return _BY_NAME.get(cleaned.lower()) or _BY_NAME.get(cleaned.lower() + ".")


@lru_cache(maxsize=65536)
def state_for_number(e164: str) -> str | None:
    """The state of a number's area code; None for toll-free, non-geographic or foreign ones."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    if phonenumbers.region_code_for_number(number) not in _US_REGIONS:
        return None
    # Imported on first use: the geocoder's data takes most of a second to load, which
    # every command that reads the configuration would otherwise pay.
    from phonenumbers import geocoder

    place = geocoder.description_for_number(number, "en")
    if not place:
        return None
    found = state_code(place)
    if found is None and ", " in place:
        found = state_code(place.rsplit(", ", 1)[1])
    return found


@lru_cache(maxsize=2048)
def holiday_dates(state: str, years: tuple[int, ...]) -> frozenset[date]:
    """The public holidays (and the days they are observed on) of ``state`` in ``years``."""
    if state not in STATES:
        raise ValueError(f"{state!r} is not a US state code")
    import holidays  # on first use, like the geocoder

    return frozenset(holidays.country_holidays("US", subdiv=state, years=years))
