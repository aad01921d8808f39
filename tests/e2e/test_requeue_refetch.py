"""``syncd requeue`` fetches the records again before anything is sent, run as an operator runs it.

The daemon (``syncd run``) and the CLI are real subprocesses, against the
Salesforce and SimZ emulators, on a SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.orm import Lead, LeadTransition
from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, clean_env, lead_records, syncd_command, wait_until


class Db:
    """Read-only looks at the daemon's database, on either backend."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def lead(self, sf_id: str) -> Lead | None:
        try:
            with self.sessions() as session:
                return session.scalar(select(Lead).where(Lead.salesforce_id == sf_id))
        except Exception:  # the schema is not there yet
            return None

    def state(self, sf_id: str) -> str | None:
        found = self.lead(sf_id)
        return found.state if found is not None else None

    def snapshot(self) -> tuple[dict[str, str], int]:
        """Every lead's state and the number of audit-trail rows."""
        with self.sessions() as session:
            states = {lead.salesforce_id: lead.state for lead in session.scalars(select(Lead))}
            trail = session.scalar(select(func.count()).select_from(LeadTransition)) or 0
        return states, int(trail)


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator, db_url: str) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as made:
        made.write_config(
            database={"url": db_url},
            simz={**made.config()["simz"], "max_attempts": 2},
        )
        yield made


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    made = Db(db_url)
    yield made
    made.close()


def syncd(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    return harness.cli(*args, user="alice")


def fail_leads(harness: Harness, db: Db, count: int) -> list[str]:
    """Start the daemon with SimZ answering 503 until the leads' 2 attempts are spent."""
    ids = harness.salesforce.add_records(lead_records(count))
    harness.simz.inject("503", count=2)
    harness.start()
    wait_until(lambda: all(db.state(i) == "failed" for i in ids), "the leads failed")
    return ids


def test_do_not_call_after_failure_is_never_sent(harness: Harness, db: Db) -> None:
    """A failed lead whose record became DoNotCall is skipped by requeue, never sent."""
    [sf_id] = fail_leads(harness, db, 1)
    harness.salesforce.update_record("Lead", sf_id, {"DoNotCall": True})
    wait_until(lambda: (db.lead(sf_id) or Lead()).do_not_call, "the poll stored DoNotCall")
    result = syncd(harness, "requeue", "--state", "failed", "--yes")
    assert result.returncode == 0, result.stderr
    assert "requeued 0 lead(s)" in result.stdout
    assert f"{sf_id} (web): failed -> skipped: DoNotCall is set on the record" in result.stdout
    assert db.state(sf_id) == "skipped"
    # Another lead going out proves delivery ran after the requeue.
    [later] = harness.salesforce.add_records(lead_records(1, start=50))
    wait_until(lambda: db.state(later) == "accepted", "the later lead accepted")
    assert harness.simz.received_counts() == {later: 1}


def test_kill_during_the_refetch_changes_nothing_then_sends_once(harness: Harness, db: Db) -> None:
    """SIGKILL while requeue waits for Salesforce: nothing changed; a second requeue sends once."""
    ids = fail_leads(harness, db, 2)
    assert harness.daemons[0].stop() == 0
    before = db.snapshot()
    used = harness.salesforce.api_usage()[0]
    harness.salesforce.inject("delay", seconds=8)
    process = subprocess.Popen(
        syncd_command("requeue", "--state", "failed", "--yes", config=harness.config_path),
        cwd=harness.tmp,
        env=clean_env(USER="alice"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: harness.salesforce.api_usage()[0] > used, "the re-fetch in flight")
        process.send_signal(signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    assert db.snapshot() == before
    harness.salesforce.clear_faults()
    result = syncd(harness, "requeue", "--state", "failed", "--yes")
    assert result.returncode == 0, result.stderr
    assert "requeued 2 lead(s)" in result.stdout
    harness.start()
    wait_until(lambda: all(db.state(i) == "accepted" for i in ids), "both leads accepted")
    assert harness.simz.received_counts() == dict.fromkeys(ids, 1)


def test_salesforce_down_refuses_and_changes_nothing(harness: Harness, db: Db) -> None:
    """Salesforce answering 500: requeue says so in one line, exits 3, changes nothing."""
    fail_leads(harness, db, 1)
    assert harness.daemons[0].stop() == 0
    before = db.snapshot()
    harness.salesforce.inject("500", count=5)
    result = syncd(harness, "requeue", "--state", "failed", "--yes")
    assert result.returncode == 3, result.stderr
    assert "could not be fetched again from Salesforce" in result.stderr
    assert "Traceback" not in result.stderr
    assert db.snapshot() == before


def test_resend_uncertain_fetches_again_in_the_poll_job(
    tmp_path: Path, simz_emulator: SimzEmulator, db_url: str, db: Db
) -> None:
    """resend_uncertain: the daemon's poll re-fetches uncertain leads; DoNotCall ones stay unsent.

    The DoNotCall change is made while the batch is in flight. Whether a poll
    stores it first or only the re-fetch reads it, the re-fetch applies the
    record as it is now (the same stamp or newer) and skips the lead.
    """
    with Harness(tmp_path, simz_emulator) as harness:
        simz = harness.config()["simz"]
        harness.write_config(
            database={"url": db_url},
            simz={**simz, "resend_uncertain": True, "timeout": {"connect": 5, "read": 2}},
        )
        blocked, kept = harness.salesforce.add_records(lead_records(2))
        harness.simz.inject("delay", seconds=6)  # answered after the read timeout: uncertain
        harness.start()
        wait_until(lambda: db.state(blocked) == "sending", "the batch in flight")
        harness.salesforce.update_record("Lead", blocked, {"DoNotCall": True})
        wait_until(lambda: db.state(kept) == "accepted", "the kept lead resent and accepted")
        wait_until(lambda: db.state(blocked) == "skipped", "the DoNotCall lead skipped")
        lead = db.lead(blocked)
        assert lead is not None and lead.note == "DoNotCall is set on the record"
        assert harness.simz.received_counts() == {blocked: 1, kept: 2}
