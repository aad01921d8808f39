"""The Salesforce emulator's declared fields, describe and updates, over real HTTPS.

What write-back relies on: custom fields with type, length and updateability;
describe; the sObject Collections update answered per record as Salesforce
does; the faults (deleted records, locked rows, 503s for one path).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest
from simple_salesforce.login import SalesforceLogin

from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.sandbox.sf_store import RecordError, parse_field_spec
from tests.e2e.harness import clean_env
from tests.salesforce_fixtures import SF_API_VERSION, salesforce_session

FIELDS = (
    "Lead.SimZ_Status__c:picklist:20:accepted|rejected",
    "Lead.SimZ_Error__c:string:10",
    "Lead.SimZ_Sent_At__c:datetime",
    "Lead.SimZ_Locked__c:string:readonly",
)


@pytest.fixture
def emulator(salesforce_emulator: SalesforceEmulator) -> SalesforceEmulator:
    for spec in FIELDS:
        salesforce_emulator.declare_field(spec)
    return salesforce_emulator


def login(emulator: SalesforceEmulator) -> Salesforce:
    session = salesforce_session(emulator)
    session_id, instance = SalesforceLogin(
        username=emulator.username,
        password=emulator.password,
        security_token=emulator.security_token,
        sf_version=SF_API_VERSION,
        session=session,
        scratch_url=emulator.url,
    )
    return Salesforce(
        session_id=session_id, instance=instance, session=session, version=SF_API_VERSION
    )


def collection(sf: Salesforce, records: list[dict[str, Any]]) -> Any:
    body = {
        "allOrNone": False,
        "records": [{"attributes": {"type": "Lead"}, **record} for record in records],
    }
    return sf.restful("composite/sobjects", method="PATCH", json=body)


def codes(results: list[dict[str, Any]]) -> list[str | None]:
    return [None if r["success"] else r["errors"][0]["statusCode"] for r in results]


class TestFieldSpecs:
    def test_parse(self) -> None:
        field = parse_field_spec("Lead.SimZ_Status__c:picklist:20:accepted|rejected")
        assert (field.sobject, field.name, field.type, field.length) == (
            "Lead",
            "SimZ_Status__c",
            "picklist",
            20,
        )
        assert field.values == ("accepted", "rejected")
        assert parse_field_spec("Lead.X__c").length == 255
        assert not parse_field_spec("Lead.X__c:string:readonly").updateable
        assert parse_field_spec("Lead.T__c:datetime").length is None

    @pytest.mark.parametrize("spec", ["Lead", "Lead.X__c:colour", "Lead.X__c:string:-1", "X"])
    def test_bad_specs(self, spec: str) -> None:
        with pytest.raises(RecordError):
            parse_field_spec(spec)


class TestDescribe:
    def test_describe_lists_declared_and_standard_fields(
        self, emulator: SalesforceEmulator
    ) -> None:
        sf = login(emulator)
        fields = {f["name"]: f for f in sf.restful("sobjects/Lead/describe")["fields"]}
        status = fields["SimZ_Status__c"]
        assert (status["type"], status["length"], status["updateable"]) == ("picklist", 20, True)
        assert [v["value"] for v in status["picklistValues"]] == ["accepted", "rejected"]
        assert fields["SimZ_Sent_At__c"]["type"] == "datetime"
        assert fields["SimZ_Locked__c"]["updateable"] is False
        assert fields["SystemModstamp"]["updateable"] is False
        assert fields["Phone"]["updateable"] is True


class TestCollectionsUpdate:
    def test_each_record_is_answered_in_order(self, emulator: SalesforceEmulator) -> None:
        ok, long, locked, typed, gone, picked = emulator.add_records(
            [{"sobject": "Lead", "LastName": str(n)} for n in range(6)]
        )
        emulator.delete_record("Lead", gone)
        sf = login(emulator)
        results = collection(
            sf,
            [
                {
                    "id": ok,
                    "SimZ_Status__c": "accepted",
                    "SimZ_Sent_At__c": "2026-01-05T09:00:00.000+0000",
                },
                {"id": long, "SimZ_Error__c": "x" * 11},
                {"id": locked, "SimZ_Locked__c": "x"},
                {"id": typed, "SimZ_Error__c": 5},
                {"id": gone, "SimZ_Status__c": "accepted"},
                {"id": picked, "SimZ_Status__c": "held"},
                {"id": "00Q000000000000AAA", "SimZ_Status__c": "accepted"},
                {"id": ok, "Nope__c": "x"},
            ],
        )
        assert [r.get("id") for r in results][:6] == [ok, long, locked, typed, gone, picked]
        assert codes(results) == [
            None,
            "STRING_TOO_LONG",
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            "ENTITY_IS_DELETED",
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "MALFORMED_ID",
            "INVALID_FIELD",
        ]
        assert results[1]["errors"][0]["fields"] == ["SimZ_Error__c"]
        record = emulator.get_record("Lead", ok)
        assert record is not None and record["SimZ_Status__c"] == "accepted"
        assert emulator.write_log()[0]["records"] == 8
        assert emulator.write_log()[0]["succeeded"] == 1

    def test_locks_for_ids_and_for_the_next_records(self, emulator: SalesforceEmulator) -> None:
        ids = emulator.add_records([{"sobject": "Lead", "LastName": str(n)} for n in range(4)])
        emulator.lock_rows([ids[3]], count=1)
        sf = login(emulator)
        records = [{"id": i, "SimZ_Status__c": "accepted"} for i in ids]
        assert codes(collection(sf, records)) == [
            "UNABLE_TO_LOCK_ROW",
            None,
            None,
            "UNABLE_TO_LOCK_ROW",
        ]
        assert codes(collection(sf, records)) == [None] * 4  # each lock answers once

    def test_more_than_200_records_is_refused_whole(self, emulator: SalesforceEmulator) -> None:
        sf = login(emulator)
        with pytest.raises(SalesforceMalformedRequest) as caught:
            collection(sf, [{"id": "00Q000000000000AAA"}] * 201)
        assert "EXCEEDED_ID_LIMIT" in str(caught.value)

    def test_a_503_for_one_path_spares_the_others(self, emulator: SalesforceEmulator) -> None:
        (lead,) = emulator.add_records([{"sobject": "Lead", "LastName": "A"}])
        emulator.inject("503", count=1, only="/composite")
        sf = login(emulator)
        assert sf.query("SELECT Id FROM Lead")["totalSize"] == 1
        response = requests.patch(
            f"{emulator.url}/services/data/v{SF_API_VERSION}/composite/sobjects",
            json={"allOrNone": False, "records": [{"attributes": {"type": "Lead"}, "id": lead}]},
            headers={"Authorization": f"Bearer {sf.session_id}"},
            verify=str(emulator.ca_file),
            timeout=10,
        )
        assert response.status_code == 503
        assert response.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
        assert emulator.pending_faults() == []

    def test_single_record_patch_is_checked_too(self, emulator: SalesforceEmulator) -> None:
        (lead,) = emulator.add_records([{"sobject": "Lead", "LastName": "A"}])
        sf = login(emulator)
        with pytest.raises(SalesforceMalformedRequest) as caught:
            sf.Lead.update(lead, {"SimZ_Error__c": "far too long"})
        assert "STRING_TOO_LONG" in str(caught.value)
        assert sf.Lead.update(lead, {"SimZ_Error__c": "short"}) == 204


class TestControlAndCli:
    def test_publish_false_writes_without_a_change_event(
        self, emulator: SalesforceEmulator
    ) -> None:
        """A record that matches behind the watermark, as a formula change makes one: stored
        with its old stamp, no event; an update likewise; a non-boolean is refused."""
        session = salesforce_session(emulator)
        base = f"{emulator.url}/__sandbox"
        record = {"sobject": "Lead", "LastName": "Late", "SystemModstamp": "2024-01-01T00:00:00Z"}
        before = session.get(f"{base}/pubsub/status").json()["events"]
        [lead] = session.post(
            f"{base}/records", json={"publish": False, "records": [record]}
        ).json()["ids"]
        update = {"sobject": "Lead", "id": lead, "fields": {"Company": "Co"}, "publish": False}
        assert session.post(f"{base}/update", json=update).ok
        assert session.get(f"{base}/pubsub/status").json()["events"] == before
        stored = session.get(f"{base}/records/Lead/{lead}").json()
        assert stored["Company"] == "Co" and stored["LastName"] == "Late"
        assert session.get(f"{base}/api-usage").json()["used"] == 0
        bad = session.post(f"{base}/records", json={"publish": "no", "records": [record]})
        assert bad.status_code == 400 and "publish" in bad.json()["error"]
        session.post(f"{base}/update", json={**update, "publish": True})
        assert session.get(f"{base}/pubsub/status").json()["events"] == before + 1

    def test_control_api_declares_deletes_and_locks(self, emulator: SalesforceEmulator) -> None:
        session = salesforce_session(emulator)
        base = f"{emulator.url}/__sandbox"
        (lead,) = emulator.add_records([{"sobject": "Lead", "LastName": "A"}])
        answer = session.post(f"{base}/fields", json={"fields": ["Lead.New__c:string:5"]})
        assert answer.json() == {"declared": ["Lead.New__c"]}
        assert session.post(f"{base}/lock-rows", json={"ids": [lead]}).ok
        assert session.post(f"{base}/delete", json={"sobject": "Lead", "id": lead}).ok
        assert session.get(f"{base}/write-log").json() == {"writes": []}
        bad = session.post(f"{base}/fields", json={"fields": ["Lead.X__c:colour"]})
        assert bad.status_code == 400

    def test_cli_refuses_a_bad_custom_field(self, tmp_path: Path) -> None:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "syncd",
                "sandbox",
                "salesforce",
                "--port",
                "0",
                "--cert-dir",
                str(tmp_path / "certs"),
                "--custom-field",
                "Lead.X__c:colour",
            ],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0
        assert "--custom-field" in result.stderr and "type must be one of" in result.stderr
        assert "Traceback" not in result.stderr
