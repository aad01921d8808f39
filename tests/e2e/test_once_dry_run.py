"""End-to-end: ``syncd once`` (and ``--dry-run``) in a subprocess against both emulators."""

from __future__ import annotations

import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, lead_records

TABLES = ("sync_state", "leads", "lead_transitions", "batches", "poll_runs", "pauses")


def run_once(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    return harness.cli("once", *args, timeout=120)


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


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` with its bytes and mtime (ns)."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class TestDryRunWritesNothing:
    def test_no_database_is_created(self, tmp_path: Path, simz_emulator: SimzEmulator) -> None:
        """Without a database file, a dry run previews from a throwaway one and creates none."""
        with Harness(tmp_path, simz_emulator) as harness:
            harness.salesforce.add_records(stamped(lead_records(4), 3))
            dry = run_once(harness, "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert "would queue 4, skip 0, mark invalid 0" in dry.stdout
            assert not harness.db_path.parent.exists(), list(harness.db_path.parent.iterdir())
            assert simz_emulator.received() == []

    def test_existing_database_is_untouched(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        """An existing database's files keep their bytes and mtimes; no file appears."""
        with Harness(tmp_path, simz_emulator) as harness:
            harness.salesforce.add_records(stamped(lead_records(3), 3))
            first = run_once(harness)
            assert first.returncode == 0, first.stderr
            harness.salesforce.add_records(stamped(lead_records(2, start=10), 2))
            before = files_of(harness.db_path.parent)
            dry = run_once(harness, "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert "would queue 2, skip 0, mark invalid 0" in dry.stdout
            assert files_of(harness.db_path.parent) == before

    def test_outdated_database_is_not_migrated(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        """A database below the latest schema: one line saying to migrate, exit 1, untouched."""
        from syncd.adapters.db import make_engine
        from syncd.adapters.migrate import upgrade

        with Harness(tmp_path, simz_emulator) as harness:
            harness.db_path.parent.mkdir(parents=True)
            engine = make_engine(f"sqlite:///{harness.db_path}")
            upgrade(engine, "0001")
            engine.dispose()
            before = files_of(harness.db_path.parent)
            dry = run_once(harness, "--dry-run")
            assert dry.returncode == 1
            assert dry.stderr.splitlines() == [
                "syncd: the database schema is at revision 0001, not "
                f"{dry.stderr.split('not ')[1].split(';')[0]}; a dry run does not migrate: "
                "run `syncd migrate` first"
            ]
            assert files_of(harness.db_path.parent) == before

    def test_postgres_is_read_only(
        self, tmp_path: Path, simz_emulator: SimzEmulator, postgres_url: str
    ) -> None:
        """On PostgreSQL: an empty schema is not migrated, a migrated one is not written."""
        from sqlalchemy import create_engine, text

        from syncd.adapters.migrate import current_revision

        def counts(engine: Any) -> tuple[int, ...]:
            with engine.connect() as connection:
                return tuple(
                    connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                    for table in TABLES
                )

        with Harness(tmp_path, simz_emulator) as harness:
            harness.write_config(database={"url": postgres_url})
            harness.salesforce.add_records(stamped(lead_records(3), 3))
            engine = create_engine(postgres_url)
            try:
                empty = run_once(harness, "--dry-run")
                assert empty.returncode == 0, empty.stderr
                assert "would queue 3, skip 0, mark invalid 0" in empty.stdout
                assert current_revision(engine) is None
                first = run_once(harness)
                assert first.returncode == 0, first.stderr
                harness.salesforce.add_records(stamped(lead_records(2, start=10), 2))
                before = counts(engine)
                dry = run_once(harness, "--dry-run")
                assert dry.returncode == 0, dry.stderr
                assert "would queue 2, skip 0, mark invalid 0" in dry.stdout
                assert counts(engine) == before
            finally:
                engine.dispose()
