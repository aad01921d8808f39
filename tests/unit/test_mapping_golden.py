"""Golden values of syncd.domain.mapping, pinned from the code as it shipped.

Stored leads hold ``record_hash`` (:func:`lead_digest`) and ``payload``; a poll
compares a re-read record's digest with the stored one, so a digest that
changes for the same inputs makes every stored lead look changed. These tests
pin digests, E.164 results and whole mapped leads (payload key order
included, as it is the stored JSON) to values computed before any speed work.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import OrderedDict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from syncd.config.models import SyncConfig
from syncd.domain.mapping import Mapper, lead_digest, normalise_phone
from syncd.domain.states import LeadState
from syncd.sandbox.example import example_sync

# (value, default region, E.164 or None)
PHONES: list[tuple[Any, str, str | None]] = [
    # US national and international spellings
    ("(415) 555-0123", "US", "+14155550123"),
    ("415-555-0123", "US", "+14155550123"),
    ("415.555.0123", "US", "+14155550123"),
    ("4155550123", "US", "+14155550123"),
    ("415 555 0123", "US", "+14155550123"),
    ("+1 415 555 0123", "US", "+14155550123"),
    ("+14155550123", "US", "+14155550123"),
    ("1 415 555 0123", "US", "+14155550123"),
    ("1-415-555-0123", "US", "+14155550123"),
    ("14155550123", "US", "+14155550123"),
    ("+1 (415) 555-0123", "US", "+14155550123"),
    ("  (415) 555-0123  ", "US", "+14155550123"),
    ("+1 201 200 0000", "US", "+12012000000"),
    ("+1 318 999 9999", "US", "+13189999999"),
    ("+1 212 555 0199", "US", "+12125550199"),
    ("011 44 20 7183 8750", "US", "+442071838750"),
    ("+1 800 555 0199", "US", "+18005550199"),
    ("(800) 555-0199", "US", "+18005550199"),
    ("+1 900 555 0100", "US", "+19005550100"),
    ("+1 415 155 0123", "US", None),
    ("+1 115 555 0123", "US", None),
    ("415 055 0123", "US", None),
    ("+1 415 555 012", "US", None),
    ("+1 415 555 01234", "US", None),
    ("555 0123", "US", None),
    ("+1 555 555 5555", "US", None),
    ("+1 987 654 3210", "US", None),
    # other NANP countries
    ("+1 604 555 0123", "US", "+16045550123"),
    ("(604) 555-0123", "US", "+16045550123"),
    ("+1 876 555 0123", "US", "+18765550123"),
    ("876 555 0123", "US", "+18765550123"),
    ("(604) 555-0123", "CA", "+16045550123"),
    ("+1 242 555 0123", "US", None),
    ("+1 684 633 1234", "US", "+16846331234"),
    # extensions
    ("415-555-0123 ext. 45", "US", "+14155550123"),
    ("415-555-0123 x45", "US", "+14155550123"),
    ("415-555-0123 #45", "US", "+14155550123"),
    ("+1 415 555 0123;ext=99", "US", "+14155550123"),
    ("tel:+1-415-555-0123", "US", "+14155550123"),
    ("tel:+1-415-555-0123;ext=7", "US", "+14155550123"),
    ("415 555 0123 extension 12", "US", "+14155550123"),
    # letters
    ("1-800-FLOWERS", "US", "+18003569377"),
    ("555-CALL-NOW", "US", None),
    ("call me", "US", None),
    ("n/a", "US", None),
    ("(415) 555-01a3", "US", None),
    ("+1 415 CALL NOW", "US", "+14152255669"),
    ("FOUR ONE FIVE", "US", None),
    # blanks and junk
    ("", "US", None),
    ("   ", "US", None),
    ("\t\n", "US", None),
    ("12", "US", None),
    ("000", "US", None),
    ("+", "US", None),
    ("++1 415 555 0123", "US", "+14155550123"),
    ("-", "US", None),
    ("()", "US", None),
    ("0", "US", None),
    ("1", "US", None),
    ("+1", "US", None),
    ("9" * 30, "US", None),
    ("1" * 300, "US", None),
    # other regions
    ("020 7183 8750", "GB", "+442071838750"),
    ("+44 20 7183 8750", "US", "+442071838750"),
    ("+44 20 7946 0123", "US", "+442079460123"),
    ("020 7946 0123", "GB", "+442079460123"),
    ("07700 900123", "GB", None),
    ("+44 7700 900123", "GB", None),
    ("030 1234567", "DE", "+49301234567"),
    ("+49 30 1234567", "US", "+49301234567"),
    ("01 23 45 67 89", "FR", "+33123456789"),
    ("+33 1 23 45 67 89", "FR", "+33123456789"),
    ("03-1234-5678", "JP", "+81312345678"),
    ("+81 3-1234-5678", "US", "+81312345678"),
    ("(02) 9876 5432", "AU", "+61298765432"),
    ("+61 2 9876 5432", "AU", "+61298765432"),
    ("98765 43210", "IN", "+919876543210"),
    ("+91 98765 43210", "US", "+919876543210"),
    ("(11) 91234-5678", "BR", "+5511912345678"),
    ("+55 11 91234 5678", "BR", "+5511912345678"),
    ("06 12345678", "NL", "+31612345678"),
    ("+39 06 1234 5678", "IT", "+390612345678"),
    ("06 1234 5678", "IT", "+390612345678"),
    ("415 555 0123", "GB", None),
    ("4155550123", "CA", "+14155550123"),
    ("+1 415 555 0123", "GB", "+14155550123"),
    ("00 1 415 555 0123", "GB", "+14155550123"),
    ("0044 20 7183 8750", "DE", "+442071838750"),
    # digits of other scripts, and the full-width plus
    ("\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13", "US", "+14155550123"),
    ("\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663", "US", "+14155550123"),
    ("\uff0b1 415 555 0123", "US", "+14155550123"),
    # values that are not text
    (None, "US", None),
    (4155550123, "US", "+14155550123"),
    (14155550123, "US", "+14155550123"),
    (4155550123.0, "US", None),
    (Decimal("4155550123"), "US", "+14155550123"),
    (True, "US", None),
    (False, "US", None),
    (0, "US", None),
]


@pytest.mark.parametrize(("value", "region", "expected"), PHONES)
def test_normalise_phone_golden(value: Any, region: str, expected: str | None) -> None:
    """Every input keeps the E.164 result (or None) it had."""
    assert normalise_phone(value, region) == expected


# (agent, payload, state, note, do_not_call, digest)
DIGESTS: list[tuple[str | None, dict[str, Any], LeadState, str | None, bool, str]] = [
    (
        "agt_1",
        {
            "phoneNumber": "+14155550123",
            "salesforceId": "00Q000000000001AAA",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "email": "ada@example.com",
            "campaignType": "web-inbound",
            "customData": {"owner": "owner@example.com", "company": "Engines"},
        },
        LeadState.QUEUED,
        None,
        False,
        "1a670f60ba08dd547c2853f40346aedb53488e4afce94fe9152a0aac6da27414",
    ),
    (
        "agt_bench",
        {
            "phoneNumber": "+12012000000",
            "salesforceId": "00Q000000000000AAA",
            "firstName": "Chloé",
            "lastName": "García",
            "email": "chloe.0@example.com",
            "campaignType": "web-inbound",
            "customData": {"company": "Acme Corp", "owner": "ines.sales@example.com"},
        },
        LeadState.QUEUED,
        None,
        False,
        "61a9e296d7012e52e5c7889aa24b337703a975153cce0305965240033b0f87ae",
    ),
    (
        None,
        {"salesforceId": "00Q000000000002AAA", "lastName": "Müller"},
        LeadState.INVALID,
        "phone number in Phone is not a valid number; no route for Country=FR",
        False,
        "cfb46e4bf0b4be800e8d19e7b4ed9d93f1b8b9f03d18edc14989baba0951846c",
    ),
    (
        "agt_1",
        {
            "phoneNumber": "+442071838750",
            "salesforceId": "",
            "firstName": "Zoë \U0001f600",
            "customData": {
                "n": 1,
                "f": 1.5,
                "big": 12345678901234567890,
                "t": True,
                "none": None,
                "list": [1, "two", {"b": 2, "a": 1}],
                "nested": {"z": "\u2028", "a": 'quote" back\\slash \n\t\x01 \x7f'},
            },
        },
        LeadState.QUEUED,
        "email left out: not an email address",
        True,
        "275fddcdeeaf2d5e12233bf3b85f3c8ffd1e0f6f9638de5e8510306d39e23589",
    ),
    (
        "agt_2",
        {
            "phoneNumber": "+14155550123",
            "salesforceId": "00Q000000000003AAA",
            "customData": {"x": 1e16, "y": -0.0, "z": 3.141592653589793, "w": 1e-07},
        },
        LeadState.SKIPPED,
        "DoNotCall is set on the record",
        True,
        "86efc3f4e4df1acde42e94f45563d18a7d754cc6dc344e404de9c2b7f2656e71",
    ),
    (
        "",
        {},
        LeadState.QUEUED,
        "",
        False,
        "5b8bacdebca307468d5957e583a6dd45a01e0bac36a9204df457e9232969d46c",
    ),
]


@pytest.mark.parametrize(("agent", "payload", "state", "note", "dnc", "digest"), DIGESTS)
def test_lead_digest_golden(
    agent: str | None,
    payload: dict[str, Any],
    state: LeadState,
    note: str | None,
    dnc: bool,
    digest: str,
) -> None:
    """The digest of the same inputs is byte for byte what stored leads hold."""
    assert lead_digest(agent, payload, state, note, dnc) == digest


# ---------------------------------------------------------------- whole mapped leads

_FIRST: list[Any] = [
    "Ada",
    "Chloé",
    "Zoë",
    "Jürgen",
    "O'Brien",
    "",
    "  ",
    None,
    "Mei",
    "Ü 😀",
    42,
    True,
]
_LAST: list[Any] = ["Lovelace", "García", "Müller", "Smith", None, "", "Tanaka"]
_EMAILS: list[Any] = [
    "ada@example.com",
    "jürgen.1@example.com",
    "not-an-email",
    "",
    None,
    "a.b+c@sub.example.org",
    " spaced@example.com ",
    "x@y",
    "UPPER@EXAMPLE.COM",
]
_PHONES: list[Any] = [
    "(415) 555-0123",
    "415-555-0123",
    "+1 415 555 0123",
    "+1 201 200 0000",
    "+44 20 7946 0123",
    "020 7946 0123",
    "n/a",
    "call me",
    "12",
    "555-CALL-NOW",
    "000",
    "",
    None,
    "1-800-FLOWERS",
    "415-555-0123 ext. 45",
    "+1 415 155 0123",
    "+1 604 555 0123",
    "14155550123",
    4155550123,
    "\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13",
    "  +1 212 555 0199  ",
    "+1 242 555 0123",
    "+1 (312) 555-0100",
]
_STAMPS: list[Any] = [
    "2024-03-01T10:00:00.000+0000",
    "2024-03-01T10:00:00Z",
    "2024-03-01T10:00:00.123-0500",
    "not a date",
    None,
    "2024-03-01T10:00:00",
]
_COMPANIES: list[Any] = [
    "Acme Corp",
    "",
    None,
    Decimal("12.50"),
    7,
    3.5,
    {"attributes": {"type": "X"}, "Name": "N"},
]


def varied_records(count: int, seed: int = 5) -> Iterator[dict[str, Any]]:
    """Records with every kind of good and bad value the mapping handles."""
    rng = random.Random(seed)
    for n in range(count):
        owner = rng.choice(
            [
                None,
                {"attributes": {"type": "User"}, "Email": f"owner{n % 3}@example.com"},
                {"attributes": {"type": "User"}, "Email": None},
            ]
        )
        record: dict[str, Any] = {
            "attributes": {"type": "Lead", "url": f"/services/data/v61.0/sobjects/Lead/{n}"},
            "Phone": rng.choice(_PHONES),
            "FirstName": rng.choice(_FIRST),
            "LastName": rng.choice(_LAST),
            "Email": rng.choice(_EMAILS),
            "Company": rng.choice(_COMPANIES),
            "Country": rng.choice(["US", "GB", "FR", None, "us"]),
            "Owner": owner,
            "DoNotCall": rng.choice([False, False, True, "true", "0", None]),
            "Id": rng.choice([f"00Q{n:012d}AAA"] * 8 + ["", None]),
            "SystemModstamp": rng.choice(_STAMPS),
        }
        if rng.random() < 0.2:  # other spellings of the field names, as OrderedDicts
            record = OrderedDict(
                (key.lower() if rng.random() < 0.3 else key, value) for key, value in record.items()
            )
        yield record


BENCH_SYNC = example_sync("bench", agent="agt_bench")
ROUTED_SYNC = {
    "name": "routed",
    "route": {"field": "Country", "values": {"US": "agt_us", "GB": "agt_gb"}},
    "mapping": {
        "phoneNumber": "Phone",
        "lastName": "LastName",
        "campaignType": "FirstName",
        "customData": {"company": "Company", "owner": "owner.email", "c": {"const": 1.5}},
    },
    "phone": {"default_region": "GB"},
    "rules": {"respect_do_not_call": False},
}


def mapped_fingerprint(sync: dict[str, Any], count: int) -> str:
    """One SHA-256 over every field of every mapped lead, payload JSON in stored key order."""
    mapper = Mapper(SyncConfig.model_validate(sync).mapping_spec)
    digest = hashlib.sha256()
    for record in varied_records(count):
        lead = mapper.map(record)
        row = [
            lead.salesforce_id,
            lead.cursor.isoformat() if lead.cursor else None,
            lead.state.value,
            lead.agent_id,
            json.dumps(lead.payload),
            lead.phone_e164,
            lead.note,
            lead.do_not_call,
            lead.digest,
        ]
        digest.update(json.dumps(row).encode())
    return digest.hexdigest()


@pytest.mark.parametrize(
    ("sync", "expected"),
    [
        (BENCH_SYNC, "d7b71b99a29a465c6eb01d4bf6fcd3f6a8c3232538a1272edf1b344e4553bdbe"),
        (ROUTED_SYNC, "1f5f9f3aabfe0173fbf2126f9ee7a4cc2245a4699da343206c40a656ff69ec62"),
    ],
    ids=["bench", "routed"],
)
def test_mapped_leads_golden(sync: dict[str, Any], expected: str) -> None:
    """Two thousand varied records map to exactly the leads (and digests) they mapped to."""
    assert mapped_fingerprint(sync, 2000) == expected
