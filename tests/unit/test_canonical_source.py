"""The canonical-form wrapper: field types from describe, once, and what it passes through."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from syncd.adapters.canonical_source import CanonicalSource, FieldTyper
from syncd.adapters.salesforce import SalesforceUnavailable
from syncd.config.models import SyncConfig

DESCRIBES: dict[str, list[dict[str, Any]]] = {
    "Lead": [
        {"name": "Id", "type": "id"},
        {"name": "Score__c", "type": "double"},
        {"name": "SystemModstamp", "type": "datetime"},
        {"name": "OwnerId", "type": "reference", "relationshipName": "Owner",
         "referenceTo": ["Group", "User"]},
        {"name": "Account__c", "type": "reference", "relationshipName": "Account__r",
         "referenceTo": ["Account"]},
    ],
    "User": [{"name": "Email", "type": "email"}, {"name": "Badge__c", "type": "int"}],
    "Group": [{"name": "Email", "type": "email"}, {"name": "Badge__c", "type": "string"}],
    "Account": [
        {"name": "IsActive__c", "type": "boolean"},
        {"name": "OwnerId", "type": "reference", "relationshipName": "Owner",
         "referenceTo": ["User"]},
    ],
}  # fmt: skip


class Describer:
    def __init__(self, fail: int = 0) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, sobject: str) -> list[dict[str, Any]]:
        self.calls.append(sobject)
        if self.fail:
            self.fail -= 1
            raise SalesforceUnavailable("describe failed: ConnectionError")
        return DESCRIBES[sobject]


def test_paths_are_typed_through_relationships() -> None:
    """Own fields, a lookup, a lookup of a lookup; polymorphic targets must agree on the type."""
    describe = Describer()
    paths = [
        "score__c",
        "Owner.Email",
        "Owner.Badge__c",
        "Account__r.IsActive__c",
        "Account__r.Owner.Email",
        "Missing__c",
        "Nowhere.Email",
    ]
    assert FieldTyper(describe).types("Lead", paths) == {
        "score__c": "double",
        "owner.email": "email",
        "account__r.isactive__c": "boolean",
        "account__r.owner.email": "email",
    }
    assert sorted(describe.calls) == ["Account", "Group", "Lead", "User"]  # each once


class Pages:
    """A source of two pages of Bulk-shaped records that knows its query size."""

    def __init__(self) -> None:
        self.closed = False

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        try:
            yield [{"Id": "00Q000000000001AAA", "Score__c": "42"}]
            yield [{"Id": "00Q000000000002AAA", "Score__c": ""}]
        finally:
            self.closed = True

    def api_usage(self) -> tuple[int, int] | None:
        return (5, 100)

    def last_query_size(self) -> int | None:
        return 2


def sync() -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": "web",
            "object": "Lead",
            "agent": "agent-1",
            "mapping": {"phoneNumber": "Phone", "customData": {"score": "Score__c"}},
        }
    )


def test_pages_come_canonical_and_the_rest_passes_through() -> None:
    """Records are converted; api_usage and last_query_size are the wrapped source's."""
    describe, pages = Describer(), Pages()
    source = CanonicalSource(pages, describe, sync())
    read = list(source.query_pages("SELECT ..."))
    assert read == [
        [{"Id": "00Q000000000001AAA", "Score__c": 42.0}],
        [{"Id": "00Q000000000002AAA", "Score__c": None}],
    ]
    list(source.query_pages("SELECT ..."))
    assert describe.calls == ["Lead"]  # described once per source
    assert source.api_usage() == (5, 100) and source.last_query_size() == 2


def test_stopping_early_closes_the_wrapped_pages() -> None:
    """A caller that stops after one page stops the wrapped source too (its read-ahead)."""
    pages = Pages()
    reading = CanonicalSource(pages, Describer(), sync()).query_pages("SELECT ...")
    assert isinstance(reading, Generator)
    next(reading)
    reading.close()
    assert pages.closed


def test_a_failed_describe_is_the_sources_error_and_is_tried_again() -> None:
    """No query runs without the types; the next read describes again."""
    describe, pages = Describer(fail=1), Pages()
    source = CanonicalSource(pages, describe, sync())
    with pytest.raises(SalesforceUnavailable):
        list(source.query_pages("SELECT ..."))
    assert not pages.closed  # the query never started
    assert len(list(source.query_pages("SELECT ..."))) == 2
    assert describe.calls == ["Lead", "Lead"]
