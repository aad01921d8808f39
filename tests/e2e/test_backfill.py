"""``syncd backfill`` as an operator runs it, next to a running ``syncd run``.

The CLI and the daemon are real subprocesses on one SQLite file; the
Salesforce emulator holds records stamped before the sync's ``start_at`` (which
the regular poll never reads) and the SimZ emulator counts every lead it got.
"""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import (
    Harness,
    clean_env,
    json_lines,
    lead_records,
    syncd_command,
    wait_until,
)

START_AT = "2024-01-01T00:00:00Z"
OLD = "2023-06-01T00:00:00Z"


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        config = h.config(sync={"start_at": START_AT})
        config["salesforce"]["page_size"] = 200
        h.write_config(**config)
        yield h


def old_records(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {**record, "SystemModstamp": OLD, "LastModifiedDate": OLD}
        for record in lead_records(count, start=start)
    ]


def backfill(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    return harness.cli("backfill", "--sync", "web", *args, timeout=120)


def summary(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("backfill web: ")]
    return line


def page_lines(text: str) -> list[dict[str, Any]]:
    return [entry for entry in json_lines(text) if entry.get("event") == "backfill page"]


def watermark(harness: Harness) -> Any:
    return harness.query("SELECT watermark FROM sync_state WHERE sync_name = 'web'")[0][0]


def all_sent_once(harness: Harness, expected: int) -> None:
    harness.wait_until(lambda: harness.count_state("accepted") == expected, f"{expected} accepted")
    counts = harness.simz.received_counts()
    assert len(counts) == expected and set(counts.values()) == {1}


class TestBackfill:
    def test_already_synced_range_sends_nothing_new(self, harness: Harness) -> None:
        """Backfilling what the regular poll already read finds every record known."""
        harness.salesforce.add_records(lead_records(5))
        daemon = harness.start()
        all_sent_once(harness, 5)
        before = watermark(harness)
        line = summary(backfill(harness, "--since", START_AT, "--until", "2100-01-01T00:00:00Z"))
        assert "new 0 " in line and "known 5" in line
        polls = harness.successful_polls()
        harness.wait_until(lambda: harness.successful_polls() >= polls + 2, "two more polls")
        all_sent_once(harness, 5)
        assert watermark(harness) == before
        assert daemon.stop() == 0, daemon.output()

    def test_new_range_is_sent_once_and_rerun_is_a_no_op(self, harness: Harness) -> None:
        """Records before start_at are queued by the backfill, sent once, and known on a re-run."""
        harness.salesforce.add_records(old_records(30))
        harness.salesforce.add_records(lead_records(5, start=30))
        daemon = harness.start()
        all_sent_once(harness, 5)
        before = watermark(harness)

        dry = summary(backfill(harness, "--since", "2023-01-01", "--until", START_AT, "--dry-run"))
        assert "new 30 (would queue 30," in dry
        assert harness.count_state("queued") == 0

        result = backfill(harness, "--since", "2023-01-01", "--until", START_AT)
        assert "new 30 (queued 30," in summary(result)
        assert "30 record(s)" in result.stderr  # the SELECT COUNT() total
        pages = page_lines(result.stdout)
        assert pages and pages[-1]["total"] == 30 and pages[-1]["new"] == 30
        all_sent_once(harness, 35)
        assert watermark(harness) == before

        again = summary(backfill(harness, "--since", "2023-01-01", "--until", START_AT))
        assert "new 0 " in again and "known 30" in again
        polls = harness.successful_polls()
        harness.wait_until(lambda: harness.successful_polls() >= polls + 2, "two more polls")
        all_sent_once(harness, 35)
        assert (
            harness.query("SELECT action, scope, name, actor FROM operator_actions ORDER BY id")
            == [("backfill", "sync", "web", "opuser")] * 2
        )
        assert daemon.stop() == 0, daemon.output()

    def test_kill_9_mid_backfill_loses_nothing_and_sends_nothing_twice(
        self, harness: Harness
    ) -> None:
        """SIGKILL after the first page; a re-run queues the rest; each lead is sent once."""
        harness.salesforce.add_records(old_records(600))
        daemon = harness.start()
        # Slow Salesforce down so that the backfill is caught between pages.
        harness.salesforce.inject("delay", count=20, seconds=1.5)
        log_path = harness.tmp / "backfill-1.log"
        command = ("backfill", "--sync", "web", "--since", "2023-01-01", "--until", START_AT)
        with log_path.open("w") as out:
            process = subprocess.Popen(
                syncd_command(*command, config=harness.config_path),
                cwd=harness.tmp,
                env=clean_env(USER="opuser"),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: page_lines(log_path.read_text()), "the first backfill page")
            process.send_signal(signal.SIGKILL)
            assert process.wait(30) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
        committed = len(harness.lead_states())
        assert 200 <= committed < 600
        assert committed % 200 == 0  # whole pages only

        result = backfill(harness, "--since", "2023-01-01", "--until", START_AT)
        line = summary(result)
        assert f"new {600 - committed} " in line and f"known {committed}" in line
        all_sent_once(harness, 600)
        assert daemon.stop() == 0, daemon.output()


class TestDryRunIds:
    def test_dry_run_ids_lists_each_record_and_what_it_would_become(self, harness: Harness) -> None:
        """--dry-run --ids prints every new record's Id with "queued"; nothing is written."""
        ids = harness.salesforce.add_records(old_records(30))
        harness.salesforce.add_records([{**old_records(1, start=40)[0], "Phone": "not a phone"}])
        result = backfill(
            harness, "--since", "2023-01-01", "--until", START_AT, "--dry-run", "--ids"
        )
        assert "new 31 (would queue 30," in summary(result)
        listed = dict(re.findall(r"^(00Q\w{15})\s+new\s+(\w+)", result.stdout, re.M))
        assert {i: listed.get(i) for i in ids} == {i: "queued" for i in ids}
        assert sorted(set(listed.values())) == ["invalid", "queued"]
        assert harness.lead_states() == {}

    def test_ids_without_dry_run_is_refused(self, harness: Harness) -> None:
        result = backfill(harness, "--since", "2023-01-01", "--until", START_AT, "--ids")
        assert result.returncode == 2 and "--dry-run" in result.stderr


def terminal_lines(raw: bytes) -> list[str]:
    """What a terminal shows of ``raw``: per line, the text after its last carriage return."""
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n").replace("\033[K", "")
    return [line.split("\r")[-1] for line in text.split("\n")]


class TestProgressOnATerminal:
    def test_log_lines_never_cut_the_progress_line(self, harness: Harness) -> None:
        """On a terminal the guard's log lines (which say backfill, not poll) stand on lines
        of their own; the progress line is drawn again below them."""
        config = harness.config(sync={"start_at": START_AT, "guard": {"max_new_per_poll": 5}})
        config["salesforce"]["page_size"] = 200
        harness.write_config(**config)
        harness.salesforce.add_records(old_records(30))
        command = ("backfill", "--sync", "web", "--since", "2023-01-01", "--until", START_AT)
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            syncd_command(*command, config=harness.config_path),
            cwd=harness.tmp,
            env=clean_env(USER="opuser"),
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
        )
        os.close(follower)
        raw = b""
        try:
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the command ended
                    break
                if not chunk:
                    break
                raw += chunk
            assert process.wait(60) == 0, raw.decode()
        finally:
            os.close(leader)
            if process.poll() is None:
                process.kill()
        shown = terminal_lines(raw)
        held = [line for line in shown if "held by the blast-radius guard" in line]
        assert held and all("page(s)" not in line for line in held), shown
        assert any("backfill held by the blast-radius guard" in line for line in held), shown
        assert not any("poll held" in line or "until the poll ends" in line for line in shown)
        assert any(re.match(r"backfill web: 1 page\(s\), 30/30 records", line) for line in shown)


class TestBulk:
    def test_large_backfill_uses_bulk_and_sends_each_once(self, harness: Harness) -> None:
        """Above salesforce.bulk_query_above the backfill reads a Bulk API 2.0 job, same outcome."""
        config = harness.config(sync={"start_at": START_AT})
        config["salesforce"].update(page_size=200, bulk_query_above=100)
        harness.write_config(**config)
        harness.salesforce.add_records(old_records(250))
        daemon = harness.start()
        result = backfill(harness, "--since", "2023-01-01", "--until", START_AT)
        assert "250 > 100 records: using Bulk API 2.0" in result.stderr
        assert "new 250 (queued 250," in summary(result)
        soql = [entry["soql"] for entry in harness.salesforce.query_log()]
        assert any(
            "ORDER BY" not in q and q.startswith("SELECT") and "COUNT" not in q for q in soql
        )
        all_sent_once(harness, 250)
        assert harness.salesforce.bulk._jobs == {}  # the job was deleted after reading
        assert daemon.stop() == 0, daemon.output()

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_a_signal_stops_a_running_bulk_job_within_seconds(
        self, harness: Harness, signum: signal.Signals
    ) -> None:
        """SIGTERM or Ctrl-C while the Bulk job runs: the job is aborted, the command exits
        1 within seconds, and no lead was stored (a re-run reads the range again)."""
        config = harness.config(sync={"start_at": START_AT})
        config["salesforce"].update(page_size=200, bulk_query_above=10)
        harness.write_config(**config)
        harness.salesforce.add_records(old_records(30))
        harness.salesforce.bulk.slow = True  # the job stays InProgress, as a large one does
        log_path = harness.tmp / "backfill-bulk.log"
        command = ("backfill", "--sync", "web", "--since", "2023-01-01", "--until", START_AT)
        with log_path.open("w") as out:
            process = subprocess.Popen(
                syncd_command(*command, config=harness.config_path),
                cwd=harness.tmp,
                env=clean_env(USER="opuser"),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: harness.salesforce.bulk._jobs, "the bulk query job")
            process.send_signal(signum)
            assert process.wait(15) == 1, log_path.read_text()
        finally:
            if process.poll() is None:
                process.kill()
        output = log_path.read_text()
        assert "(stopped early)" in output and "Traceback" not in output
        assert len(harness.salesforce.bulk.aborted) == 1
        assert harness.salesforce.bulk._jobs == {}
        assert harness.lead_states() == {}

    def test_a_field_longer_than_the_csv_default_is_read(self, harness: Harness) -> None:
        """A Bulk result with a 200,000-character field is read, not an aborted backfill."""
        mapping = harness.config()["syncs"][0]["mapping"]
        mapping["customData"].update(notes="Description")
        config = harness.config(sync={"start_at": START_AT, "mapping": mapping})
        config["salesforce"].update(page_size=200, bulk_query_above=1)
        harness.write_config(**config)
        long = [{**record, "Description": "n" * 200_000} for record in old_records(3)]
        harness.salesforce.add_records(long)
        result = backfill(harness, "--since", "2023-01-01", "--until", START_AT, "--dry-run")
        assert "using Bulk API 2.0" in result.stderr
        assert "new 3 (would queue 3," in summary(result)


class TestBulkOverKnownRecords:
    def test_records_a_rest_poll_read_are_unchanged_to_a_bulk_backfill(
        self, harness: Harness
    ) -> None:
        """Booleans, numbers, dates, a lookup and empty fields read through Bulk: 0 transitions."""
        [owner] = harness.salesforce.add_records(
            [{"sobject": "User", "Username": "owner@example.com", "Email": "owner@example.com"}]
        )
        typed = [
            {
                **record,
                "DoNotCall": n % 4 == 0,  # some leads skipped: they are evaluated again on change
                "Hot__c": None if n % 5 == 4 else n % 2 == 0,
                "Score__c": None if n % 5 == 4 else [42, 12.5, 1.5e7][n % 3],
                "Birth__c": None if n % 5 == 4 else "1990-02-01",
                "Visit__c": None if n % 5 == 4 else "2026-12-01T10:00:00.250Z",
                "OwnerId": None if n % 5 == 4 else owner,
            }
            for n, record in enumerate(lead_records(12))
        ]
        harness.salesforce.add_records(typed)
        mapping = harness.config()["syncs"][0]["mapping"]
        mapping["customData"].update(
            hot="Hot__c", score="Score__c", birth="Birth__c", visit="Visit__c", owner="Owner.Email"
        )
        config = harness.config(sync={"start_at": START_AT, "mapping": mapping})
        config["salesforce"].update(page_size=200, bulk_query_above=1)
        harness.write_config(**config)
        once = harness.cli("once", timeout=120)
        assert once.returncode == 0, once.stdout + once.stderr
        assert set(harness.lead_states().values()) == {"accepted", "skipped"}
        transitions = harness.query("SELECT COUNT(*) FROM lead_transitions")

        result = backfill(harness, "--since", START_AT, "--until", "2100-01-01T00:00:00Z")
        assert "12 > 1 records: using Bulk API 2.0" in result.stderr
        line = summary(result)
        assert harness.query("SELECT COUNT(*) FROM lead_transitions") == transitions
        assert "new 0 " in line and "known 12" in line and "updated 0" in line


class TestGuard:
    @pytest.fixture
    def guarded(self, harness: Harness) -> Harness:
        config = harness.config(sync={"start_at": START_AT, "guard": {"max_new_per_poll": 20}})
        config["salesforce"]["page_size"] = 200
        harness.write_config(**config)
        return harness

    def test_backfill_over_the_limit_holds_then_release_sends_each_once(
        self, guarded: Harness
    ) -> None:
        """More new leads than the guard allows: all held, nothing sent; release sends each once."""
        guarded.salesforce.add_records(old_records(50))
        daemon = guarded.start()
        line = summary(backfill(guarded, "--since", "2023-01-01", "--until", START_AT))
        assert "HELD 50 by the blast-radius guard" in line
        polls = guarded.successful_polls()
        guarded.wait_until(lambda: guarded.successful_polls() >= polls + 2, "two more polls")
        assert guarded.count_state("held") == 50
        assert guarded.simz.received_counts() == {}
        released = guarded.cli("release", "--sync=web", "-y", timeout=60)
        assert released.returncode == 0, released.stderr
        all_sent_once(guarded, 50)
        assert daemon.stop() == 0, daemon.output()

    def test_release_flag_asks_then_queues_above_the_limit(self, guarded: Harness) -> None:
        """--release without a yes on stdin refuses and reads nothing; with --yes all go once."""
        guarded.salesforce.add_records(old_records(50))
        daemon = guarded.start()
        refused = backfill(guarded, "--since", "2023-01-01", "--until", START_AT, "--release")
        assert refused.returncode == 1
        assert "rerun with --yes" in refused.stderr and "Traceback" not in refused.stderr
        assert guarded.lead_states() == {}
        line = summary(
            backfill(guarded, "--since", "2023-01-01", "--until", START_AT, "--release", "--yes")
        )
        assert "new 50 (queued 50," in line and "HELD" not in line
        all_sent_once(guarded, 50)
        assert (
            guarded.query("SELECT reason FROM operator_actions ORDER BY id")[-1][0]
            == "backfill (--release)"
        )
        assert daemon.stop() == 0, daemon.output()


class TestDryRunWritesNothing:
    def test_dry_run_without_a_database_creates_none(self, harness: Harness) -> None:
        """A dry run reads a throwaway database where there is none: no file is left behind."""
        harness.salesforce.add_records(old_records(5))
        dry = summary(backfill(harness, "--since", "2023-01-01", "--until", START_AT, "--dry-run"))
        assert "new 5 (would queue 5," in dry
        assert not harness.db_path.exists()
        assert not harness.db_path.parent.exists() or not any(harness.db_path.parent.iterdir())


class TestRefusals:
    def test_empty_range_and_unknown_sync(self, harness: Harness) -> None:
        """An empty range or an unknown sync is one line and exit 2."""
        result = backfill(harness, "--since", START_AT, "--until", "2023-01-01")
        assert result.returncode == 2 and "nothing to backfill" in result.stderr
        other = harness.cli("backfill", "--sync", "nope", "--since", START_AT, timeout=60)
        assert other.returncode == 2 and "no sync named 'nope'" in other.stderr
        assert "Traceback" not in result.stderr + other.stderr
