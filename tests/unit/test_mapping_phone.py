"""The plain-NANP shortcut of normalise_phone gives exactly phonenumbers' answer.

``plain_nanp`` skips ``phonenumbers.parse`` for "+1" and ten digits (and, for the
default region US, the ten digits alone). These tests compare it with the full
path, parse and validation as normalise_phone did before the shortcut, over every
area code, many spellings and several regions, and check that near misses are
left to the full path.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import phonenumbers
import pytest

from syncd.domain.mapping import normalise_phone, plain_nanp

REGIONS = ["US", "CA", "GB", "DE", "JM", "us"]


def reference(text: str, region: str) -> str | None:
    """normalise_phone for a stripped, non-empty text, as it was before the shortcut."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number_for_region(
        number, region
    ) and not phonenumbers.is_valid_number(number):
        return None
    formatted: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return formatted


PLUS_SPELLINGS = [
    "+1{a}{e}{l}",
    "+1 {a} {e} {l}",
    "+1-{a}-{e}-{l}",
    "+1.{a}.{e}.{l}",
    "+1 ({a}) {e}-{l}",
    "+1({a}){e}{l}",
    "+1 ({a}){e}.{l}",
    "+1{a} {e}{l}",
    "+1 {a}-{e} {l}",
]
NATIONAL_SPELLINGS = [
    "({a}) {e}-{l}",
    "{a}-{e}-{l}",
    "{a}.{e}.{l}",
    "{a}{e}{l}",
    "{a} {e} {l}",
    "({a}){e}-{l}",
    "({a}{e}{l}",
    "{a}){e} {l}",
    "{a} {e}.{l}",
]
# Close to plain but not plain: each must take the full path.
NEAR_MISSES = [
    "1 {a} {e} {l}",
    "1-{a}-{e}-{l}",
    "1{a}{e}{l}",
    "+1  {a} {e} {l}",
    "+1 {a}  {e} {l}",
    "+1 {a} {e} {l} ext. 12",
    "+1 {a} {e} {l}#",
    "+1 {a} {e} {l}x",
    "+1 {a} {e} {l}0",
    "+1 {a} {e} {l}\u0660",
    "\uff0b1 {a} {e} {l}",
    "+ 1 {a} {e} {l}",
    "+11 {a} {e} {l}",
    "+1 {a} {e} {l};ext=5",
    "tel:+1-{a}-{e}-{l}",
    "+1/{a}/{e}/{l}",
    "{a}_{e}_{l}",
    "[{a}] {e}-{l}",
    "{a} {e} {l}.",
    "({a}) {e} - {l}",
]


def numbers(seed: int) -> Iterator[tuple[str, str, str]]:
    """Two (area, exchange, line) per area code 200-999, exchanges of every kind."""
    rng = random.Random(seed)
    for area in range(200, 1000):
        for _ in range(2):
            yield f"{area:03d}", f"{rng.randrange(1000):03d}", f"{rng.randrange(10000):04d}"


def test_shortcut_is_parse() -> None:
    """Every plain spelling of every area code: the same PhoneNumber and E.164 as parse."""
    rng = random.Random(1)
    taken = 0
    for area, exchange, line in numbers(2):
        spellings = rng.sample(PLUS_SPELLINGS, 4) + rng.sample(NATIONAL_SPELLINGS, 4)
        for spelling in spellings:
            text = spelling.format(a=area, e=exchange, l=line)
            for region in ("US", rng.choice(REGIONS)):
                number = plain_nanp(text, region)
                national = not text.startswith("+")
                if national and region != "US":
                    assert number is None, (text, region)
                else:
                    assert number is not None, (text, region)
                    assert number == phonenumbers.parse(text, region), (text, region)
                    taken += 1
                assert normalise_phone(text, region) == reference(text, region), (text, region)
    assert taken > 15_000


def test_near_misses_take_the_full_path() -> None:
    """Spellings that are not plain are left to phonenumbers, with its answer kept."""
    for area, exchange, line in numbers(3):
        if int(area) % 8:
            continue
        for spelling in NEAR_MISSES:
            text = spelling.format(a=area, e=exchange, l=line)
            for region in ("US", "GB"):
                assert plain_nanp(text, region) is None, (text, region)
                assert normalise_phone(text, region) == reference(text, region), (text, region)


@pytest.mark.parametrize(
    "text",
    ["+1 015 555 0123", "+1 115 555 0123", "015 555 0123", "115-555-0123", "011 555 0123"],
)
def test_area_codes_starting_0_or_1_take_the_full_path(text: str) -> None:
    """Area codes 0xx/1xx could be prefixes (011, 1) to parse: never shortcut."""
    assert plain_nanp(text, "US") is None
    assert normalise_phone(text, "US") == reference(text, "US")


def test_valid_and_invalid_both_seen() -> None:
    """The generated numbers hold valid and invalid ones, so both answers are compared."""
    results = {normalise_phone(f"+1 {a} {e} {line}", "US") is None for a, e, line in numbers(2)}
    assert results == {True, False}
