"""The Salesforce source against a misbehaving org: page URLs, refused logins, limit kinds."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncd.adapters.salesforce import (
    LOGIN_BACKOFF_MAX,
    LoginBackoff,
    SalesforceAuthError,
    SalesforceLimitExceeded,
    SalesforceProtocolError,
    SalesforceSource,
    limit_kind,
    next_records_path,
)
from syncd.sandbox.salesforce import SalesforceEmulator
from tests.clock import Clock
from tests.salesforce_fixtures import salesforce_config

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SOQL = "SELECT Phone, Id, SystemModstamp FROM Lead ORDER BY SystemModstamp, Id"


def leads(count: int) -> list[dict[str, Any]]:
    return [
        {
            "sobject": "Lead",
            "LastName": f"L{n}",
            "Phone": f"+1415555{n:04d}",
            "SystemModstamp": (T0 + timedelta(seconds=n)).isoformat(),
        }
        for n in range(count)
    ]


@pytest.fixture
def org(salesforce_emulator: SalesforceEmulator) -> SalesforceEmulator:
    salesforce_emulator.add_records(leads(450))
    return salesforce_emulator


class Listener:
    """A TCP port that counts the connections it is offered (the "attacker's" host)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def attacker() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


class TestNextRecordsUrl:
    @pytest.mark.parametrize(
        "template",
        [
            "https://127.0.0.1:{port}/services/data/v61.0/query/01gX-200",
            "@127.0.0.1:{port}/services/data/v61.0/query/01gX-200",
            "//127.0.0.1:{port}/services/data/v61.0/query/01gX-200",
            "/services/data/v61.0/query/../../../x@127.0.0.1:{port}",
            "/services/data/v61.0/query\\@127.0.0.1:{port}",
            "http://127.0.0.1:{port}/services/data/v61.0/query/01gX-200",
        ],
    )
    def test_off_host_page_is_refused_unsent(
        self, org: SalesforceEmulator, attacker: Listener, template: str
    ) -> None:
        """An off-host nextRecordsUrl is an error; the session goes nowhere, not even home."""
        source = SalesforceSource(salesforce_config(org, page_size=200))
        org.inject("next_records_url", url=template.format(port=attacker.port))
        pages = source.query_pages(SOQL)
        assert len(next(pages)) == 200
        calls = org.api_usage()[0]
        with pytest.raises(SalesforceProtocolError, match="nextRecordsUrl"):
            next(pages)
        assert attacker.connections == 0
        assert org.api_usage()[0] == calls  # no request was sent to the org either
        source.close()

    def test_on_host_paths_are_followed(self, org: SalesforceEmulator) -> None:
        """Salesforce's own page paths still work (every record, once)."""
        source = SalesforceSource(salesforce_config(org, page_size=200))
        ids = [r["Id"] for page in source.query_pages(SOQL) for r in page]
        assert len(ids) == len(set(ids)) == 450
        assert next_records_path("/services/data/v61.0/query/01gABC-2000") == (
            "/services/data/v61.0/query/01gABC-2000"
        )
        for bad in (None, 7, "", "/services/data/", "/services/data//x", "/services/data/a?b"):
            with pytest.raises(SalesforceProtocolError):
                next_records_path(bad)
        source.close()


class TestLoginBackoff:
    def test_refused_logins_back_off(self, org: SalesforceEmulator) -> None:
        """A wrong password is tried once, then not again until the backoff has passed."""
        clock = Clock(T0)
        auth = {
            "method": "password",
            "username": org.username,
            "password": "wrong",
            "security_token": org.security_token,
        }
        source = SalesforceSource(salesforce_config(org, auth=auth), now=clock)
        for _ in range(5):  # five polls within a few seconds
            with pytest.raises(SalesforceAuthError):
                list(source.query_pages(SOQL))
            clock.at += timedelta(seconds=3)
        assert org.login_attempts() == 1
        problem = source.login_backoff.problem(clock())
        assert problem is not None and "INVALID_LOGIN" in problem
        assert "2024-05-01T12:01:00+00:00" in problem  # the next attempt, one minute on
        seen = [org.login_attempts()]
        for _ in range(12):  # the waits double: 1, 2, 4, ... minutes, up to the maximum
            clock.at = source.login_backoff.next_attempt or clock.at
            with pytest.raises(SalesforceAuthError, match="INVALID_LOGIN"):
                list(source.query_pages(SOQL))
            seen.append(org.login_attempts())
        assert seen == list(range(1, 14))
        assert source.login_backoff.next_attempt == clock.at + LOGIN_BACKOFF_MAX
        assert timedelta(minutes=15) <= LOGIN_BACKOFF_MAX
        source.close()

    def test_sources_sharing_the_backoff_log_in_one_at_a_time(
        self, org: SalesforceEmulator
    ) -> None:
        """Threads starting together (the first poll, the org check, ...) with a wrong
        password: one login is sent, the others wait for its answer and are held back."""
        clock = Clock(T0)
        auth = {
            "method": "password",
            "username": org.username,
            "password": "wrong",
            "security_token": org.security_token,
        }
        backoff = LoginBackoff()
        sources = [
            SalesforceSource(salesforce_config(org, auth=auth), backoff, now=clock)
            for _ in range(8)
        ]
        start = threading.Barrier(len(sources))
        errors: list[str] = []

        def poll(source: SalesforceSource) -> None:
            start.wait()
            try:
                list(source.query_pages(SOQL))
            except SalesforceAuthError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=poll, args=(source,)) for source in sources]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert org.login_attempts() == 1
        assert len(errors) == len(sources)
        assert sum("held back" in error for error in errors) == len(sources) - 1
        for source in sources:
            source.close()

    def test_success_resets(self, org: SalesforceEmulator) -> None:
        """A login that works clears the backoff."""
        clock = Clock(T0)
        source = SalesforceSource(salesforce_config(org), now=clock)
        source.login_backoff.refused("INVALID_LOGIN: earlier", clock())
        with pytest.raises(SalesforceAuthError, match="held back"):
            source.login()
        assert org.login_attempts() == 0
        clock.at += timedelta(minutes=2)
        assert sum(len(p) for p in source.query_pages(SOQL)) == 450
        assert source.login_backoff.problem(clock()) is None
        assert source.login_backoff.refusals == 0
        source.close()


class TestLimitKinds:
    def test_concurrent(self, org: SalesforceEmulator) -> None:
        """The concurrent-request limit is told apart from the daily one."""
        source = SalesforceSource(salesforce_config(org))
        source.login()
        org.inject("REQUEST_LIMIT_EXCEEDED", limit="concurrent")
        with pytest.raises(SalesforceLimitExceeded) as raised:
            list(source.query_pages(SOQL))
        assert raised.value.kind == "concurrent"
        assert "ConcurrentPerOrgLongTxn" in str(raised.value)

    def test_daily_then_limits_checked_first(self, org: SalesforceEmulator) -> None:
        """After the daily limit, the next query first asks /limits and waits while none is left."""
        source = SalesforceSource(salesforce_config(org))
        source.login()
        org.set_api_usage(15000, 15000)
        org.inject("REQUEST_LIMIT_EXCEEDED")
        with pytest.raises(SalesforceLimitExceeded) as raised:
            list(source.query_pages(SOQL))
        assert raised.value.kind == "daily"
        queries = len(org.query_log())
        org.set_api_usage(15000, 15000)
        with pytest.raises(SalesforceLimitExceeded, match="Remaining 0 of 15000") as again:
            list(source.query_pages(SOQL))
        assert again.value.kind == "daily"
        assert len(org.query_log()) == queries  # no query ran, only /limits
        org.set_api_usage(100, 15000)
        assert sum(len(p) for p in source.query_pages(SOQL)) == 450

    @pytest.mark.parametrize(
        ("message", "usage", "kind"),
        [
            ("ConcurrentPerOrgLongTxn Limit exceeded.", (10, 100), "concurrent"),
            ("Number of concurrent requests exceeded", None, "concurrent"),
            ("TotalRequests Limit exceeded.", (10, 100), "daily"),
            ("Limit exceeded", (10, 100), "concurrent"),
            ("Limit exceeded", (100, 100), "daily"),
            ("", None, "daily"),
        ],
    )
    def test_kind(self, message: str, usage: tuple[int, int] | None, kind: str) -> None:
        """The message decides; without one, Sforce-Limit-Info does; unknown is daily."""
        assert limit_kind(message, usage) == kind
