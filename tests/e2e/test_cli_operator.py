"""``syncd status``, ``syncd leads`` and ``syncd requeue`` run as an operator runs them.

The real CLI runs in a subprocess against a SQLite file; the rows it reports
on are written directly into that file beforehand.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.migrate import upgrade
from syncd.adapters.orm import Lead, LeadTransition
from syncd.sandbox.salesforce import SalesforceEmulator
from tests.e2e.harness import run_syncd as shared_run_syncd
from tests.integration.operator_rows import add_batch, add_lead, config_dict, sf_id


def run_syncd(
    *args: str, cwd: Path, stdin: str | None = None, user: str = "opuser"
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess; ``stdin=None`` gives it an empty, closed stdin."""
    return shared_run_syncd(*args, cwd=cwd, stdin=stdin or "", user=user)


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int = 1) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    config = config_dict(f"sqlite:///{tmp_path}/syncd.db")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp_path


@pytest.fixture
def org(workdir: Path, salesforce_emulator: SalesforceEmulator) -> SalesforceEmulator:
    """The config points at the emulator, which holds the records of the web leads."""
    config = config_dict(f"sqlite:///{workdir}/syncd.db")
    config["salesforce"] = {
        "auth": {
            "method": "password",
            "username": salesforce_emulator.username,
            "password": salesforce_emulator.password,
            "security_token": salesforce_emulator.security_token,
        },
        "login_url": salesforce_emulator.url,
        "ca_bundle": str(salesforce_emulator.ca_file),
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    salesforce_emulator.add_records(
        [
            {"sobject": "Lead", "Id": sf_id(n), "LastName": "P", "Phone": f"+1202555010{n}"}
            for n in (1, 2)
        ]
    )
    return salesforce_emulator


@pytest.fixture
def db(workdir: Path) -> Iterator[sessionmaker[Session]]:
    """The migrated database the CLI reads, with a few leads."""
    engine: Engine = make_engine(f"sqlite:///{workdir}/syncd.db")
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as s:
        batch = add_batch(
            s, "web", "agt_1", http_status=500, outcome="uncertain", simz_batch_id=None
        )
        add_lead(s, "web", sf_id(1), "uncertain", batch=batch)
        add_lead(s, "web", sf_id(2), "failed", attempts=10, error_code="HTTP_503")
        add_lead(s, "web", sf_id(3), "accepted")
        add_lead(s, "web", sf_id(4), "queued")
        add_lead(s, "retired", sf_id(5), "rejected", agent="agt_old", error_code="BAD_PHONE")
    yield sessions
    engine.dispose()


def states(sessions: sessionmaker[Session]) -> dict[tuple[str, str], str]:
    with sessions() as session:
        return {(x.sync_name, x.salesforce_id): x.state for x in session.scalars(select(Lead))}


class TestDatabaseChecks:
    def test_missing_database_says_migrate(self, workdir: Path) -> None:
        """Before `syncd migrate` every operator command says so, exits 1, creates nothing."""
        for command in (["status"], ["leads"], ["requeue", "--sync", "web", "--yes"]):
            result = run_syncd(*command, cwd=workdir)
            assert_clean_failure(result)
            assert "syncd migrate" in result.stderr
        assert not (workdir / "syncd.db").exists()

    def test_unmigrated_database_is_not_migrated_silently(self, workdir: Path) -> None:
        """An existing database below head gets 'run syncd migrate' and stays unmigrated."""
        engine = make_engine(f"sqlite:///{workdir}/syncd.db")
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE unrelated (x INTEGER)")
        result = run_syncd("status", cwd=workdir)
        assert_clean_failure(result)
        assert "syncd migrate" in result.stderr
        with engine.connect() as connection:
            tables = connection.exec_driver_sql("SELECT name FROM sqlite_master").scalars().all()
        engine.dispose()
        assert "leads" not in tables

    def test_unreachable_database_is_one_line(self, tmp_path: Path) -> None:
        """A database that refuses connections gives one clear line and exit 1."""
        config = config_dict("postgresql+psycopg://postgres@127.0.0.1:1/nothing")
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        result = run_syncd("status", cwd=tmp_path)
        assert_clean_failure(result)
        assert result.stderr.startswith("syncd: cannot reach the database")
        assert len(result.stderr.strip().splitlines()) == 1


class TestStatus:
    def test_table(self, workdir: Path, db: sessionmaker[Session]) -> None:
        """The table shows each sync, its state counts, the unconfigured sync and the hint."""
        result = run_syncd("status", cwd=workdir)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "sync web  [enabled]" in out
        assert "sync partner  [enabled]" in out
        assert "sync retired  [NOT IN CONFIG" in out
        assert "uncertain 1" in out and "accepted 1" in out
        assert "uncertain leads: 1" in out and "syncd leads --state uncertain" in out

    def test_json(self, workdir: Path, db: sessionmaker[Session]) -> None:
        """--json prints one parseable object with the documented top-level keys."""
        result = run_syncd("status", "--json", cwd=workdir)
        assert result.returncode == 0, result.stderr
        body = json.loads(result.stdout)
        assert body["version"] == 1 and body["uncertain_total"] == 1
        syncs = {s["name"]: s for s in body["syncs"]}
        assert syncs["retired"]["configured"] is False
        assert syncs["web"]["states"]["failed"] == 1
        assert syncs["web"]["agents"][0]["queued"] == 1
        assert syncs["web"]["agents"][0]["last_batch"]["http_status"] == 500


class TestLeads:
    def test_table_without_personal_data(self, workdir: Path, db: sessionmaker[Session]) -> None:
        """The table lists Salesforce Ids and states but no phone number or name."""
        result = run_syncd("leads", cwd=workdir)
        assert result.returncode == 0, result.stderr
        for n in range(1, 6):
            assert sf_id(n) in result.stdout
        assert "HTTP_503" in result.stdout
        assert "+1555" not in result.stdout and "Ada" not in result.stdout

    def test_filters_and_history(self, workdir: Path, db: sessionmaker[Session]) -> None:
        """--state and --id filter; --history prints the transition trail of the lead."""
        result = run_syncd("leads", "--state", "uncertain", "--history", cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert sf_id(1) in result.stdout and sf_id(2) not in result.stdout
        assert "sending -> uncertain" in result.stdout and "new -> queued" in result.stdout
        result = run_syncd("leads", "--id", sf_id(5), "--json", "--history", cwd=workdir)
        body = json.loads(result.stdout)
        assert [x["salesforce_id"] for x in body["leads"]] == [sf_id(5)]
        assert "payload" not in body["leads"][0]
        assert [h["to_state"] for h in body["leads"][0]["history"]] == [
            "queued",
            "sending",
            "rejected",
        ]

    def test_show_payload(self, workdir: Path, db: sessionmaker[Session]) -> None:
        """--show-payload is the only way to see the personal data sent to SimZ."""
        result = run_syncd("leads", "--id", sf_id(4), "--show-payload", cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert "+15551234567" in result.stdout
        assert "personal data" in run_syncd("leads", "--help", cwd=workdir).stdout


class TestRequeue:
    def test_bare_requeue_refused(self, workdir: Path, db: sessionmaker[Session]) -> None:
        """A requeue without selector is refused with a clear message and moves nothing."""
        before = states(db)
        result = run_syncd("requeue", "--yes", cwd=workdir)
        assert_clean_failure(result, 2)
        assert "selector" in result.stderr
        assert states(db) == before

    def test_accepted_cannot_be_selected(self, workdir: Path, db: sessionmaker[Session]) -> None:
        """--state accepted is not a valid choice, and --id of an accepted lead refuses all."""
        before = states(db)
        assert_clean_failure(run_syncd("requeue", "--state", "accepted", "--yes", cwd=workdir), 2)
        result = run_syncd("requeue", "--id", sf_id(1), "--id", sf_id(3), "--yes", cwd=workdir)
        assert_clean_failure(result)
        assert "nothing was requeued" in result.stderr
        assert f"{sf_id(3)} (web) is accepted" in result.stderr
        assert states(db) == before

    def test_answer_no_moves_nothing(self, workdir: Path, db: sessionmaker[Session]) -> None:
        """Answering 'n' to the prompt leaves every lead where it was; the warning is shown."""
        before = states(db)
        result = run_syncd("requeue", "--state", "uncertain", cwd=workdir, stdin="n\n")
        assert_clean_failure(result)
        assert "about to requeue 1 lead(s)" in result.stdout
        assert "CALL A PERSON TWICE" in result.stderr
        assert states(db) == before

    def test_no_answer_refuses(self, workdir: Path, db: sessionmaker[Session]) -> None:
        """With nothing on stdin and no --yes, requeue refuses and points to --yes."""
        before = states(db)
        result = run_syncd("requeue", "--sync", "web", cwd=workdir)
        assert_clean_failure(result)
        assert "--yes" in result.stderr
        assert states(db) == before

    def test_dry_run_moves_nothing(self, workdir: Path, db: sessionmaker[Session]) -> None:
        """--dry-run shows the counts and changes nothing."""
        before = states(db)
        result = run_syncd("requeue", "--sync", "web", "--dry-run", cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert "would requeue 2 lead(s)" in result.stdout
        assert "sync web: uncertain 1, failed 1" in result.stdout
        assert states(db) == before

    def test_answer_yes_moves_and_records(
        self, workdir: Path, db: sessionmaker[Session], org: SalesforceEmulator
    ) -> None:
        """Answering 'y' moves exactly the selected leads, with reason and user in the trail."""
        before = states(db)
        result = run_syncd(
            "requeue",
            "--state",
            "uncertain",
            "--reason",
            "SimZ says batch never arrived",
            cwd=workdir,
            stdin="y\n",
            user="alice",
        )
        assert result.returncode == 0, result.stderr
        assert "requeued 1 lead(s)" in result.stdout
        expected = dict(before)
        expected[("web", sf_id(1))] = "queued"
        assert states(db) == expected
        with db() as s:
            reasons = s.scalars(
                select(LeadTransition.reason).where(LeadTransition.from_state == "uncertain")
            ).all()
        assert reasons == [
            "SimZ says batch never arrived (by alice); record fetched again from Salesforce"
        ]

    def test_unconfigured_sync_refused(self, workdir: Path, db: sessionmaker[Session]) -> None:
        """--sync retired (no longer configured) is refused: its records cannot be fetched."""
        before = states(db)
        result = run_syncd("requeue", "--sync", "retired", "--yes", cwd=workdir)
        assert_clean_failure(result)
        assert "'retired' is not in the configuration" in result.stderr
        assert states(db) == before

    def test_salesforce_unreachable_refuses(self, workdir: Path, db: sessionmaker[Session]) -> None:
        """With Salesforce unreachable, requeue says so in one line, exits 3, changes nothing."""
        before = states(db)
        result = run_syncd("requeue", "--sync", "web", "--yes", cwd=workdir)
        assert_clean_failure(result, 3)
        assert "could not be fetched again from Salesforce" in result.stderr
        assert "nothing was changed" in result.stderr
        refusals = [line for line in result.stderr.splitlines() if "cannot requeue" in line]
        assert len(refusals) == 1, result.stderr
        assert states(db) == before
