"""The Salesforce emulator, driven by the real simple-salesforce client over HTTPS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.login import token_login

from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.sandbox.sf_soql import normalize_id
from tests.salesforce_fixtures import SF_API_VERSION, salesforce_config, salesforce_session

PAGE_200 = {"Sforce-Query-Options": "batchSize=200"}


def soap_login(emulator: SalesforceEmulator, password: str | None = None) -> Salesforce:
    session = salesforce_session(emulator)
    session_id, instance = SalesforceLogin(
        username=emulator.username,
        password=emulator.password if password is None else password,
        security_token=emulator.security_token,
        sf_version=SF_API_VERSION,
        session=session,
        scratch_url=emulator.url,
    )
    return Salesforce(
        session_id=session_id, instance=instance, session=session, version=SF_API_VERSION
    )


def oauth_login(
    emulator: SalesforceEmulator, form: dict[str, Any], headers: dict[str, str] | None = None
) -> Salesforce:
    session = salesforce_session(emulator)
    token, instance = token_login(
        f"{emulator.url}/services/oauth2/token",
        form,
        "login",
        emulator.consumer_key,
        headers,
        None,
        session,
    )
    return Salesforce(session_id=token, instance=instance, session=session, version=SF_API_VERSION)


def add_leads(emulator: SalesforceEmulator, count: int, **fields: Any) -> list[str]:
    return emulator.add_records(
        [{"sobject": "Lead", "LastName": f"Lead {i:04d}", **fields} for i in range(count)]
    )


def error_code(exc: pytest.ExceptionInfo[Any]) -> str:
    return str(exc.value.content[0]["errorCode"])


class TestSoapLogin:
    def test_right_password_and_token_give_a_working_session(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """A SOAP login with password + token yields a session whose queries succeed."""
        sf = soap_login(salesforce_emulator)
        assert sf.sf_instance == salesforce_emulator.url.removeprefix("https://")
        assert sf.query("SELECT Id FROM Lead")["totalSize"] == 0

    def test_wrong_password_is_an_invalid_login_fault(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """A wrong password gets the INVALID_LOGIN SOAP fault, which simple-salesforce raises."""
        with pytest.raises(SalesforceAuthenticationFailed) as exc:
            soap_login(salesforce_emulator, password="wrong")
        assert exc.value.code == "INVALID_LOGIN"
        assert salesforce_emulator.sessions() == []


class TestOAuthLogin:
    def test_password_grant_gives_a_session(self, salesforce_emulator: SalesforceEmulator) -> None:
        """The OAuth2 password grant answers an access token and the emulator's instance URL."""
        emu = salesforce_emulator
        sf = oauth_login(
            emu,
            {
                "grant_type": "password",
                "client_id": emu.consumer_key,
                "client_secret": emu.consumer_secret,
                "username": emu.username,
                "password": emu.password + emu.security_token,
            },
        )
        assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0

    def test_password_grant_with_a_wrong_secret_fails(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """A wrong client secret is refused with invalid_client."""
        emu = salesforce_emulator
        form = {
            "grant_type": "password",
            "client_id": emu.consumer_key,
            "client_secret": "nope",
            "username": emu.username,
            "password": emu.password,
        }
        with pytest.raises(SalesforceAuthenticationFailed) as exc:
            oauth_login(emu, form)
        assert exc.value.code == "invalid_client"

    def test_client_credentials_with_basic_auth(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """The client_credentials grant accepts the key and secret in HTTP Basic, as sent by
        simple-salesforce."""
        import base64

        emu = salesforce_emulator
        basic = base64.b64encode(f"{emu.consumer_key}:{emu.consumer_secret}".encode()).decode()
        sf = oauth_login(
            emu, {"grant_type": "client_credentials"}, {"Authorization": f"Basic {basic}"}
        )
        assert sf.query("SELECT Id FROM User")["done"] is True

    def test_jwt_bearer_is_verified_with_the_given_key(self, tmp_path: Path) -> None:
        """With a public key configured, a JWT signed by its private key logs in and one
        signed by another key is refused."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with SalesforceEmulator(cert_dir=tmp_path, jwt_public_key=public) as emu:
            claims = {
                "iss": emu.consumer_key,
                "sub": emu.username,
                "aud": "https://login.salesforce.com",
                "exp": int(time.time()) + 180,
            }
            grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
            good = jwt.encode(claims, key, algorithm="RS256")
            sf = oauth_login(emu, {"grant_type": grant, "assertion": good})
            assert sf.query("SELECT Id FROM Lead")["totalSize"] == 0
            bad = jwt.encode(claims, other, algorithm="RS256")
            with pytest.raises(SalesforceAuthenticationFailed) as exc:
                oauth_login(emu, {"grant_type": grant, "assertion": bad})
            assert exc.value.code == "invalid_grant"


class TestQueryPaging:
    def test_three_pages_with_query_and_query_more(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """450 records at batchSize 200 come as pages of 200, 200 and 50 linked by
        nextRecordsUrl, each record once."""
        add_leads(salesforce_emulator, 450)
        sf = soap_login(salesforce_emulator)
        first = sf.query("SELECT Id, LastName FROM Lead ORDER BY LastName", headers=PAGE_200)
        assert (first["totalSize"], first["done"], len(first["records"])) == (450, False, 200)
        assert first["nextRecordsUrl"].startswith(f"/services/data/v{SF_API_VERSION}/query/01g")
        second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True, headers=PAGE_200)
        third = sf.query_more(second["nextRecordsUrl"], identifier_is_url=True)
        assert (len(second["records"]), second["done"]) == (200, False)
        assert (len(third["records"]), third["done"]) == (50, True)
        assert "nextRecordsUrl" not in third
        names = [r["LastName"] for page in (first, second, third) for r in page["records"]]
        assert names == [f"Lead {i:04d}" for i in range(450)]
        log = salesforce_emulator.query_log()
        assert [(e["page"], e["offset"], e["rows"]) for e in log] == [
            (False, 0, 450),
            (True, 200, 200),
            (True, 400, 50),
        ]

    def test_query_all_iter_reads_every_record(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """query_all_iter follows the pages to the end and yields every record exactly once."""
        ids = add_leads(salesforce_emulator, 451)
        sf = soap_login(salesforce_emulator)
        got = [r["Id"] for r in sf.query_all_iter("SELECT Id FROM Lead", headers=PAGE_200)]
        assert sorted(got) == sorted(ids)
        assert all(len(i) == 18 and normalize_id(i) == i and i.startswith("00Q") for i in got)

    def test_pages_are_a_snapshot_of_the_first_call(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """A record changed between page fetches does not move between pages."""
        ids = add_leads(salesforce_emulator, 400)
        sf = soap_login(salesforce_emulator)
        first = sf.query("SELECT Id FROM Lead ORDER BY SystemModstamp, Id", headers=PAGE_200)
        salesforce_emulator.update_record("Lead", ids[0], {"Phone": "+15550100"})
        second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
        got = [r["Id"] for r in first["records"] + second["records"]]
        assert len(got) == len(set(got)) == 400

    def test_query_all_includes_deleted_records(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """A record with IsDeleted true is seen by queryAll only."""
        salesforce_emulator.add_records(
            [{"sobject": "Lead", "LastName": "Gone", "IsDeleted": True}]
        )
        sf = soap_login(salesforce_emulator)
        assert sf.query("SELECT Id FROM Lead")["totalSize"] == 0
        assert sf.query("SELECT Id FROM Lead", include_deleted=True)["totalSize"] == 1

    def test_unknown_locator_is_invalid_query_locator(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """A made-up nextRecordsUrl answers 400 INVALID_QUERY_LOCATOR."""
        sf = soap_login(salesforce_emulator)
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.query_more(f"/services/data/v{SF_API_VERSION}/query/01gAAAA-200", True)
        assert error_code(exc) == "INVALID_QUERY_LOCATOR"


class TestRecordShape:
    def test_relationship_fields_and_null_lookups(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """Owner.Email comes as a nested object with attributes; a null OwnerId gives Owner null."""
        emu = salesforce_emulator
        (owner,) = emu.add_records([{"sobject": "User", "Email": "owner@example.com"}])
        emu.add_records(
            [
                {"sobject": "Lead", "LastName": "A", "OwnerId": owner},
                {"sobject": "Lead", "LastName": "B", "OwnerId": None},
            ]
        )
        sf = soap_login(emu)
        records = sf.query("SELECT LastName, Owner.Email FROM Lead ORDER BY LastName")["records"]
        assert records[0]["Owner"]["Email"] == "owner@example.com"
        assert records[0]["Owner"]["attributes"]["type"] == "User"
        assert records[0]["attributes"]["type"] == "Lead"
        assert records[0]["attributes"]["url"].startswith(
            f"/services/data/v{SF_API_VERSION}/sobjects/Lead/00Q"
        )
        assert records[1]["Owner"] is None

    def test_datetimes_use_the_salesforce_format(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """Datetimes given with an offset come back in UTC as 2024-01-01T00:00:00.000+0000."""
        salesforce_emulator.add_records(
            [{"sobject": "Lead", "LastName": "T", "CreatedDate": "2024-01-01T02:00:00+02:00"}]
        )
        sf = soap_login(salesforce_emulator)
        (record,) = sf.query("SELECT CreatedDate, SystemModstamp FROM Lead")["records"]
        assert record["CreatedDate"] == "2024-01-01T00:00:00.000+0000"
        assert record["SystemModstamp"] == "2024-01-01T00:00:00.000+0000"


class TestSoqlErrors:
    @pytest.mark.parametrize(
        ("soql", "code"),
        [
            ("SELECT Id FROM", "MALFORMED_QUERY"),
            (
                "SELECT Id FROM Lead WHERE LastName = 'a' AND Phone = 'b' OR Id = null",
                "MALFORMED_QUERY",
            ),
            ("SELECT Nope FROM Lead", "INVALID_FIELD"),
            ("SELECT Boss.Email FROM Lead", "INVALID_FIELD"),
            ("SELECT Id FROM Widget", "INVALID_TYPE"),
            ("SELECT Id FROM Lead WHERE SystemModstamp > '2024-01-01'", "INVALID_FIELD"),
            ("SELECT Id FROM Lead WHERE IsConverted = 'false'", "INVALID_FIELD"),
        ],
    )
    def test_refused_queries_answer_400_with_the_code(
        self, salesforce_emulator: SalesforceEmulator, soql: str, code: str
    ) -> None:
        """Each kind of bad query answers 400 with Salesforce's errorCode."""
        sf = soap_login(salesforce_emulator)
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.query(soql)
        assert exc.value.status == 400
        assert error_code(exc) == code


class TestSessions:
    def test_expired_sessions_get_invalid_session_id_until_a_new_login(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """After expire_sessions a call answers 401 INVALID_SESSION_ID; a fresh login works."""
        sf = soap_login(salesforce_emulator)
        salesforce_emulator.expire_sessions()
        with pytest.raises(SalesforceExpiredSession) as exc:
            sf.query("SELECT Id FROM Lead")
        assert exc.value.content == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]
        assert soap_login(salesforce_emulator).query("SELECT Id FROM Lead")["done"] is True

    def test_injected_invalid_session_applies_to_a_page_fetch(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """An injected INVALID_SESSION_ID hits the next call, even a nextRecordsUrl fetch."""
        add_leads(salesforce_emulator, 300)
        sf = soap_login(salesforce_emulator)
        first = sf.query("SELECT Id FROM Lead", headers=PAGE_200)
        salesforce_emulator.inject("INVALID_SESSION_ID")
        with pytest.raises(SalesforceExpiredSession):
            sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
        again = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
        assert len(again["records"]) == 100

    def test_a_request_without_a_session_is_refused(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """A REST call with a made-up bearer token gets 401."""
        session = salesforce_session(salesforce_emulator)
        answer = session.get(
            f"{salesforce_emulator.url}/services/data/v{SF_API_VERSION}/query",
            params={"q": "SELECT Id FROM Lead"},
            headers={"Authorization": "Bearer made-up"},
        )
        assert answer.status_code == 401
        assert answer.json()[0]["errorCode"] == "INVALID_SESSION_ID"


class TestLimitsAndFaults:
    def test_request_limit_exceeded(self, salesforce_emulator: SalesforceEmulator) -> None:
        """An injected REQUEST_LIMIT_EXCEEDED answers 403 with Salesforce's body, once."""
        sf = soap_login(salesforce_emulator)
        salesforce_emulator.inject("REQUEST_LIMIT_EXCEEDED")
        with pytest.raises(SalesforceRefusedRequest) as exc:
            sf.query("SELECT Id FROM Lead")
        assert exc.value.content == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]
        assert sf.query("SELECT Id FROM Lead")["done"] is True

    def test_limit_info_counts_each_rest_call(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """Sforce-Limit-Info reports one more call each time, from the number set."""
        sf = soap_login(salesforce_emulator)
        salesforce_emulator.set_api_usage(4000, 5000)
        sf.query("SELECT Id FROM Lead")
        assert (sf.api_usage["api-usage"].used, sf.api_usage["api-usage"].total) == (4001, 5000)
        sf.query("SELECT Id FROM Lead")
        assert sf.api_usage["api-usage"].used == 4002

    def test_server_error_malformed_json_and_delay(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """Injected 500, a truncated JSON body and a delay each affect exactly one call."""
        add_leads(salesforce_emulator, 3)
        sf = soap_login(salesforce_emulator)
        salesforce_emulator.inject("500")
        with pytest.raises(SalesforceGeneralError) as exc:
            sf.query("SELECT Id FROM Lead")
        assert exc.value.status == 500
        salesforce_emulator.inject("malformed_json")
        with pytest.raises(ValueError):
            sf.query("SELECT Id FROM Lead")
        salesforce_emulator.inject("delay", seconds=0.1)
        assert sf.query("SELECT Id FROM Lead")["totalSize"] == 3


class TestUpdates:
    def test_patch_updates_fields_and_bumps_the_modstamp(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """PATCH answers 204, changes the field and moves SystemModstamp and LastModifiedDate."""
        old = "2024-01-01T00:00:00.000+0000"
        (lead,) = salesforce_emulator.add_records(
            [{"sobject": "Lead", "LastName": "A", "SystemModstamp": "2024-01-01T00:00:00Z"}]
        )
        sf = soap_login(salesforce_emulator)
        assert sf.Lead.update(lead, {"Phone": "+15550100"}) == 204
        record = sf.query(
            f"SELECT Phone, SystemModstamp, LastModifiedDate FROM Lead WHERE Id = '{lead}'"
        )["records"][0]
        assert record["Phone"] == "+15550100"
        assert record["SystemModstamp"] > old
        assert record["LastModifiedDate"] == record["SystemModstamp"]

    def test_patch_of_an_unknown_field_or_record_is_refused(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """PATCH of a field the object lacks answers 400; of a missing record 404."""
        (lead,) = salesforce_emulator.add_records([{"sobject": "Lead", "LastName": "A"}])
        sf = soap_login(salesforce_emulator)
        with pytest.raises(SalesforceMalformedRequest):
            sf.Lead.update(lead, {"Nope__c": 1})
        with pytest.raises(SalesforceResourceNotFound):
            sf.Lead.update("00Q000000000000AAA", {"Phone": "1"})

    def test_a_late_commit_keeps_its_old_modstamp(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """update_record with a past SystemModstamp stores that stamp (a late commit)."""
        (lead,) = salesforce_emulator.add_records([{"sobject": "Lead", "LastName": "A"}])
        past = datetime.now(UTC) - timedelta(minutes=5)
        salesforce_emulator.update_record("Lead", lead, {"Phone": "+1555"}, system_modstamp=past)
        sf = soap_login(salesforce_emulator)
        soql = f"SELECT Id FROM Lead WHERE SystemModstamp < {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
        assert sf.query(soql)["totalSize"] == 1


class TestControlApi:
    def test_records_inject_and_query_log_over_http(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """The /__sandbox/ endpoints add records, inject faults and show the query log."""
        http = salesforce_session(salesforce_emulator)
        base = f"{salesforce_emulator.url}/__sandbox"
        added = http.post(
            f"{base}/records", json={"records": [{"sobject": "Lead", "LastName": "X"}]}
        )
        (lead,) = added.json()["ids"]
        stamp = "2023-06-01T00:00:00Z"
        http.post(
            f"{base}/update",
            json={"sobject": "Lead", "id": lead, "fields": {"Phone": "1"}, "SystemModstamp": stamp},
        ).raise_for_status()
        http.post(f"{base}/inject", json={"kind": "REQUEST_LIMIT_EXCEEDED"}).raise_for_status()
        sf = soap_login(salesforce_emulator)
        with pytest.raises(SalesforceRefusedRequest):
            sf.query("SELECT Id FROM Lead")
        record = sf.query("SELECT SystemModstamp FROM Lead")["records"][0]
        assert record["SystemModstamp"] == "2023-06-01T00:00:00.000+0000"
        log = http.get(f"{base}/query-log").json()["queries"]
        assert [entry["soql"] for entry in log] == ["SELECT SystemModstamp FROM Lead"]
        bad = http.post(f"{base}/inject", json={"kind": "nonsense"})
        assert bad.status_code == 400


class TestConfigHelper:
    def test_salesforce_config_points_at_the_emulator(
        self, salesforce_emulator: SalesforceEmulator
    ) -> None:
        """The helper builds a valid password-auth config with the emulator's URL and CA."""
        config = salesforce_config(salesforce_emulator, page_size=200)
        assert str(config.login_url).rstrip("/") == salesforce_emulator.url
        assert config.ca_bundle == str(salesforce_emulator.ca_file)
        assert config.auth.method == "password"
        assert config.page_size == 200


class TestCli:
    def test_serves_until_sigterm_and_exits_zero(self, tmp_path: Path) -> None:
        """`syncd sandbox salesforce` prints its URL and CA, answers a query, exits 0 on SIGTERM."""
        records = tmp_path / "records.jsonl"
        records.write_text(
            json.dumps({"sobject": "Lead", "LastName": "Cli", "Phone": "+15550100"}) + "\n\n"
        )
        command = [
            *(sys.executable, "-m", "syncd", "sandbox", "salesforce"),
            *("--port", "0", "--records", str(records), "--cert-dir", str(tmp_path / "certs")),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split(" on ")[-1].strip()
            ca_file = process.stdout.readline().split(": ", 1)[-1].strip()
            pubsub = process.stdout.readline().split(" on ")[-1].strip()
            assert pubsub.startswith("127.0.0.1:") and not pubsub.endswith(":0")
            assert url.startswith("https://127.0.0.1:")
            assert Path(ca_file) == tmp_path / "certs" / "ca.pem"
            session = requests.Session()
            session.trust_env = False
            session.verify = ca_file
            session_id, instance = SalesforceLogin(
                username="sandbox@example.com",
                password="sandbox-password",
                security_token="sandbox-token",
                sf_version=SF_API_VERSION,
                session=session,
                scratch_url=url,
            )
            sf = Salesforce(session_id=session_id, instance=instance, session=session)
            (record,) = sf.query("SELECT LastName, Phone FROM Lead")["records"]
            assert (record["LastName"], record["Phone"]) == ("Cli", "+15550100")
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
        assert code == 0
