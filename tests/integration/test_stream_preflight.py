"""``check-config --connect`` on the Pub/Sub API: GetTopic and GetSchema against the emulator.

Real TLS over loopback, the real Salesforce login (the emulator's), one line
per failure naming the setting to fix. The CLI and its exit status are in
``tests/e2e/test_stream_preflight_cli.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.adapters.salesforce import SalesforceSource
from syncd.config.models import Config
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.connect_check import Check, check_connections
from syncd.services.stream_check import check_streams


def config(emulator: SalesforceEmulator, tmp: Path, *, source: Any = None, **sf: Any) -> Config:
    """A config with one sync in stream mode (``source`` adds to its source section)."""
    salesforce: dict[str, Any] = {
        "auth": {
            "method": "password",
            "username": emulator.username,
            "password": emulator.password,
            "security_token": emulator.security_token,
        },
        "login_url": emulator.url,
        "ca_bundle": str(emulator.ca_file),
        "pubsub_url": emulator.pubsub_address,
        **sf,
    }
    return Config.model_validate(
        {
            "database": {"url": f"sqlite:///{tmp / 'data' / 'syncd.db'}"},
            "salesforce": salesforce,
            "simz": {"base_url": "https://127.0.0.1:1", "api_key": "k"},
            "syncs": [
                {
                    "name": "web",
                    "object": "Lead",
                    "agent": "agt_1",
                    "mapping": {"phoneNumber": "Phone"},
                    "source": {"mode": "stream", **(source or {})},
                }
            ],
        }
    )


def run(config: Config, *, expire: SalesforceEmulator | None = None) -> list[Check]:
    """Log in as check-config does, then the Pub/Sub checks (``expire``: sessions expired)."""
    source = SalesforceSource(config.salesforce)
    try:
        source.login()
        if expire is not None:
            expire.expire_sessions()
        return check_streams(config, lambda: source.session())
    finally:
        source.close()


def one_failure(checks: list[Check]) -> str:
    failed = [check.text for check in checks if not check.ok]
    assert len(failed) == 1, checks
    assert "\n" not in failed[0]
    return failed[0]


@pytest.fixture
def other_emulator(tmp_path: Path) -> Iterator[SalesforceEmulator]:
    """A second org with a CA of its own: its Pub/Sub port is TLS nobody here trusts."""
    emulator = SalesforceEmulator(cert_dir=tmp_path / "other-certs")
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestPreflight:
    def test_good_config_passes(
        self, salesforce_emulator: SalesforceEmulator, tmp_path: Path
    ) -> None:
        """The topic and its schema are found: an ok line for the endpoint and for the sync."""
        checks = run(config(salesforce_emulator, tmp_path))
        assert all(check.ok for check in checks), checks
        assert checks[0].text.startswith(f"pubsub: ok ({salesforce_emulator.pubsub_address}")
        assert checks[1].text.startswith("pubsub: sync web: ok (topic /data/LeadChangeEvent")

    def test_wrong_port(self, salesforce_emulator: SalesforceEmulator, tmp_path: Path) -> None:
        """Nothing listening: one line naming salesforce.pubsub_url."""
        address = f"127.0.0.1:{closed_port()}"
        line = one_failure(run(config(salesforce_emulator, tmp_path, pubsub_url=address)))
        assert line.startswith(f"pubsub: FAILED: cannot connect to {address}: "), line
        assert "Connection refused" in line and "check salesforce.pubsub_url" in line

    def test_untrusted_certificate(
        self,
        salesforce_emulator: SalesforceEmulator,
        other_emulator: SalesforceEmulator,
        tmp_path: Path,
    ) -> None:
        """A certificate not signed by salesforce.ca_bundle's CA: one TLS line naming it."""
        address = other_emulator.pubsub_address
        line = one_failure(run(config(salesforce_emulator, tmp_path, pubsub_url=address)))
        assert line.startswith(f"pubsub: FAILED: TLS with {address} failed: "), line
        assert "certificate verify failed" in line
        assert f"salesforce.ca_bundle ({salesforce_emulator.ca_file})" in line

    @pytest.mark.parametrize(
        ("topic", "fix"),
        [
            ("/data/Invoice__ChangeEvent", "select Invoice__c in Setup, Change Data Capture"),
            ("/data/CaseChangeEvent", "select Case in Setup, Change Data Capture"),
        ],
    )
    def test_unknown_topic(
        self, salesforce_emulator: SalesforceEmulator, tmp_path: Path, topic: str, fix: str
    ) -> None:
        """A topic the org does not have: the endpoint is fine, the sync's line says why."""
        checks = run(config(salesforce_emulator, tmp_path, source={"topic": topic}))
        assert checks[0].ok, checks
        line = one_failure(checks)
        assert line.startswith(f"pubsub: sync web: FAILED: topic {topic} not found"), line
        assert fix in line and "source.topic" in line

    def test_refused_session(self, salesforce_emulator: SalesforceEmulator, tmp_path: Path) -> None:
        """A session the Pub/Sub API refuses (UNAUTHENTICATED): one line, checked once."""
        checks = run(config(salesforce_emulator, tmp_path), expire=salesforce_emulator)
        line = one_failure(checks)
        assert len(checks) == 1
        assert line.startswith(
            f"pubsub: FAILED: {salesforce_emulator.pubsub_address} refused the Salesforce "
            "session (UNAUTHENTICATED: "
        ), line
        assert "salesforce.pubsub_url" in line

    def test_login_failed_is_not_checked(
        self, salesforce_emulator: SalesforceEmulator, tmp_path: Path
    ) -> None:
        """Without a session nothing is asked of the Pub/Sub API; the line says why."""
        auth = {"method": "password", "username": salesforce_emulator.username, "password": "x"}
        checks = check_connections(config(salesforce_emulator, tmp_path, auth=auth))
        texts = [check.text for check in checks if not check.ok]
        assert "pubsub: not checked: the Salesforce login failed" in texts, texts

    def test_only_streamed_syncs(
        self, salesforce_emulator: SalesforceEmulator, tmp_path: Path
    ) -> None:
        """Polled syncs need no Pub/Sub API: no line at all."""
        checks = run(config(salesforce_emulator, tmp_path, source={"mode": "poll"}))
        assert checks == []
