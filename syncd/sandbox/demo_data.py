"""Realistic, deterministic Salesforce records for the demo and the benchmarks.

The demo's phone numbers come from ranges reserved for fiction (NANP 555-01xx,
Ofcom's 020 7946 0xxx drama range), so nobody real is ever in its data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

FIRST_NAMES = (
    "Ava",
    "Liam",
    "Olivia",
    "Noah",
    "Emma",
    "Mateo",
    "Sophia",
    "Lucas",
    "Amara",
    "Hiroshi",
    "Chloé",
    "Jürgen",
    "Priya",
    "Diego",
    "Fatima",
    "Ingrid",
    "Kwame",
    "Mei",
    "Oscar",
    "Zoë",
)
LAST_NAMES = (
    "Smith",
    "García",
    "Okafor",
    "Nguyen",
    "Müller",
    "Rossi",
    "Kowalski",
    "Haddad",
    "Silva",
    "O'Brien",
    "Johansson",
    "Tanaka",
    "Dubois",
    "Patel",
    "Kim",
    "Novak",
    "Ahmed",
    "López",
)
COMPANIES = (
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella Health",
    "Stark Logistics",
    "Wayne Foods",
    "Hooli",
    "Vandelay Imports",
    "Soylent Labs",
    "Tyrell Systems",
)
BAD_PHONES = ("n/a", "call me", "12", "555-CALL-NOW", "000")


@dataclass(frozen=True)
class DemoUsers:
    """Owners of the demo leads: User records the leads point at via OwnerId."""

    records: tuple[dict[str, Any], ...]

    @property
    def ids(self) -> list[str]:
        return [record["Id"] for record in self.records]


def demo_users() -> DemoUsers:
    users = (
        {
            "sobject": "User",
            "Id": "005000000000001AAA",
            "Email": "ines.sales@example.com",
            "Name": "Ines Sales",
        },
        {
            "sobject": "User",
            "Id": "005000000000002AAA",
            "Email": "tom.growth@example.com",
            "Name": "Tom Growth",
        },
    )
    return DemoUsers(users)


def us_phone(rng: random.Random) -> str:
    area = rng.choice(("415", "212", "312", "617", "206", "512"))
    line = f"{rng.randrange(100):02d}"
    return rng.choice((f"({area}) 555-01{line}", f"{area}-555-01{line}", f"+1 {area} 555 01{line}"))


def uk_phone(rng: random.Random) -> str:
    return f"+44 20 7946 0{rng.randrange(1000):03d}"


def lead_record(
    rng: random.Random,
    index: int,
    owner_ids: list[str],
    *,
    phone: str | None = None,
    country: str | None = None,
    do_not_call: bool = False,
    modstamp: datetime | None = None,
) -> dict[str, Any]:
    """One Lead record as the emulator stores it (Id and dates filled in by it when absent)."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    country = country or rng.choice(("US", "US", "US", "GB"))
    if phone is None:
        phone = uk_phone(rng) if country == "GB" else us_phone(rng)
    record: dict[str, Any] = {
        "sobject": "Lead",
        "FirstName": first,
        "LastName": last,
        "Email": f"{first.lower()}.{index}@example.com".replace("é", "e").replace("ë", "e"),
        "Company": rng.choice(COMPANIES),
        "Phone": phone,
        "Country": country,
        "LeadSource": "Web",
        "IsConverted": False,
        "DoNotCall": do_not_call,
        "OwnerId": rng.choice(owner_ids),
    }
    if modstamp is not None:
        record["SystemModstamp"] = modstamp.isoformat()
    return record


def demo_leads(count: int = 200, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``count`` Lead records: mostly good, with bad phones, DoNotCall and duplicate numbers.

    About 5% have an unusable phone, 4% are DoNotCall, 4% reuse an earlier
    lead's number (the duplicate-phone rule holds them back), 2% have no email.
    """
    rng = random.Random(seed)
    owners = demo_users().ids
    earlier_phones: list[str] = []
    for index in range(count):
        roll = rng.random()
        if roll < 0.05:
            record = lead_record(rng, index, owners, phone=rng.choice(BAD_PHONES), country="US")
        elif roll < 0.09:
            record = lead_record(rng, index, owners, do_not_call=True)
        elif roll < 0.13 and earlier_phones:
            record = lead_record(rng, index, owners, phone=rng.choice(earlier_phones), country="US")
        else:
            record = lead_record(rng, index, owners)
            if roll < 0.15:
                record["Email"] = None
        if record["Country"] == "US" and record["Phone"] not in BAD_PHONES:
            earlier_phones.append(record["Phone"])
        yield record


#: Area codes phonenumbers accepts as valid US numbers, for distinct benchmark numbers.
_AREA_CODES = (
    201,
    202,
    203,
    205,
    206,
    212,
    213,
    214,
    215,
    216,
    217,
    218,
    219,
    224,
    225,
    228,
    229,
    231,
    234,
    239,
    240,
    248,
    251,
    252,
    253,
    254,
    256,
    260,
    262,
    267,
    269,
    270,
    301,
    302,
    303,
    304,
    305,
    307,
    308,
    309,
    310,
    312,
    313,
    314,
    315,
    316,
    317,
    318,
)


def bulk_leads(count: int, seed: int = 11) -> Iterator[dict[str, Any]]:
    """Many valid, distinct leads for benchmarks (no rule hits).

    Up to 48 x 800 x 10,000 distinct numbers. They are only well-formed, not
    reserved for fiction: benchmark data goes to the loopback emulators only.
    """
    rng = random.Random(seed)
    owners = demo_users().ids
    for index in range(count):
        area = _AREA_CODES[index // 8_000_000 % len(_AREA_CODES)]
        exchange = 200 + index // 10_000 % 800
        number = f"+1 {area} {exchange} {index % 10_000:04d}"
        yield lead_record(rng, index, owners, phone=number, country="US")
