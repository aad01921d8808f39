"""``syncd reconcile`` next to a running ``syncd run``: what no poll or stream reads is found.

The CLI and the daemon are real subprocesses on one SQLite file. A record is
made to match the sync's query behind its watermark (an hour old, no change
event), as a formula field's new value does in an org: the daemon never reads
it; the sweep names it, ``--queue`` takes it in and the daemon sends it once,
through the send gate.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        yield h


def behind(harness: Harness, count: int, start: int = 100) -> list[str]:
    """Records that match an hour behind the watermark, without a change event."""
    stamp = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    return harness.salesforce.add_records(
        lead_records(count, start=start, SystemModstamp=stamp), publish=False
    )


def reconcile(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    result = harness.cli("reconcile", "--sync", "web", *args, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def reconcile_json(harness: Harness, *args: str) -> dict[str, Any]:
    result = reconcile(harness, "--json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def all_sent_once(harness: Harness, expected: int) -> None:
    harness.wait_until(lambda: harness.count_state("accepted") == expected, f"{expected} accepted")
    counts = harness.simz.received_counts()
    assert len(counts) == expected and set(counts.values()) == {1}


def polled_once(harness: Harness) -> None:
    """Run the daemon until one present record is sent: the watermark is now, then stop it."""
    harness.salesforce.add_records(lead_records(1, start=690))
    daemon = harness.start()
    all_sent_once(harness, 1)
    assert daemon.stop() == 0, daemon.output()


def actions(harness: Harness) -> list[tuple[Any, ...]]:
    return harness.query("SELECT action, actor FROM operator_actions ORDER BY id")


class TestReconcile:
    @pytest.mark.parametrize("mode", ["poll", "stream"])
    def test_a_record_behind_the_watermark_is_found_and_sent_once(
        self, harness: Harness, mode: str
    ) -> None:
        """Never read by the daemon; reported missed; --dry-run changes nothing; --queue
        takes it in and the daemon sends it once; a rerun finds nothing missed."""
        if mode == "stream":
            start = (datetime.now(UTC) - timedelta(days=1)).isoformat()
            source = {"mode": "stream", "reconcile_every": "1h"}
            harness.write_config(sync={"source": source, "start_at": start})
        harness.salesforce.add_records(lead_records(3))
        daemon = harness.start()
        if mode == "stream":
            daemon.wait_log("stream connected")
        all_sent_once(harness, 3)
        [hidden] = behind(harness, 1)
        # The daemon goes on reading: a new record arrives and is sent; the hidden one is not.
        harness.salesforce.add_records(lead_records(1, start=50))
        all_sent_once(harness, 4)
        polls = harness.successful_polls()
        if mode == "poll":
            harness.wait_until(lambda: harness.successful_polls() >= polls + 2, "two more polls")
        assert hidden not in harness.lead_states()

        # By default up to where the poll's window begins: the polled records (stamped
        # within the lookback) are the poll's, not the sweep's.
        found = reconcile_json(harness)
        assert found["missed"] == [hidden] and found["no_longer_matched"] == []
        assert found["states"] == {} and found["intake"] is None
        wide = reconcile_json(harness, "--until", "2100-01-01T00:00:00Z")
        assert wide["missed"] == [hidden] and wide["states"] == {"accepted": 4}

        dry = reconcile_json(harness, "--queue", "--dry-run")
        assert dry["missed"] == [hidden] and dry["intake"]["queued"] == 1
        assert hidden not in harness.lead_states() and actions(harness) == []

        summary = reconcile(harness)
        assert summary.returncode == 0
        assert "missed 1, no longer matched 0" in summary.stdout and hidden in summary.stdout
        assert "syncd reconcile --sync web --queue" in summary.stdout

        taken = reconcile(harness, "--queue")
        assert taken.returncode == 0 and "(queued 1," in taken.stdout, taken.stdout
        all_sent_once(harness, 5)
        assert harness.simz.received_counts()[hidden] == 1
        assert actions(harness) == [("reconcile", "opuser")]
        again = reconcile_json(harness, "--queue", "--until", "2100-01-01T00:00:00Z")
        assert again["missed"] == [] and again["states"] == {"accepted": 5}
        assert daemon.stop() == 0, daemon.output()

    def test_kill_9_during_a_slow_bulk_read_then_a_rerun_finishes(self, harness: Harness) -> None:
        """SIGKILL while the Bulk job runs: nothing was written; the rerun takes all in once."""
        config = harness.config()
        config["salesforce"].update(page_size=200, bulk_query_above=10)
        harness.write_config(**config)
        polled_once(harness)
        hidden = behind(harness, 30)
        harness.salesforce.bulk.slow = True  # the job stays InProgress, as a large one does
        process = subprocess.Popen(
            syncd_command("reconcile", "--sync", "web", "--queue", config=harness.config_path),
            cwd=harness.tmp,
            env=clean_env(USER="opuser"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: harness.salesforce.bulk._jobs, "the bulk query job")
            process.send_signal(signal.SIGKILL)
            assert process.wait(30) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
        assert len(harness.lead_states()) == 1
        harness.salesforce.bulk.slow = False
        daemon = harness.start()
        result = reconcile(harness, "--queue")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "using Bulk API 2.0" in result.stderr and "(queued 30," in result.stdout
        all_sent_once(harness, 31)
        assert set(hidden) < set(harness.simz.received_counts())
        assert daemon.stop() == 0, daemon.output()

    def test_kill_9_between_intake_pages_keeps_whole_pages(self, harness: Harness) -> None:
        """SIGKILL after the intake's first page (200 Ids): whole pages only; the rerun
        queues the rest; every lead is sent once."""
        polled_once(harness)
        hidden = behind(harness, 600)
        harness.salesforce.inject("delay", count=30, seconds=1.5)
        log_path = harness.tmp / "reconcile-1.log"
        with log_path.open("w") as out:
            process = subprocess.Popen(
                syncd_command("reconcile", "--sync", "web", "--queue", config=harness.config_path),
                cwd=harness.tmp,
                env=clean_env(USER="opuser"),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(
                lambda: [
                    line
                    for line in json_lines(log_path.read_text())
                    if line.get("event") == "reconcile page" and "new" in line
                ],
                "the first intake page",
                timeout=120,
            )
            process.send_signal(signal.SIGKILL)
            assert process.wait(30) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
        committed = len(harness.lead_states()) - 1
        assert 200 <= committed < 600 and committed % 200 == 0
        harness.salesforce.clear_faults()
        daemon = harness.start()
        result = reconcile(harness, "--queue")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"missed {600 - committed}," in result.stdout
        assert f"(queued {600 - committed}," in result.stdout
        all_sent_once(harness, 601)
        assert set(hidden) < set(harness.simz.received_counts())
        assert daemon.stop() == 0, daemon.output()


class TestRefusals:
    def test_unknown_sync_and_empty_range(self, harness: Harness) -> None:
        other = harness.cli("reconcile", "--sync", "nope", timeout=60)
        assert other.returncode == 2 and "no sync named 'nope'" in other.stderr
        empty = reconcile(harness, "--since", "2024-01-02", "--until", "2024-01-01")
        assert empty.returncode == 2 and "nothing to reconcile" in empty.stderr
