"""Org identity with the real daemon: a changed org or a sandbox sends nothing.

``syncd run`` and ``syncd trust-org`` are real subprocesses sharing one SQLite
file; the Salesforce emulator answers ``SELECT ... FROM Organization`` as the
org a test makes it (a refresh gives it a new Id).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, lead_records

REFRESHED = "00D8d000000RfshEAC"


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        yield h


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def polls_after(harness: Harness, count: int) -> None:
    start = harness.successful_polls()
    harness.wait_until(lambda: harness.successful_polls() >= start + count, f"{count} more polls")


class TestOrgChange:
    def test_a_changed_org_stops_delivery_until_trust_org(self, harness: Harness) -> None:
        harness.salesforce.add_records(lead_records(3))
        daemon = harness.start()
        harness.wait_until(lambda: harness.count_state("accepted") == 3, "3 leads accepted")
        assert daemon.stop() == 0, daemon.output()
        original = harness.salesforce.org_id

        harness.salesforce.set_org(REFRESHED)  # a sandbox refresh: a new org Id
        harness.salesforce.add_records(lead_records(4, start=3))
        daemon = harness.start()
        harness.wait_until(lambda: harness.count_state("queued") == 4, "4 new leads queued")
        polls_after(harness, 3)
        assert len(harness.simz.received()) == 3
        refusal = daemon.wait_log("delivery stopped: Salesforce org not trusted")
        assert REFRESHED in refusal["problem"] and original in refusal["problem"]

        refused = harness.cli("trust-org", "--reason", "refreshed QA org", stdin="n\n")
        assert refused.returncode == 1 and "nothing was trusted" in refused.stderr
        out = ok(harness.cli("trust-org", "--reason", "refreshed QA org", "--yes"))
        assert f"This database trusts org {original} (by first sync" in out
        assert f"trusted: production org 'Sandbox Emulator Org' {REFRESHED}" in out
        harness.wait_until(lambda: harness.count_state("accepted") == 7, "7 leads accepted")
        counts = harness.simz.received_counts()
        assert len(counts) == 7 and set(counts.values()) == {1}
        assert daemon.stop() == 0, daemon.output()
        assert harness.query("SELECT action, scope, name, actor, reason FROM operator_actions") == [
            ("trust-org", "org", REFRESHED, "opuser", "refreshed QA org")
        ]
        status = ok(harness.cli("status"))
        assert re.search(rf"^  {REFRESHED} +production +\S+ \S+Z +yes, by opuser ", status, re.M)
        assert re.search(
            rf"^  {original} +production +\S+ \S+Z +NO: syncd trust-org$", status, re.M
        )
        again = ok(harness.cli("trust-org", "--reason", "again", "--yes"))
        assert "already trusts it" in again and "nothing changed" in again


class TestSandboxOrg:
    def test_a_sandbox_sends_nothing_without_the_setting(self, harness: Harness) -> None:
        harness.salesforce.set_org(is_sandbox=True)
        harness.salesforce.add_records(lead_records(3))
        daemon = harness.start()
        harness.wait_until(lambda: harness.count_state("queued") == 3, "3 leads queued")
        polls_after(harness, 3)
        assert harness.simz.received() == []
        refusal = daemon.wait_log("delivery stopped: Salesforce org not trusted")
        assert "salesforce.sandbox: allow" in refusal["problem"]
        assert daemon.stop() == 0, daemon.output()
        assert harness.query("SELECT org_id, trusted FROM org_identity") == [
            (harness.salesforce.org_id, 0)
        ]

        config = harness.config()
        config["salesforce"]["sandbox"] = "allow"
        harness.write_config(salesforce=config["salesforce"])
        harness.start()
        harness.wait_until(lambda: harness.count_state("accepted") == 3, "3 leads accepted")
        assert len(harness.simz.received()) == 3
