"""``syncd leads`` on a database shaped as delivery and write-back leave it: the real CLI.

The rows are written straight into a migrated SQLite file, so each test holds
exactly the history it reads back: batches sent and not sent, write-back tries
of two outcomes, leads held by a poll and by a backfill at different times.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness

NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
POLL_HELD = "held by the blast-radius guard: the poll crossed its limit of 5"
BACKFILL_HELD = "held by the blast-radius guard: the backfill crossed its limit of 5"


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        migrated = h.cli("migrate")
        assert migrated.returncode == 0, migrated.stderr
        yield h


def add_lead(db: sqlite3.Connection, lead_id: int, state: str, agent: str, **extra: Any) -> None:
    db.execute(
        "INSERT INTO leads (id, sync_name, salesforce_id, state, payload, record_cursor,"
        " record_hash, attempts, created_at, updated_at, agent_id, do_not_call)"
        " VALUES (?, 'web', ?, ?, '{}', ?, 'h', 0, ?, ?, ?, 0)",
        (lead_id, f"00Q00000000000{lead_id:04d}", state, NOW, NOW, NOW, agent),
    )


def add_batch(db: sqlite3.Connection, batch_id: int, outcome: str, posted: bool) -> None:
    db.execute(
        "INSERT INTO batches (id, sync_name, agent_id, api_key_id, lead_count, created_at,"
        " posted_at, outcome) VALUES (?, 'web', 'agt_1', 'k', 1, ?, ?, ?)",
        (batch_id, NOW, NOW if posted else None, outcome),
    )


def move(db: sqlite3.Connection, lead_id: int, to: str, reason: str, **extra: Any) -> None:
    db.execute(
        "INSERT INTO lead_transitions (lead_id, from_state, to_state, reason, batch_id, at)"
        " VALUES (?, NULL, ?, ?, ?, ?)",
        (lead_id, to, reason, extra.get("batch"), extra.get("at", NOW)),
    )


def leads(harness: Harness, *args: str) -> str:
    result = harness.cli("leads", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class TestAttemptsAndWriteback:
    @pytest.fixture
    def sent(self, harness: Harness) -> Harness:
        """Lead 1: a 429 (sent), a batch claimed ahead and abandoned, then accepted;
        its write-back was done as uncertain first, then as accepted."""
        with sqlite3.connect(harness.db_path) as db:
            add_lead(db, 1, "accepted", "agt_1")
            add_batch(db, 1, "retry", posted=True)
            add_batch(db, 2, "abandoned", posted=False)
            add_batch(db, 3, "accepted", posted=True)
            for batch, to in ((1, "sending"), (1, "queued"), (2, "sending"), (2, "queued")):
                move(db, 1, to, "step", batch=batch)
            move(db, 1, "sending", "claimed", batch=3)
            move(db, 1, "accepted", "accepted", batch=3)
            db.execute(
                "INSERT INTO writebacks (lead_id, sync_name, state, status, generation, attempts,"
                " created_at, updated_at) VALUES (1, 'web', 'accepted', 'done', 2, 1, ?, ?)",
                (NOW, NOW),
            )
            for state in ("uncertain", "accepted"):
                db.execute(
                    "INSERT INTO writeback_attempts (lead_id, at, state, outcome)"
                    " VALUES (1, ?, ?, 'done')",
                    (NOW, state),
                )
        return harness

    def test_attempts_counts_the_requests_that_carried_the_lead(self, sent: Harness) -> None:
        """Two POSTs carried it (the claimed-ahead batch was never sent): ATTEMPTS 2."""
        text = leads(sent, "--state", "accepted")
        assert re.search(r"^00Q\w+\s+web\s+agt_1\s+accepted\s+2\s", text, re.M), text
        body = json.loads(leads(sent, "--state", "accepted", "--json"))
        assert body["leads"][0]["sends"] == 2

    def test_writeback_line_agrees_with_the_attempts_below_it(self, sent: Harness) -> None:
        """One attempt for the current outcome, two listed: the line says both."""
        text = leads(sent, "--id", "00Q000000000000001", "--history")
        assert "write-back: done (accepted, 1 attempt for this outcome; 2 in all)" in text, text
        assert text.count("  write-back ") == 2


class TestHeldBreakdown:
    @pytest.fixture
    def held(self, harness: Harness) -> Harness:
        """Three leads held by a poll just now (two agents), two by a backfill two days ago."""
        with sqlite3.connect(harness.db_path) as db:
            for lead_id, agent in ((1, "agt_1"), (2, "agt_1"), (3, "agt_2")):
                add_lead(db, lead_id, "held", agent)
                move(db, lead_id, "held", POLL_HELD)
            for lead_id in (4, 5):
                add_lead(db, lead_id, "held", "agt_2")
                move(db, lead_id, "held", BACKFILL_HELD, at=NOW - timedelta(days=2))
        return harness

    def test_by_agent_age_and_source(self, held: Harness) -> None:
        """Each breakdown counts every held lead once, largest group first."""
        by_agent = leads(held, "--state", "held", "--sync", "web", "--by", "agent")
        assert "5 held lead(s) of sync web by agent" in by_agent
        assert re.search(r"^  agt_2\s+3\s", by_agent, re.M) and re.search(
            r"^  agt_1\s+2\s", by_agent, re.M
        )
        by_age = leads(held, "--state", "held", "--by", "age")
        assert re.search(r"^  held under 1 hour ago\s+3\s", by_age, re.M), by_age
        assert re.search(r"^  held 1 to 7 days ago\s+2\s", by_age, re.M), by_age
        body = json.loads(leads(held, "--state", "held", "--by", "source", "--json"))
        assert [(g["key"], g["leads"]) for g in body["groups"]] == [
            (POLL_HELD, 3),
            (BACKFILL_HELD, 2),
        ]

    def test_by_needs_state_held(self, held: Harness) -> None:
        result = held.cli("leads", "--state", "queued", "--by", "agent")
        assert result.returncode == 2 and "--state held" in result.stderr
