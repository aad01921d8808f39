"""``syncd status`` as an operator reads it when no daemon runs: the real CLI on a SQLite file.

Replica rows are written into the database as ``syncd run`` leaves them (a
clean stop, a killed pod), so each test sets up exactly the fleet it needs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        migrated = h.cli("migrate")
        assert migrated.returncode == 0, migrated.stderr
        yield h


def add_replica(harness: Harness, name: str, heartbeat_ago: timedelta, pid: int = 1) -> None:
    """A replica row whose last heartbeat was ``heartbeat_ago`` (expired 30 s after it)."""
    beat = datetime.now(UTC).replace(tzinfo=None) - heartbeat_ago
    with sqlite3.connect(harness.db_path) as db:
        db.execute(
            "INSERT INTO replicas (id, host, pid, started_at, heartbeat_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (name, "host", pid, beat - timedelta(hours=1), beat, beat + timedelta(seconds=30)),
        )


def status(harness: Harness, *args: str) -> str:
    result = harness.cli("status", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class TestReplicas:
    def test_a_replica_dead_over_an_hour_is_counted_not_listed(self, harness: Harness) -> None:
        """Alive and recently expired replicas are listed; one dead for hours is only counted."""
        add_replica(harness, "web-1", timedelta(seconds=5))
        add_replica(harness, "web-2", timedelta(minutes=20))
        add_replica(harness, "web-old", timedelta(hours=3))
        text = status(harness)
        assert "web-1" in text and "web-2" in text and "no (heartbeat expired)" in text
        assert "web-old" not in text
        assert "(1 replica(s) whose heartbeat expired over an hour ago not shown)" in text
        body = json.loads(status(harness, "--json"))
        assert sorted(r["replica"] for r in body["replicas"]) == ["web-1", "web-2"]
        assert body["replicas_left_out"] == 1
