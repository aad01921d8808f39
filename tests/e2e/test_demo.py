"""End-to-end: ``syncd demo`` in a subprocess, its summary, and the database it leaves.

The expected ``invalid`` and ``skipped`` counts are worked out here from the
seeded records with ``phonenumbers`` and the rules as docs/design.md#mapping-and-safety-rules states
them (an unusable phone is invalid; DoNotCall is skipped; a number already
queued for the same agent is skipped), independently of syncd's own code.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
import pytest

from syncd.sandbox.demo_data import demo_leads
from tests.e2e.harness import clean_env, json_lines, run_syncd

STATES = (
    "queued",
    "sending",
    "accepted",
    "rejected",
    "uncertain",
    "invalid",
    "skipped",
    "failed",
    "held",
)
ADDED_DURING_RUN = 5
#: The record created once the stream is open, at the end of the run.
STREAMED_DURING_RUN = 1


@dataclass
class DemoRun:
    result: subprocess.CompletedProcess[str]
    tmp: Path

    @property
    def stdout(self) -> str:
        return self.result.stdout

    @property
    def folder(self) -> Path:
        match = re.search(r"^  folder\s+(\S+)$", self.stdout, re.MULTILINE)
        assert match, self.stdout
        return Path(match.group(1))

    @property
    def config(self) -> Path:
        return self.folder / "config.yaml"

    def states(self) -> dict[str, int]:
        """The "leads by state" block of the summary."""
        block = self.stdout.split("leads by state", 1)[1].split("\n\n", 1)[0]
        found = dict(re.findall(r"^\s+([a-z]+)\s+(\d+)$", block, re.MULTILINE))
        assert set(found) == set(STATES), block
        return {state: int(n) for state, n in found.items()}

    def batches(self) -> tuple[int, dict[str, int]]:
        match = re.search(r"^batches: (\d+) \((.*)\)$", self.stdout, re.MULTILINE)
        assert match, self.stdout
        parts = dict(part.rsplit(" ", 1) for part in match.group(2).split(", "))
        return int(match.group(1)), {outcome: int(n) for outcome, n in parts.items()}

    def uncertain_id(self) -> str:
        match = re.search(r"^an uncertain lead: (\w{18})$", self.stdout, re.MULTILINE)
        assert match, self.stdout
        return match.group(1)


def run_demo(tmp: Path, *args: str) -> DemoRun:
    """``python -m syncd demo`` from an unrelated folder, its temp files under ``tmp``."""
    work = tmp / "elsewhere"
    work.mkdir(exist_ok=True)
    temp = tmp / "temp"
    temp.mkdir(exist_ok=True)
    result = run_syncd("demo", *args, cwd=work, env=clean_env(TMPDIR=str(temp)), timeout=180)
    return DemoRun(result, temp)


def syncd(*args: str) -> subprocess.CompletedProcess[str]:
    return run_syncd(*args, timeout=60)


def expected_held_back(count: int) -> tuple[int, int]:
    """(invalid, skipped) for the seeded records, in the order the poll reads them."""
    invalid = skipped = 0
    taken: set[tuple[str, str]] = set()
    for record in demo_leads(count):
        try:
            number = phonenumbers.parse(record["Phone"], "US")
            valid = phonenumbers.is_valid_number(number)
        except phonenumbers.NumberParseException:
            valid = False
        if not valid:
            invalid += 1
            continue
        if record["DoNotCall"]:
            skipped += 1
            continue
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        pair = (record["Country"], e164)  # the demo routes one agent per country
        if pair in taken:
            skipped += 1
            continue
        taken.add(pair)
    return invalid, skipped


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    yield run_demo(tmp_path_factory.mktemp("demo"))


class TestDemoSummary:
    def test_exits_zero(self, demo_run: DemoRun) -> None:
        """The demo finishes on its own with exit status 0."""
        assert demo_run.result.returncode == 0, demo_run.stdout + demo_run.result.stderr
        assert "done in" in demo_run.stdout

    def test_counts_match_the_seeded_data(self, demo_run: DemoRun) -> None:
        """Every record ends in a final state; invalid and skipped are exactly the seeded ones."""
        states = demo_run.states()
        invalid, skipped = expected_held_back(200)
        assert sum(states.values()) == 200 + ADDED_DURING_RUN + STREAMED_DURING_RUN
        assert states["queued"] == 0 and states["sending"] == 0
        assert states["invalid"] == invalid
        assert states["skipped"] == skipped
        assert states["accepted"] > 0
        assert states["uncertain"] >= 1
        total, outcomes = demo_run.batches()
        assert total == sum(outcomes.values())
        assert outcomes.get("retry", 0) >= 1 and outcomes.get("uncertain", 0) >= 1

    def test_progress_shows_polls_and_batches(self, demo_run: DemoRun) -> None:
        """The run reports each poll, the records added meanwhile and each batch."""
        assert re.search(r"poll 1: \d+ read, 200 new", demo_run.stdout)
        n = ADDED_DURING_RUN
        # How many a poll reads varies: a record written back just now is read by the next one.
        added = rf"poll \d+: \d+ read, {n} new \({n} queued"
        assert re.search(added, demo_run.stdout)
        assert "HTTP 429" in demo_run.stdout
        assert re.search(
            r"batch \d+ -> agt_\w+: \d+ leads, HTTP 200: \d+ accepted", demo_run.stdout
        )
        assert "start_at: now" in demo_run.stdout
        assert "none of them twice" in demo_run.stdout

    def test_streamed_record_reaches_simz(self, demo_run: DemoRun) -> None:
        """The record created once the stream is open is reported as reaching SimZ."""
        assert "opening the Pub/Sub stream (/data/LeadChangeEvent" in demo_run.stdout
        assert re.search(
            r"stream: it reached SimZ \d+\.\d\d s after it was created", demo_run.stdout
        )

    def test_prints_the_commands_to_explore(self, demo_run: DemoRun) -> None:
        """The summary names the kept config in status, leads and requeue commands."""
        lead = demo_run.uncertain_id()
        assert f"requeue -c {demo_run.config} --id {lead}" in demo_run.stdout
        assert f"status -c {demo_run.config}" in demo_run.stdout
        assert f"leads -c {demo_run.config} --state uncertain" in demo_run.stdout
        assert demo_run.folder.parent == demo_run.tmp


def readme_sample() -> list[list[str]]:
    """The demo's sample output in README.md, as the runs of lines between ``...`` lines."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("and loses one answer on the way", 1)[1]
    block = block.split("```text\n", 1)[1].split("```", 1)[0]
    runs: list[list[str]] = [[]]
    for line in block.splitlines():
        if line.strip() == "...":
            runs.append([])
        else:
            runs[-1].append(line)
    return [run for run in runs if run]


class TestDemoNarrative:
    def test_readme_sample_is_what_the_demo_prints(self, demo_run: DemoRun) -> None:
        """Each run of lines of README.md's sample is printed as is, in that order."""
        printed = demo_run.stdout.splitlines()
        at = 0
        for run in readme_sample():
            starts = [i for i in range(at, len(printed)) if printed[i : i + len(run)] == run]
            assert starts, f"README sample lines not printed in order:\n{run}\n{demo_run.stdout}"
            at = starts[0] + len(run)

    def test_an_unsent_batch_is_not_called_unanswered(self, demo_run: DemoRun) -> None:
        """A batch claimed ahead and never sent says so; no batch line says 'abandoned'."""
        assert "abandoned" not in demo_run.stdout.split("done in", 1)[0]
        assert re.search(r"batch 2 -> agt_uk: 20 leads, not sent: claimed ahead", demo_run.stdout)

    def test_no_log_line_interrupts_the_narrative(self, demo_run: DemoRun) -> None:
        """The daemon's log lines go to syncd.log in the folder, none to the terminal."""
        assert json_lines(demo_run.stdout) == [] and demo_run.result.stderr == ""
        logged = json_lines((demo_run.folder / "syncd.log").read_text(encoding="utf-8"))
        assert any(entry.get("alert") for entry in logged)  # the lost answer's error line
        assert f"daemon log  {demo_run.folder / 'syncd.log'}" in demo_run.stdout


class TestDemoDatabase:
    def test_database_agrees_with_the_summary(self, demo_run: DemoRun) -> None:
        """The kept SQLite database holds the states and batches the summary printed."""
        with sqlite3.connect(demo_run.folder / "syncd.db") as db:
            states = dict(db.execute("SELECT state, COUNT(*) FROM leads GROUP BY state"))
            outcomes = dict(db.execute("SELECT outcome, COUNT(*) FROM batches GROUP BY outcome"))
            uncertain = {
                row[0]
                for row in db.execute(
                    "SELECT salesforce_id FROM leads WHERE state = ?", ("uncertain",)
                )
            }
            unbatched = db.execute(
                "SELECT COUNT(*) FROM leads WHERE state = 'accepted' AND simz_batch_id IS NULL"
            ).fetchone()[0]
        printed = demo_run.states()
        assert {s: n for s, n in printed.items() if n} == states
        assert demo_run.batches()[1] == outcomes
        assert demo_run.uncertain_id() in uncertain
        assert unbatched == 0

    def test_outcomes_are_written_back(self, demo_run: DemoRun) -> None:
        """Every decided lead's outcome is written back; the summary shows a few records."""
        with sqlite3.connect(demo_run.folder / "syncd.db") as db:
            written = dict(db.execute("SELECT status, COUNT(*) FROM writebacks GROUP BY status"))
            leads = db.execute("SELECT COUNT(*) FROM leads").fetchone()[0]
        assert written == {"done": leads}
        assert f"outcomes written back to the Salesforce records (done {leads})" in demo_run.stdout
        assert re.search(
            r"00Q\w+  SimZ_Status__c=accepted  SimZ_Batch_Id__c=batch_", demo_run.stdout
        )
        assert "SimZ_Status__c=uncertain" in demo_run.stdout

    def test_printed_commands_work(self, demo_run: DemoRun) -> None:
        """syncd status, leads and requeue --dry-run read the database the demo left."""
        config = str(demo_run.config)
        lead = demo_run.uncertain_id()
        status = syncd("status", "-c", config)
        assert status.returncode == 0, status.stderr
        assert "demo-leads" in status.stdout
        # The demo's daemon is gone: its expired lease says so; its sync polls, not streams.
        assert "LEASE EXPIRED" in status.stdout
        assert "no `syncd run` is running" in status.stdout
        assert "stream         not used: the sync polls (source.mode: poll)" in status.stdout
        assert "stream poll " not in status.stdout
        listed = syncd("leads", "-c", config, "--state", "uncertain", "--json")
        assert listed.returncode == 0, listed.stderr
        assert lead in {row["salesforce_id"] for row in json.loads(listed.stdout)["leads"]}
        requeue = syncd("requeue", "-c", config, "--id", lead, "--dry-run")
        assert requeue.returncode == 0, requeue.stderr
        assert "would requeue 1 lead" in requeue.stdout


class TestDemoOptions:
    def test_no_keep_quiet_small(self, tmp_path: Path) -> None:
        """--no-keep removes the folder, --quiet prints only the summary, --leads sets the seed."""
        run = run_demo(tmp_path, "--no-keep", "--quiet", "--leads", "30")
        assert run.result.returncode == 0, run.stdout + run.result.stderr
        assert "poll 1" not in run.stdout
        assert f"({30 + ADDED_DURING_RUN + STREAMED_DURING_RUN} records" in run.stdout
        assert "folder was removed" in run.stdout
        assert os.listdir(run.tmp) == []


class TestDemoCalls:
    def test_webhooks_and_task_writeback_are_on(self, demo_run: DemoRun) -> None:
        """The demo's config receives SimZ's hooks on loopback and writes calls back as Tasks."""
        import yaml

        config = yaml.safe_load(demo_run.config.read_text(encoding="utf-8"))
        webhook = config["simz"]["webhook"]
        port = webhook["listen"].rsplit(":", 1)[1]
        assert webhook["listen"] == f"127.0.0.1:{port}"
        assert webhook["public_url"] == f"http://127.0.0.1:{port}"
        assert len(webhook["token"]) >= 32 and len(webhook["correlation_secret"]) >= 32
        assert config["syncs"][0]["call_writeback"] == {"mode": "tasks"}
        assert "syncd writes a Task on the record" in demo_run.stdout

    def test_reports_the_calls_and_their_tasks(self, demo_run: DemoRun) -> None:
        """The summary counts the hooks SimZ posted and lists the Tasks on the records.

        Each call taken by the receiver ends as exactly one Task (when the org has
        Tasks to read); a demo without a receiver says why instead.
        """
        found = re.search(
            r"^calls reported back by SimZ: (\d+) hooks posted, (\d+) calls taken by syncd's "
            r"receiver \(an example payload: the SimZ spec defines none\)$",
            demo_run.stdout,
            re.MULTILINE,
        )
        assert found, demo_run.stdout
        taken = int(found.group(2))
        tasks = re.search(r"^Tasks on the records: (\d+)", demo_run.stdout, re.MULTILINE)
        unreadable = re.search(r"^Tasks on the records: could not be read", demo_run.stdout, re.M)
        assert tasks or unreadable, demo_run.stdout
        if "the receiver did not run" not in demo_run.stdout and tasks:
            assert taken > 0 and int(tasks.group(1)) == taken
