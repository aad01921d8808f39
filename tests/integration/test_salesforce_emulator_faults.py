"""The emulator's faults for a misbehaving org, over its control API and real HTTPS."""

from __future__ import annotations

import pytest
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceRefusedRequest

from syncd.sandbox.salesforce import SalesforceEmulator
from tests.integration.test_salesforce_emulator import add_leads, soap_login
from tests.salesforce_fixtures import salesforce_session


class TestControlApi:
    def test_concurrent_limit(self, salesforce_emulator: SalesforceEmulator) -> None:
        """inject REQUEST_LIMIT_EXCEEDED with limit=concurrent answers the concurrent message."""
        http = salesforce_session(salesforce_emulator)
        base = f"{salesforce_emulator.url}/__sandbox"
        http.post(
            f"{base}/inject", json={"kind": "REQUEST_LIMIT_EXCEEDED", "limit": "concurrent"}
        ).raise_for_status()
        sf = soap_login(salesforce_emulator)
        with pytest.raises(SalesforceRefusedRequest) as exc:
            sf.query("SELECT Id FROM Lead")
        assert exc.value.content == [
            {
                "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                "errorCode": "REQUEST_LIMIT_EXCEEDED",
            }
        ]

    def test_next_records_url_and_limits(self, salesforce_emulator: SalesforceEmulator) -> None:
        """nextRecordsUrl can be replaced; /limits reports the daily allowance left."""
        add_leads(salesforce_emulator, 3)
        http = salesforce_session(salesforce_emulator)
        base = f"{salesforce_emulator.url}/__sandbox"
        hostile = "https://attacker.example/services/data/v61.0/query/x-2"
        http.post(
            f"{base}/inject", json={"kind": "next_records_url", "url": hostile}
        ).raise_for_status()
        sf = soap_login(salesforce_emulator)
        answer = sf.query("SELECT Id FROM Lead")
        assert (answer["nextRecordsUrl"], answer["done"], len(answer["records"])) == (
            hostile,
            False,
            3,
        )
        salesforce_emulator.set_api_usage(100, 1000)
        limits = sf.restful("limits/")
        assert limits["DailyApiRequests"] == {"Max": 1000, "Remaining": 899}

    def test_login_attempts(self, salesforce_emulator: SalesforceEmulator) -> None:
        """Every login asked for is counted, refused ones included."""
        soap_login(salesforce_emulator)
        with pytest.raises(SalesforceAuthenticationFailed):
            soap_login(salesforce_emulator, password="wrong")
        http = salesforce_session(salesforce_emulator)
        counted = http.get(f"{salesforce_emulator.url}/__sandbox/login-attempts").json()
        assert counted == {"attempts": 2} and salesforce_emulator.login_attempts() == 2
