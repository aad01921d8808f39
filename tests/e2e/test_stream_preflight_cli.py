"""``syncd check-config --connect`` for a sync in stream mode: the real CLI, the emulators.

Each failure is one line saying what to fix and exit status 1; a good
configuration passes with status 0 and the summary names the stream.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.salesforce import ORG_ID, SalesforceEmulator
from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, clean_env, run_syncd

STREAM: dict[str, Any] = {
    "source": {"mode": "stream"},
    "start_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
}


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        yield h


def check(
    harness: Harness, env: dict[str, str] | None = None, **config: Any
) -> subprocess.CompletedProcess[str]:
    """``check-config --connect`` on a stream config changed by ``config``; the result."""
    sync = {**STREAM, **config.pop("sync", {})}
    path = harness.write_config("check.yaml", sync=sync, **config)
    return run_syncd("check-config", "--connect", cwd=harness.tmp, config=path, env=env, timeout=60)


def pubsub_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    output = result.stdout + result.stderr
    return [line for line in output.splitlines() if line.startswith("pubsub:")]


def failed_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one failing pubsub line, on stderr; the command exited 1."""
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("pubsub:")]
    return line


def salesforce_with(harness: Harness, **values: Any) -> dict[str, Any]:
    section: dict[str, Any] = harness.config()["salesforce"]
    return {**section, **values}


class TestStreamPreflight:
    def test_good_config_passes(self, harness: Harness) -> None:
        """GetTopic and GetSchema succeed; the summary names the topic and the safety net."""
        result = check(harness)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "web: Lead -> agt_1; stream /data/LeadChangeEvent (reconcile every 10m);" in (
            result.stdout
        )
        address = harness.salesforce.pubsub_address
        lines = pubsub_lines(result)
        assert lines[0] == f"pubsub: ok ({address}: TLS and the Salesforce session accepted)"
        assert lines[1].startswith("pubsub: sync web: ok (topic /data/LeadChangeEvent, schema ")
        assert len(lines) == 2, lines

    def test_wrong_port(self, harness: Harness) -> None:
        """A port nothing listens on: exit 1, one line naming salesforce.pubsub_url."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        address = f"127.0.0.1:{port}"
        result = check(harness, salesforce=salesforce_with(harness, pubsub_url=address))
        line = failed_line(result)
        assert line.startswith(f"pubsub: FAILED: cannot connect to {address}: "), line
        assert "Connection refused; check salesforce.pubsub_url" in line

    def test_untrusted_certificate_whatever_the_environment(self, harness: Harness) -> None:
        """Another CA's certificate fails TLS even when every CA variable of the machine
        (REQUESTS_CA_BUNDLE, SSL_CERT_FILE, gRPC's roots) trusts that CA: only
        salesforce.ca_bundle counts, as in the daemon."""
        other = SalesforceEmulator(cert_dir=harness.tmp / "other-certs")
        other.start()
        try:
            ca = str(other.ca_file)
            env = clean_env(
                REQUESTS_CA_BUNDLE=ca,
                CURL_CA_BUNDLE=ca,
                SSL_CERT_FILE=ca,
                GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=ca,
            )
            address = other.pubsub_address
            salesforce = salesforce_with(harness, pubsub_url=address)
            result = check(harness, env=env, salesforce=salesforce)
        finally:
            other.stop()
        line = failed_line(result)
        assert line.startswith(f"pubsub: FAILED: TLS with {address} failed: certificate "), line
        assert "set salesforce.ca_bundle to a file with the CA that signed it" in line
        assert "salesforce: ok (logged in)" in result.stdout
        assert "Handshake failed" not in result.stderr  # gRPC's own line is not printed

    def test_unknown_topic(self, harness: Harness) -> None:
        """A topic the org does not have: exit 1, one line saying what to select or fix."""
        result = check(
            harness, sync={"source": {"mode": "stream", "topic": "/data/X__ChangeEvent"}}
        )
        line = failed_line(result)
        assert line.startswith("pubsub: sync web: FAILED: topic /data/X__ChangeEvent not found")
        assert "select X__c in Setup, Change Data Capture, or fix source.topic" in line

    def test_refused_session(self, harness: Harness) -> None:
        """A session the org no longer knows: the Pub/Sub API refuses it, one line, exit 1."""
        auth = {
            "method": "session",
            "session_id": f"{ORG_ID[:15]}!expired-session",
            "instance_url": harness.salesforce.url,
        }
        result = check(harness, salesforce=salesforce_with(harness, auth=auth))
        line = failed_line(result)
        address = harness.salesforce.pubsub_address
        assert line.startswith(
            f"pubsub: FAILED: {address} refused the Salesforce session (UNAUTHENTICATED: "
        ), line
