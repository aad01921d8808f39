"""Bulk API 2.0 query: the emulator's job, the client, and REST/Bulk parity for backfills."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.canonical_source import CanonicalSource
from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.migrate import upgrade
from syncd.adapters.orm import Lead
from syncd.adapters.salesforce import (
    SalesforceQueryError,
    SalesforceSource,
    SalesforceUnavailable,
)
from syncd.adapters.salesforce_bulk import BulkQuerySource, records_from_csv, without_order_by
from syncd.domain.mapping import Mapper
from syncd.domain.soql import build_poll_query
from syncd.domain.window import PollWindow
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.backfill import backfill_sync
from syncd.services.poll import RecordSource
from tests.integration.test_poll import T0, make_sync
from tests.salesforce_fixtures import salesforce_config

WINDOW = PollWindow(T0 - timedelta(days=60), T0)
STAMP = T0 - timedelta(days=30)


@pytest.fixture
def source(salesforce_emulator: SalesforceEmulator) -> Iterator[SalesforceSource]:
    made = SalesforceSource(salesforce_config(salesforce_emulator, page_size=200))
    yield made
    made.close()


def bulk(source: SalesforceSource) -> BulkQuerySource:
    return BulkQuerySource(source, page_size=200, poll_interval=0.01)


def records(count: int) -> list[dict[str, Any]]:
    """Leads with gaps and flags: some without a first name, some Do-Not-Call, one bad phone."""
    out = []
    for n in range(count):
        record: dict[str, Any] = {
            "sobject": "Lead",
            "LastName": f'Person, "{n}"',  # a comma and quotes survive the CSV
            "Company": f"Co {n}",
            "Phone": f"+1202555{n % 10000:04d}" if n != 7 else "not a phone",
            "SystemModstamp": (STAMP + timedelta(seconds=n)).isoformat(),
            "DoNotCall": n % 5 == 0,
        }
        if n % 3:
            record["FirstName"] = f"First {n}"
        out.append(record)
    return out


def sync_for_parity() -> Any:
    return make_sync(
        mapping={
            "phoneNumber": "Phone",
            "firstName": "FirstName",
            "lastName": "LastName",
            "customData": {"company": "Company"},
        }
    )


class TestEmulatorJob:
    def test_job_lifecycle_and_locator_pages(
        self, source: SalesforceSource, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """InProgress, then JobComplete; CSV pages chained by Sforce-Locator; null at the end."""
        salesforce_emulator.add_records(records(450))
        soql = "SELECT Id, LastName, FirstName FROM Lead"
        job = source.bulk_request(
            "POST", "query", data=json.dumps({"operation": "query", "query": soql})
        ).json()
        assert job["state"] == "UploadComplete"
        first = source.bulk_request("GET", f"query/{job['id']}").json()
        assert first["state"] == "InProgress"
        assert source.bulk_request("GET", f"query/{job['id']}").json()["state"] == "JobComplete"
        seen: list[dict[str, Any]] = []
        locator = ""
        counts = []
        while True:
            params: dict[str, Any] = {
                "maxRecords": 200,
                **({"locator": locator} if locator else {}),
            }
            page = source.bulk_request(
                "GET", f"query/{job['id']}/results", accept="text/csv", params=params
            )
            assert page.headers["Content-Type"].startswith("text/csv")
            counts.append(int(page.headers["Sforce-NumberOfRecords"]))
            seen += records_from_csv(page.text)
            locator = page.headers["Sforce-Locator"]
            if locator == "null":
                break
        assert counts == [200, 200, 50]
        assert len({r["Id"] for r in seen}) == 450
        assert seen[0]["LastName"].startswith('Person, "')

    def test_refusals(
        self, source: SalesforceSource, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """ORDER BY and COUNT() are refused; results before JobComplete are refused."""
        for soql in ("SELECT Id FROM Lead ORDER BY Id", "SELECT COUNT() FROM Lead"):
            with pytest.raises(SalesforceQueryError):
                source.bulk_request(
                    "POST", "query", data=json.dumps({"operation": "query", "query": soql})
                )
        job = source.bulk_request(
            "POST", "query", data=json.dumps({"operation": "query", "query": "SELECT Id FROM Lead"})
        ).json()
        with pytest.raises(SalesforceQueryError):
            source.bulk_request("GET", f"query/{job['id']}/results", accept="text/csv")


class TestClient:
    def test_csv_rows_become_rest_shaped_records(self) -> None:
        """Empty is None, dotted columns nest, quotes and commas survive."""
        text = '"Id","Owner.Email","Name"\n"00Q1","a@example.com","x, ""y"""\n"00Q2","",""\n'
        assert records_from_csv(text) == [
            {"Id": "00Q1", "Owner": {"Email": "a@example.com"}, "Name": 'x, "y"'},
            {"Id": "00Q2", "Owner": {"Email": None}, "Name": None},
        ]
        assert records_from_csv("") == []

    def test_a_field_over_the_csv_default_limit_is_read(self) -> None:
        """A long text area (131,072 characters, more once quotes double) is read whole."""
        long = 'x"' * 100_000
        quoted = long.replace('"', '""')
        assert records_from_csv(f'"Id","Description"\n"00Q1","{quoted}"\n') == [
            {"Id": "00Q1", "Description": long}
        ]

    def test_stop_aborts_a_running_job_within_a_poll_interval(
        self, source: SalesforceSource, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """A job still running when stop is set is aborted and deleted; no page is yielded."""
        salesforce_emulator.add_records(records(5))
        salesforce_emulator.bulk.slow = True
        stop = threading.Event()
        reader = BulkQuerySource(source, page_size=200, poll_interval=0.2, stop=stop)
        threading.Timer(0.5, stop.set).start()
        started = time.monotonic()
        pages = list(reader.query_pages(build_poll_query(make_sync().query_spec, WINDOW)))
        assert pages == [] and time.monotonic() - started < 5
        assert len(salesforce_emulator.bulk.aborted) == 1
        assert salesforce_emulator.bulk._jobs == {}

    def test_order_by_is_dropped(self) -> None:
        """The poll query's ORDER BY is removed, the rest kept."""
        soql = build_poll_query(make_sync(where="LeadSource = 'Web'").query_spec, WINDOW)
        stripped = without_order_by(soql)
        assert "ORDER BY" not in stripped and stripped.endswith("AND (LeadSource = 'Web')")

    def test_pages_and_job_deleted(
        self, source: SalesforceSource, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """query_pages yields every record once, in pages of page_size, and deletes the job."""
        salesforce_emulator.add_records(records(430))
        pages = list(bulk(source).query_pages(build_poll_query(make_sync().query_spec, WINDOW)))
        assert [len(page) for page in pages] == [200, 200, 30]
        assert len({r["Id"] for page in pages for r in page}) == 430
        assert salesforce_emulator.bulk._jobs == {}

    def test_an_unreadable_job_answer_is_salesforce_unavailable(
        self, source: SalesforceSource, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """A cut JSON answer to the job creation is a source error, not a crash."""
        salesforce_emulator.add_records(records(3))
        source.login()
        salesforce_emulator.inject("malformed_json", count=1)
        with pytest.raises(SalesforceUnavailable, match="not valid JSON"):
            list(bulk(source).query_pages(build_poll_query(make_sync().query_spec, WINDOW)))


def leads_of(factory: sessionmaker[Session]) -> dict[str, tuple[Any, ...]]:
    with factory() as session:
        return {
            lead.salesforce_id: (
                lead.state,
                lead.agent_id,
                lead.payload,
                lead.note,
                lead.record_hash,
            )
            for lead in session.scalars(select(Lead))
        }


def sqlite_factory(path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return make_session_factory(engine)


class TestParity:
    def test_bulk_and_rest_give_the_same_leads(
        self,
        source: SalesforceSource,
        salesforce_emulator: SalesforceEmulator,
        engine: Engine,
        tmp_path: Path,
    ) -> None:
        """The same records backfilled through REST and through Bulk make identical leads."""
        salesforce_emulator.add_records(records(260))
        sync = sync_for_parity()
        results = {}
        stores = {
            "rest": sqlite_factory(tmp_path / "rest.db"),
            "bulk": make_session_factory(engine),
        }
        readers: dict[str, RecordSource] = {"rest": source, "bulk": bulk(source)}
        for name, reader in readers.items():
            results[name] = backfill_sync(stores[name], reader, sync, WINDOW, now=lambda: T0)
        assert results["rest"].status == results["bulk"].status == "ok"
        assert (results["bulk"].new, results["bulk"].queued) == (
            results["rest"].new,
            results["rest"].queued,
        )
        rest, via_bulk = leads_of(stores["rest"]), leads_of(stores["bulk"])
        assert len(rest) == 260 and rest == via_bulk
        states = {state for state, *_ in rest.values()}
        assert states == {"queued", "skipped", "invalid"}  # the data exercises every path


def typed_records(owner: str, count: int) -> list[dict[str, Any]]:
    """Leads whose mapped fields are booleans, numbers, dates, datetimes, a lookup, or empty."""
    out = []
    for n in range(count):
        empty = n % 4 == 3
        out.append(
            {
                "sobject": "Lead",
                "LastName": f"Person {n}",
                "Phone": f"+1202555{n:04d}",
                "SystemModstamp": (STAMP + timedelta(seconds=n)).isoformat(),
                "DoNotCall": n % 5 == 0,
                "Hot__c": None if empty else n % 2 == 0,
                "Score__c": None if empty else [42, 12.5, 1234567.0][n % 3],
                "Birth__c": None if empty else f"19{70 + n % 30}-02-0{1 + n % 9}",
                "Visit__c": None if empty else f"2026-12-01T10:00:{n % 60:02d}.250Z",
                "OwnerId": None if empty else owner,
            }
        )
    return out


def typed_sync() -> Any:
    return make_sync(
        mapping={
            "phoneNumber": "Phone",
            "lastName": "LastName",
            "campaignType": "Score__c",
            "customData": {
                "hot": "Hot__c",
                "score": "Score__c",
                "birth": "Birth__c",
                "visit": "Visit__c",
                "owner": "Owner.Email",
                "dnc": "DoNotCall",
            },
        },
        rules={"respect_do_not_call": False},
    )


class TestCanonicalForm:
    @pytest.fixture
    def typed(self, salesforce_emulator: SalesforceEmulator) -> Any:
        [owner] = salesforce_emulator.add_records(
            [{"sobject": "User", "Username": "owner@example.com", "Email": "owner@example.com"}]
        )
        salesforce_emulator.add_records(typed_records(owner, 24))
        return typed_sync()

    def test_rest_and_bulk_map_to_identical_payloads_and_digests(
        self, source: SalesforceSource, typed: Any
    ) -> None:
        """The same records read through REST and Bulk give byte-identical payloads and digests."""
        soql = build_poll_query(typed.query_spec, WINDOW)
        readers = {
            "rest": CanonicalSource(source, source.describe_fields, typed),
            "bulk": CanonicalSource(bulk(source), source.describe_fields, typed),
        }
        mapper = Mapper(typed.mapping_spec)
        mapped: dict[str, dict[str, tuple[bytes, str]]] = {}
        for name, reader in readers.items():
            leads = [mapper.map(r) for page in reader.query_pages(soql) for r in page]
            mapped[name] = {
                lead.salesforce_id: (
                    json.dumps(lead.payload, sort_keys=True).encode(),
                    lead.digest,
                )
                for lead in leads
            }
        assert len(mapped["rest"]) == 24 and mapped["bulk"] == mapped["rest"]
        custom = [json.loads(body)["customData"] for body, _digest in mapped["rest"].values()]
        assert {type(c["hot"]) for c in custom if "hot" in c} == {bool}
        assert {type(c["score"]) for c in custom if "score" in c} == {float}
        assert any(c.get("visit") == "2026-12-01T10:00:00.250+0000" for c in custom)
        assert any(c.get("owner") == "owner@example.com" for c in custom)
        assert any("owner" not in c and "hot" not in c for c in custom)  # the empty ones

    def test_rest_reads_are_unchanged_by_the_canonical_form(
        self, source: SalesforceSource, typed: Any
    ) -> None:
        """Leads already stored from REST reads keep their digests: REST values stay as read."""
        soql = build_poll_query(typed.query_spec, WINDOW)
        reader = CanonicalSource(source, source.describe_fields, typed)
        raw = [r for page in source.query_pages(soql) for r in page]
        canonical = [r for page in reader.query_pages(soql) for r in page]

        def whole_doubles_as_salesforce_writes_them(record: dict[str, Any]) -> dict[str, Any]:
            # The emulator writes a whole double as 42 where Salesforce writes 42.0.
            score = record.get("Score__c")
            return {**record, "Score__c": float(score) if score is not None else None}

        expected = [whole_doubles_as_salesforce_writes_them(r) for r in raw]
        assert json.dumps(canonical) == json.dumps(expected)  # types too: 42.0 is not 42
