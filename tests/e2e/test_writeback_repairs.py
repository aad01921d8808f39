"""Write-back repairs end to end: the start-up field check, a field removed while running,
``writeback resync`` and the audit rows of the operator commands (the real CLI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, json_lines, lead_records
from tests.e2e.test_writeback import CUSTOM_FIELDS, FIELDS, statuses


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        for spec in CUSTOM_FIELDS:
            h.salesforce.declare_field(spec)
        h.write_config(sync={"writeback": {"fields": FIELDS}})
        yield h


def audit(harness: Harness) -> list[tuple[str, str, str, str]]:
    return [
        tuple(row)  # type: ignore[misc]
        for row in harness.query("SELECT action, actor, name, reason FROM operator_actions")
    ]


def test_run_refuses_to_start_on_a_missing_field(
    tmp_path: Path, simz_emulator: SimzEmulator
) -> None:
    """The same line as check-config --connect, exit 1, nothing sent."""
    with Harness(tmp_path, simz_emulator) as harness:
        for spec in CUSTOM_FIELDS[1:]:  # SimZ_Status__c left out
            harness.salesforce.declare_field(spec)
        harness.write_config(sync={"writeback": {"fields": FIELDS}})
        harness.salesforce.add_records(lead_records(1))
        result = harness.cli("run", timeout=60)
        assert result.returncode == 1, result.stdout + result.stderr
        line = (
            "writeback: FAILED: sync web: writeback.fields.status: "
            "Lead.SimZ_Status__c does not exist"
        )
        refused = [e for e in json_lines(result.stdout) if e.get("event") == "cannot start"]
        assert [e["error"] for e in refused] == [line]
        check = harness.cli("check-config", "--connect")
        assert f"{line}" in check.stderr
        assert harness.simz.received_counts() == {}


def test_a_field_made_read_only_while_running_shows_as_broken(harness: Harness) -> None:
    harness.salesforce.add_records(lead_records(1))
    daemon = harness.start()
    harness.wait_until(lambda: statuses(harness) == ["done"], "the first write-back done")
    harness.salesforce.declare_field("Lead.SimZ_Status__c:picklist:40:readonly")
    harness.salesforce.add_records(lead_records(2, start=1))
    harness.wait_until(lambda: statuses(harness).count("failed") == 2, "two failed write-backs")
    failed = daemon.wait_log("write-back pass", status="failed")
    assert failed["level"] == "error"
    assert "INVALID_FIELD_FOR_INSERT_UPDATE" in failed["error"]
    code, metrics = daemon.get("/metrics")
    assert code == 200 and 'syncd_writeback_broken{sync="web"} 1.0' in metrics
    status = harness.cli("status")
    assert status.returncode == 0, status.stderr
    assert "write-back     BROKEN: 2 write(s) refused on a field: " in status.stdout
    assert daemon.stop() == 0, daemon.output()


def test_resync_and_retry_queue_write_backs_with_an_audit_row(harness: Harness) -> None:
    """Leads sent while write-back was off get their outcome written once it is on."""
    harness.write_config()  # write-back off
    ids = harness.salesforce.add_records(lead_records(3))
    once = harness.cli("once")
    assert once.returncode == 0, once.stderr
    assert harness.count_state("accepted") == 3 and statuses(harness) == []

    harness.write_config(sync={"writeback": {"fields": FIELDS}})
    unconfirmed = harness.cli("writeback", "resync", "--sync", "web")
    assert unconfirmed.returncode == 1 and "rerun with --yes" in unconfirmed.stderr
    assert statuses(harness) == []
    resync = harness.cli(
        "writeback", "resync", "--sync", "web", "--yes", "--reason", "turned on", user="ana"
    )
    assert resync.returncode == 0, resync.stderr
    assert "queued 3 write-back(s) of sync web" in resync.stdout
    assert audit(harness) == [("writeback-resync", "ana", "web", "turned on")]
    assert harness.cli("once").returncode == 0
    assert statuses(harness) == ["done"] * 3
    assert all(
        (harness.salesforce.get_record("Lead", sf) or {}).get("SimZ_Status__c") == "accepted"
        for sf in ids
    )

    harness.salesforce.delete_record("Lead", ids[0])
    since = harness.cli("writeback", "resync", "--sync", "web", "--since", "2000-01-01", "-y")
    assert since.returncode == 0 and "queued 3 write-back(s)" in since.stdout, since.stderr
    assert harness.cli("once").returncode == 0
    assert statuses(harness) == ["done", "done", "failed"]
    retry = harness.cli("writeback", "retry", "--sync", "web", "--yes", "--by", "bob")
    assert retry.returncode == 0, retry.stderr
    assert audit(harness)[1:] == [
        ("writeback-resync", "opuser", "web", "operator writeback resync"),
        ("writeback-retry", "bob", "web", "operator writeback retry"),
    ]
