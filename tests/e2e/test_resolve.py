"""``syncd resolve`` run as an operator runs it: an uncertain lead SimZ has becomes accepted.

The first test runs the real daemon against the emulators: SimZ takes a lead
and then answers 500, so the lead is ``uncertain`` and SimZ does have it. The
others run the CLI on a SQLite file whose rows are written beforehand.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.migrate import upgrade
from syncd.adapters.orm import Lead, LeadTransition, OperatorAction
from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Daemon, Harness, lead_records, run_syncd
from tests.integration.operator_rows import add_batch, add_lead, config_dict, sf_id

REASON = "SimZ support, ticket 42: lead is in the campaign"
WRITEBACK_FIELDS = {"status": "SimZ_Status__c", "error": "SimZ_Error__c"}


def uncertain_gauge(daemon: Daemon) -> float | None:
    """``syncd_uncertain_leads{sync="web"}`` as the daemon serves it on /metrics."""
    status, text = daemon.get("/metrics")
    assert status == 200
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "syncd_uncertain_leads" and sample.labels == {"sync": "web"}:
                return float(sample.value)
    return None


def wait(harness: Harness, daemon: Daemon, condition: Callable[[], Any], what: str) -> None:
    """:meth:`Harness.wait_until`, failing with the leads' states and the daemon's last lines."""
    try:
        harness.wait_until(condition, what)
    except AssertionError as exc:
        tail = daemon.output()[-3000:]
        raise AssertionError(f"{exc}; leads: {harness.lead_states()}\n{tail}") from None


def test_resolved_lead_is_accepted_written_back_and_no_longer_counted(
    tmp_path: Path, simz_emulator: SimzEmulator
) -> None:
    """SimZ took the lead but its answer was a 500: resolve makes it accepted, with the
    reason in its trail, an audit row, its write-back; status and the gauge say 0."""
    with Harness(tmp_path, simz_emulator) as harness:
        harness.salesforce.declare_field("Lead.SimZ_Status__c:picklist:40")
        harness.salesforce.declare_field("Lead.SimZ_Error__c:string:60")
        harness.write_config(sync={"writeback": {"fields": WRITEBACK_FIELDS}})
        harness.simz.inject("500")  # processed, then a 500: the lead is uncertain
        [sf] = harness.salesforce.add_records(lead_records(1))
        daemon = harness.start()
        wait(harness, daemon, lambda: harness.count_state("uncertain") == 1, "the lead uncertain")
        wait(harness, daemon, lambda: uncertain_gauge(daemon) == 1, "the gauge at 1")
        assert harness.simz.received_counts() == {sf: 1}  # what the operator checks with SimZ

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return harness.cli(*args, user="alice")

        result = cli(
            "resolve", "--sync", "web", "--id", sf, "--as", "accepted", "--reason", REASON, "--yes"
        )
        assert result.returncode == 0, result.stderr
        assert "about to mark 1 uncertain lead(s) of sync web as accepted" in result.stdout
        assert f"resolved 1 lead(s) of sync web as accepted (reason: {REASON}; by alice)" in (
            result.stdout
        )

        shown = cli("leads", "--id", sf, "--json", "--history")
        assert shown.returncode == 0, shown.stderr
        [lead] = json.loads(shown.stdout)["leads"]
        assert lead["state"] == "accepted"
        last = lead["history"][-1]
        assert (last["from_state"], last["to_state"]) == ("uncertain", "accepted")
        assert last["reason"] == f"{REASON} (by alice)"

        assert harness.query(
            "SELECT action, scope, name, actor, reason, detail FROM operator_actions"
        ) == [("resolve", "sync", "web", "alice", REASON, f"uncertain -> accepted: {sf}")]
        wait(
            harness,
            daemon,
            lambda: (
                harness.query(
                    "SELECT w.state, w.status FROM writebacks w JOIN leads l ON l.id = w.lead_id "
                    "WHERE l.salesforce_id = ?",
                    [sf],
                )
                == [("accepted", "done")]
            ),
            "the accepted outcome written back",
        )
        record = harness.salesforce.get_record("Lead", sf)
        assert record is not None
        assert record.get("SimZ_Status__c") == "accepted"
        assert record.get("SimZ_Error__c") is None  # the lost answer is not this lead's error

        status = cli("status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["uncertain_total"] == 0
        wait(harness, daemon, lambda: uncertain_gauge(daemon) == 0, "the gauge back at 0")
        assert harness.simz.received_counts() == {sf: 1}  # never sent again
        assert daemon.stop() == 0, daemon.output()


# --------------------------------------------------------------------------- refusals


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    config = config_dict(f"sqlite:///{tmp_path}/syncd.db")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp_path


@pytest.fixture
def db(workdir: Path) -> Iterator[sessionmaker[Session]]:
    """The migrated database the CLI reads: one lead of each state the refusals name."""
    engine: Engine = make_engine(f"sqlite:///{workdir}/syncd.db")
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as s:
        batch = add_batch(s, "web", "agt_1", http_status=500, outcome="uncertain")
        add_lead(s, "web", sf_id(1), "uncertain", batch=batch)
        add_lead(s, "web", sf_id(2), "queued")
        add_lead(s, "web", sf_id(3), "accepted")
        add_lead(s, "partner", sf_id(4), "uncertain", agent="agt_x")
    yield sessions
    engine.dispose()


def resolve(workdir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``syncd resolve`` as user alice; an empty ``stdin`` is closed at once (no TTY, no answer)."""
    config = workdir / "config.yaml"
    return run_syncd("resolve", *args, cwd=workdir, config=config, stdin=stdin, user="alice")


def snapshot(sessions: sessionmaker[Session]) -> tuple[dict[tuple[str, str], str], int, int]:
    """Every lead's state, and the number of audit-trail and operator_actions rows."""
    with sessions() as s:
        states = {(x.sync_name, x.salesforce_id): x.state for x in s.scalars(select(Lead))}
        trail = s.scalar(select(func.count()).select_from(LeadTransition)) or 0
        actions = s.scalar(select(func.count()).select_from(OperatorAction)) or 0
    return states, int(trail), int(actions)


def assert_clean_exit(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


class TestRefusals:
    def test_leads_not_uncertain_are_named_and_left_alone(
        self, workdir: Path, db: sessionmaker[Session]
    ) -> None:
        """Queued, accepted, unknown and another sync's Ids: each named, nothing changes."""
        before = snapshot(db)
        result = resolve(
            workdir,
            "--sync", "web", "--as", "accepted", "--yes",
            "--id", sf_id(2), "--id", sf_id(3), "--id", sf_id(4), "--id", sf_id(9),
        )  # fmt: skip
        assert_clean_exit(result, 1)
        assert f"{sf_id(2)} is queued, not uncertain: only uncertain leads can be resolved" in (
            result.stderr
        )
        assert f"{sf_id(3)} is already accepted: nothing to resolve" in result.stderr
        assert f"{sf_id(4)}: no lead with this Id in sync web" in result.stderr
        assert f"{sf_id(9)}: no lead with this Id in sync web" in result.stderr
        assert "nothing was resolved" in result.stderr
        assert snapshot(db) == before

    def test_mixed_ids_resolve_the_uncertain_one_and_exit_1(
        self, workdir: Path, db: sessionmaker[Session]
    ) -> None:
        """The uncertain lead is resolved; the queued one is named, unchanged; exit status 1."""
        result = resolve(
            workdir,
            "--sync",
            "web",
            "--as",
            "accepted",
            "--yes",
            "--id",
            sf_id(1),
            "--id",
            sf_id(2),
        )
        assert_clean_exit(result, 1)
        assert "resolved 1 lead(s) of sync web as accepted" in result.stdout
        assert f"{sf_id(2)} is queued, not uncertain" in result.stderr
        states = snapshot(db)[0]
        assert states[("web", sf_id(1))] == "accepted"
        assert states[("web", sf_id(2))] == "queued"

    def test_no_answer_without_yes_changes_nothing(
        self, workdir: Path, db: sessionmaker[Session]
    ) -> None:
        """No TTY and no --yes: it shows what would change, then refuses and points to --yes."""
        before = snapshot(db)
        result = resolve(workdir, "--sync", "web", "--as", "accepted", "--id", sf_id(1))
        assert_clean_exit(result, 1)
        assert "about to mark 1 uncertain lead(s) of sync web as accepted" in result.stdout
        assert sf_id(1) in result.stdout
        assert "rerun with --yes" in result.stderr
        assert snapshot(db) == before

    def test_answer_no_changes_nothing(self, workdir: Path, db: sessionmaker[Session]) -> None:
        before = snapshot(db)
        result = resolve(
            workdir, "--sync", "web", "--as", "accepted", "--id", sf_id(1), stdin="n\n"
        )
        assert_clean_exit(result, 1)
        assert "nothing was resolved" in result.stderr
        assert snapshot(db) == before

    def test_only_accepted_and_ids_are_accepted(
        self, workdir: Path, db: sessionmaker[Session]
    ) -> None:
        """--as takes only accepted, and --id is required: bad command lines exit 2."""
        before = snapshot(db)
        wrong = resolve(workdir, "--sync", "web", "--as", "queued", "--id", sf_id(1), "--yes")
        assert_clean_exit(wrong, 2)
        assert "'queued' is not 'accepted'" in wrong.stderr
        assert_clean_exit(resolve(workdir, "--sync", "web", "--as", "accepted", "--yes"), 2)
        assert snapshot(db) == before

    def test_help_says_when_to_use_it(self, workdir: Path) -> None:
        """The help names the case (SimZ confirmed it has the lead) and the other one (requeue)."""
        result = resolve(workdir, "--help")
        assert result.returncode == 0, result.stderr
        text = " ".join(result.stdout.split())
        assert "SimZ confirmed it has the lead" in text
        assert "syncd requeue" in text
