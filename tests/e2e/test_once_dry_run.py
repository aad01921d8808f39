"""End-to-end: ``syncd once`` (and ``--dry-run``) in a subprocess against both emulators."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, clean_env, lead_records

TABLES = ("sync_state", "leads", "lead_transitions", "batches", "poll_runs", "pauses")


def run_once(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", "once", "-c", str(harness.config_path), *args],
        cwd=harness.tmp,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def dump(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(db_path) as connection:
        return {
            table: sorted(connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in TABLES
        }


def stamped(records: list[dict[str, Any]], minutes_ago: int) -> list[dict[str, Any]]:
    stamp = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()
    return [{**record, "SystemModstamp": stamp} for record in records]


class TestOnceDryRun:
    def test_dry_run_changes_nothing(self, tmp_path: Path, simz_emulator: SimzEmulator) -> None:
        """A dry run prints what would happen, by Salesforce Id only, and changes nothing."""
        with Harness(tmp_path, simz_emulator) as harness:
            harness.salesforce.add_records(stamped(lead_records(5), 3))
            first = run_once(harness)
            assert first.returncode == 0, first.stderr
            assert len(simz_emulator.received()) == 5

            new_ids = harness.salesforce.add_records(
                stamped(lead_records(3, start=10), 2)
                + stamped(lead_records(1, start=20, Phone="not a phone"), 2)
            )
            before = dump(harness.db_path)
            dry = run_once(harness, "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert dump(harness.db_path) == before
            assert len(simz_emulator.received()) == 5
            assert "would queue 3, skip 0, mark invalid 1" in dry.stdout
            for sf_id in new_ids:
                assert sf_id in dry.stdout
            for private in ("555 01", "+1202", "Ada", "Tester"):  # no phones, no names
                assert private not in dry.stdout

            real = run_once(harness)
            assert real.returncode == 0, real.stderr
            assert "new 4" in real.stdout and "invalid 1" in real.stdout
            assert len(simz_emulator.received()) == 8

    def test_failure_exit_status(self, tmp_path: Path, simz_emulator: SimzEmulator) -> None:
        """A poll that fails (Salesforce refuses the query) makes `once` exit 1."""
        with Harness(tmp_path, simz_emulator) as harness:
            harness.write_config(sync={"where": "Nope__c = 1"})
            result = run_once(harness, "--dry-run")
            assert result.returncode == 1
            assert "INVALID_FIELD" in result.stdout

    def test_unknown_sync(self, tmp_path: Path, simz_emulator: SimzEmulator) -> None:
        """Naming a sync the configuration lacks is a one-line error with exit status 2."""
        with Harness(tmp_path, simz_emulator) as harness:
            result = run_once(harness, "--sync", "nope")
            assert result.returncode == 2
            assert "no sync named 'nope'" in result.stderr
