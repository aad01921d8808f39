"""Integration tests for syncd.adapters.salesforce against the emulator over real HTTPS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syncd.adapters.salesforce import (
    SalesforceAuthError,
    SalesforceLimitExceeded,
    SalesforceQueryError,
    SalesforceSource,
    SalesforceUnavailable,
    login_base_url,
)
from syncd.config.models import SalesforceConfig
from syncd.sandbox.salesforce import SalesforceEmulator
from tests.salesforce_fixtures import salesforce_config

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SOQL = (
    "SELECT Phone, Id, SystemModstamp FROM Lead WHERE SystemModstamp >= 2024-01-01T00:00:00Z "
    "ORDER BY SystemModstamp, Id"
)


def leads(count: int) -> list[dict[str, Any]]:
    return [
        {
            "sobject": "Lead",
            "LastName": f"L{n}",
            "Phone": f"+1415555{n % 10000:04d}",
            "SystemModstamp": (T0 + timedelta(seconds=n // 7)).isoformat(),
        }
        for n in range(count)
    ]


def read_all(source: SalesforceSource, soql: str = SOQL) -> list[list[dict[str, Any]]]:
    return list(source.query_pages(soql))


@pytest.fixture
def org(salesforce_emulator: SalesforceEmulator) -> SalesforceEmulator:
    salesforce_emulator.add_records(leads(450))
    return salesforce_emulator


class TestLogins:
    def test_password_login_and_paging(self, org: SalesforceEmulator) -> None:
        """A SOAP password login reads every record, in pages of the configured size."""
        source = SalesforceSource(salesforce_config(org, page_size=200))
        pages = read_all(source)
        assert [len(p) for p in pages] == [200, 200, 50]
        ids = [r["Id"] for p in pages for r in p]
        assert len(set(ids)) == 450
        source.close()

    def test_records_are_plain_dicts(self, org: SalesforceEmulator) -> None:
        """Records decode to plain dicts in Salesforce's field order, attributes included."""
        source = SalesforceSource(salesforce_config(org, page_size=200))
        record = read_all(source)[0][0]
        assert type(record) is dict and type(record["attributes"]) is dict
        assert list(record) == ["attributes", "Phone", "Id", "SystemModstamp"]
        source.close()

    def test_client_credentials(self, org: SalesforceEmulator) -> None:
        """The OAuth2 client credentials flow logs in and queries."""
        auth = {
            "method": "client_credentials",
            "consumer_key": org.consumer_key,
            "consumer_secret": org.consumer_secret,
        }
        source = SalesforceSource(salesforce_config(org, auth=auth))
        assert sum(len(p) for p in read_all(source)) == 450

    def test_jwt_bearer(self, salesforce_emulator: SalesforceEmulator, tmp_path: Path) -> None:
        """The JWT bearer flow signs with RS256 and the emulator verifies the signature."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        emulator = SalesforceEmulator(cert_dir=tmp_path / "jwt-certs", jwt_public_key=public)
        emulator.start()
        try:
            emulator.add_records(leads(3))
            (tmp_path / "key.pem").write_bytes(pem)
            auth = {
                "method": "jwt",
                "username": emulator.username,
                "consumer_key": emulator.consumer_key,
                "private_key_file": str(tmp_path / "key.pem"),
            }
            source = SalesforceSource(salesforce_config(emulator, auth=auth))
            assert sum(len(p) for p in read_all(source)) == 3
        finally:
            emulator.stop()

    def test_bad_password(self, org: SalesforceEmulator) -> None:
        """A refused login is a clear SalesforceAuthError, not a traceback from deep inside."""
        auth = {"method": "password", "username": org.username, "password": "wrong"}
        source = SalesforceSource(salesforce_config(org, auth=auth))
        with pytest.raises(SalesforceAuthError, match="INVALID_LOGIN"):
            read_all(source)

    def test_session_login_cannot_renew(self, org: SalesforceEmulator) -> None:
        """A session-id login works until the session expires, then says it cannot log in."""
        first = SalesforceSource(salesforce_config(org))
        first.login()
        assert first._sf is not None
        auth = {
            "method": "session",
            "session_id": first._sf.session_id,
            "instance_url": org.url,
        }
        source = SalesforceSource(salesforce_config(org, auth=auth))
        assert sum(len(p) for p in read_all(source)) == 450
        org.expire_sessions()
        with pytest.raises(SalesforceAuthError, match="cannot log in again"):
            read_all(source)

    def test_login_base_url(self, org: SalesforceEmulator) -> None:
        """login_url wins; otherwise the domain picks the login host."""
        assert login_base_url(salesforce_config(org)) == org.url
        plain = SalesforceConfig.model_validate(
            {"auth": {"method": "password", "username": "u", "password": "p"}, "domain": "test"}
        )
        assert login_base_url(plain) == "https://test.salesforce.com"


class TestSessionExpiry:
    def test_expiry_between_pages(self, org: SalesforceEmulator) -> None:
        """Sessions expiring mid-paging lead to one fresh login and no lost or repeated record."""
        source = SalesforceSource(salesforce_config(org, page_size=200))
        pages = source.query_pages(SOQL)
        ids = [r["Id"] for r in next(pages)]
        org.expire_sessions()
        for page in pages:
            ids += [r["Id"] for r in page]
        assert len(ids) == len(set(ids)) == 450

    def test_injected_on_first_query(self, org: SalesforceEmulator) -> None:
        """INVALID_SESSION_ID on the first query is retried once after a fresh login."""
        source = SalesforceSource(salesforce_config(org))
        source.login()
        org.inject("INVALID_SESSION_ID")
        assert sum(len(p) for p in read_all(source)) == 450

    def test_twice_is_an_error(self, org: SalesforceEmulator) -> None:
        """A session refused again right after a fresh login is an error, not a loop."""
        source = SalesforceSource(salesforce_config(org))
        org.inject("INVALID_SESSION_ID", count=2)
        with pytest.raises(SalesforceAuthError):
            read_all(source)


class TestErrors:
    def test_limit_exceeded(self, org: SalesforceEmulator) -> None:
        """REQUEST_LIMIT_EXCEEDED becomes SalesforceLimitExceeded."""
        source = SalesforceSource(salesforce_config(org))
        source.login()
        org.inject("REQUEST_LIMIT_EXCEEDED")
        with pytest.raises(SalesforceLimitExceeded):
            read_all(source)

    def test_server_error(self, org: SalesforceEmulator) -> None:
        """A 500 is SalesforceUnavailable."""
        source = SalesforceSource(salesforce_config(org))
        source.login()
        org.inject("500")
        with pytest.raises(SalesforceUnavailable):
            read_all(source)

    def test_malformed_json_mid_paging(self, org: SalesforceEmulator) -> None:
        """An unreadable page is SalesforceUnavailable, after the pages before it."""
        source = SalesforceSource(salesforce_config(org, page_size=200))
        # Queued before the first query: the next page is read ahead while the first
        # is handed over, so a fault injected after next() could miss that request.
        org.inject("delay", seconds=0)
        org.inject("malformed_json")
        pages = source.query_pages(SOQL)
        assert len(next(pages)) == 200
        with pytest.raises(SalesforceUnavailable, match="JSON"):
            next(pages)

    def test_connection_refused(self, org: SalesforceEmulator) -> None:
        """Nothing listening is SalesforceUnavailable."""
        config = salesforce_config(org, login_url="https://127.0.0.1:9")
        with pytest.raises(SalesforceUnavailable):
            read_all(SalesforceSource(config))

    def test_invalid_field(self, org: SalesforceEmulator) -> None:
        """A query naming an unknown field is a SalesforceQueryError with Salesforce's message."""
        source = SalesforceSource(salesforce_config(org))
        with pytest.raises(SalesforceQueryError, match="INVALID_FIELD"):
            read_all(source, "SELECT Nope__c, Id FROM Lead")

    def test_malformed_query(self, org: SalesforceEmulator) -> None:
        """A malformed query is a SalesforceQueryError naming MALFORMED_QUERY."""
        source = SalesforceSource(salesforce_config(org))
        with pytest.raises(SalesforceQueryError, match="MALFORMED_QUERY"):
            read_all(source, "SELECT FROM Lead WHERE")


class TestHeaders:
    def test_batch_size_and_usage(self, org: SalesforceEmulator) -> None:
        """Pages follow Sforce-Query-Options batchSize; api_usage reads Sforce-Limit-Info."""
        org.set_api_usage(100, 1000)
        source = SalesforceSource(salesforce_config(org, page_size=300))
        assert source.api_usage() is None
        pages = read_all(source)
        assert [len(p) for p in pages] == [300, 150]
        used, total = source.api_usage() or (0, 0)
        assert total == 1000 and used >= 100
