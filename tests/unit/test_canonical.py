"""One canonical form of a record: Bulk CSV text and REST JSON values come out the same."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.domain.canonical import canonical_page, canonical_record, canonical_value


@pytest.mark.parametrize(
    ("kind", "bulk", "rest"),
    [
        ("boolean", "true", True),
        ("boolean", "false", False),
        ("boolean", "TRUE", True),
        ("int", "42", 42),
        ("int", "-7", -7),
        ("double", "42", 42.0),
        ("double", "42.0", 42.0),
        ("double", "1.2345678E7", 12345678.0),
        ("currency", "1234.56", 1234.56),
        ("percent", "12.5", 12.5),
        ("datetime", "2026-12-01T10:00:00.000Z", "2026-12-01T10:00:00.000+0000"),
        ("datetime", "2026-12-01T12:00:00.123+02:00", "2026-12-01T10:00:00.123+0000"),
        ("date", "2026-12-01", "2026-12-01"),
        ("time", "10:00:00.000Z", "10:00:00.000Z"),
        ("string", "Acme", "Acme"),
        ("picklist", "Open", "Open"),
        ("id", "00Q000000000001AAA", "00Q000000000001AAA"),
        ("reference", "005000000000001AAA", "005000000000001AAA"),
        ("phone", "+12025550100", "+12025550100"),
        ("email", "a@example.com", "a@example.com"),
        ("textarea", "line\nnext", "line\nnext"),
    ],
)
def test_bulk_text_reads_as_rest_gives_it(kind: str, bulk: str, rest: Any) -> None:
    """Each type's CSV text becomes the REST value, and the REST value stays what it is."""
    converted = canonical_value(kind, bulk)
    assert converted == rest and type(converted) is type(rest)
    again = canonical_value(kind, rest)
    assert again == rest and type(again) is type(rest)


def test_a_whole_double_from_json_is_a_float() -> None:
    """Salesforce writes doubles as 42.0; a 42 in a double field reads as 42.0 too."""
    assert type(canonical_value("currency", 42)) is float
    assert canonical_value("int", 42) == 42 and type(canonical_value("int", 42)) is int


@pytest.mark.parametrize("kind", ["boolean", "int", "double", "datetime", "string", None])
def test_empty_is_none(kind: str | None) -> None:
    """An empty CSV cell is null, whatever the field's type."""
    assert canonical_value(kind, "") is None
    assert canonical_value(kind, None) is None


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("boolean", "yes"),
        ("boolean", 1),
        ("int", "abc"),
        ("int", "4.5"),
        ("int", "١٢"),  # Arabic-Indic digits: int() would read them, Salesforce never writes them
        ("int", "9" * 5000),  # more digits than int() reads from text
        ("double", "abc"),
        ("double", "NaN"),
        ("double", "1e999"),
        ("double", True),
        ("datetime", "not a time"),
        ("datetime", "2026-12-01T10:00:00"),  # no zone: which instant is not known
        ("datetime", 5),
    ],
)
def test_unparsable_values_are_kept_as_read(kind: str, raw: Any) -> None:
    """A value that does not read as its type is handed on as it came, never an error."""
    assert canonical_value(kind, raw) == raw


def test_unknown_types_pass_through() -> None:
    """A type not listed (or no type at all) leaves the value alone."""
    assert canonical_value("anyType", "42") == "42"
    assert canonical_value(None, "true") == "true"


TYPES = {
    "id": "id",
    "donotcall": "boolean",
    "score__c": "double",
    "employees__c": "int",
    "systemmodstamp": "datetime",
    "birth__c": "date",
    "owner.email": "email",
    "owner.isactive": "boolean",
}


def test_a_bulk_record_reads_as_the_rest_record() -> None:
    """Nested relationships are typed by their dotted path; keys are matched in any case."""
    bulk = {
        "Id": "00Q000000000001AAA",
        "DoNotCall": "false",
        "Score__c": "42",
        "EMPLOYEES__C": "7",
        "SystemModstamp": "2026-12-01T10:00:00.000Z",
        "Birth__c": "",
        "Owner": {"Email": "o@example.com", "IsActive": "true"},
        "Other": "kept",
    }
    assert canonical_record(bulk, TYPES) == {
        "Id": "00Q000000000001AAA",
        "DoNotCall": False,
        "Score__c": 42.0,
        "EMPLOYEES__C": 7,
        "SystemModstamp": "2026-12-01T10:00:00.000+0000",
        "Birth__c": None,
        "Owner": {"Email": "o@example.com", "IsActive": True},
        "Other": "kept",
    }


def test_a_rest_record_is_unchanged() -> None:
    """What the REST API gives is already canonical: attributes and null relationships stay."""
    rest = {
        "attributes": {"type": "Lead", "url": "/services/data/v61.0/sobjects/Lead/00Q"},
        "Id": "00Q000000000001AAA",
        "DoNotCall": True,
        "Score__c": 42.5,
        "Employees__c": 7,
        "SystemModstamp": "2026-12-01T10:00:00.000+0000",
        "Birth__c": "2000-02-29",
        "Owner": None,
    }
    assert canonical_record(rest, TYPES) == rest
    nested = {"Owner": {"attributes": {"type": "User"}, "IsActive": False}}
    assert canonical_record(nested, TYPES) == nested


def test_a_page_reads_as_its_records_one_by_one() -> None:
    """A page's conversions, found once per field, give each record what it gives alone,
    whatever the spelling of a field's name from one record to the next."""
    page = [
        {"Id": "1", "Score__c": "42", "Owner": {"IsActive": "true"}, "DoNotCall": ""},
        {"Id": "2", "SCORE__C": "7", "OWNER": {"isactive": "false"}, "DoNotCall": "true"},
        {"Id": "3", "Score__c": 1, "Owner": None, "Tags": ["a", ""], "Unknown": ""},
    ]
    assert canonical_page(page, TYPES) == [canonical_record(r, TYPES) for r in page]
    assert canonical_page(page, TYPES)[1]["OWNER"] == {"isactive": False}
