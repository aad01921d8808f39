"""End-to-end: the blast-radius guard and calling hours through the real CLI and both emulators.

``syncd once``, ``release``, ``discard``, ``status`` and ``leads`` run as
subprocesses on a SQLite file; the SimZ emulator records every lead it got.
"""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, clean_env, lead_records, syncd_command


def syncd(
    harness: Harness, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    result = harness.cli(*args, stdin=stdin, env=clean_env(**env))
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def guarded(harness: Harness, limit: int = 5, **sync: Any) -> None:
    harness.write_config(sync={"guard": {"max_new_per_poll": limit}, **sync})


def states(harness: Harness) -> list[str]:
    return sorted(set(harness.lead_states().values()))


class TestBlastRadiusGuard:
    def test_held_poll_sends_nothing_until_release_then_each_once(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        with Harness(tmp_path, simz_emulator) as harness:
            guarded(harness)
            ids = harness.salesforce.add_records(lead_records(12))
            dry = syncd(harness, "once", "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert "would HOLD 12 new lead(s)" in dry.stdout

            once = syncd(harness, "once")
            assert once.returncode == 0, once.stderr
            assert "HELD 12" in once.stdout
            assert simz_emulator.received() == []
            assert states(harness) == ["held"]
            assert "poll held by the blast-radius guard" in once.stdout + once.stderr

            status = syncd(harness, "status")
            assert "held 12" in status.stdout and "syncd release --sync web" in status.stdout
            listed = syncd(harness, "leads", "--state", "held")
            assert all(sf_id in listed.stdout for sf_id in ids)

            again = syncd(harness, "once")  # a second pass sends nothing either
            assert again.returncode == 0 and simz_emulator.received() == []

            refused = syncd(harness, "release", "--sync", "web")  # no answer on stdin
            assert refused.returncode == 1 and "--yes" in refused.stderr
            declined = syncd(harness, "release", "--sync", "web", stdin="n\n")
            assert declined.returncode == 1
            assert states(harness) == ["held"]

            released = syncd(harness, "release", "--sync", "web", stdin="y\n")
            assert released.returncode == 0, released.stderr
            assert "released 12 lead(s)" in released.stdout
            trail = harness.query(
                "SELECT COUNT(*) FROM lead_transitions WHERE from_state = 'held' "
                "AND to_state = 'queued' AND reason = 'operator release (by opuser)'"
            )
            assert trail == [(12,)]

            sent = syncd(harness, "once")
            assert sent.returncode == 0, sent.stderr
            syncd(harness, "once")
            assert simz_emulator.received_counts() == {sf_id: 1 for sf_id in ids}
            assert states(harness) == ["accepted"]
            nothing = syncd(harness, "release", "--sync", "web", "--yes")
            assert "nothing to release" in nothing.stdout

    def test_discard_skips_them(self, tmp_path: Path, simz_emulator: SimzEmulator) -> None:
        with Harness(tmp_path, simz_emulator) as harness:
            guarded(harness)
            harness.salesforce.add_records(lead_records(8))
            assert syncd(harness, "once").returncode == 0
            discarded = syncd(harness, "discard", "--sync", "web", "--yes")
            assert discarded.returncode == 0, discarded.stderr
            assert "discarded 8 lead(s)" in discarded.stdout
            assert states(harness) == ["skipped"]
            assert syncd(harness, "once").returncode == 0
            assert simz_emulator.received() == []

    def test_within_the_limit_is_sent_at_once(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        with Harness(tmp_path, simz_emulator) as harness:
            guarded(harness)
            ids = harness.salesforce.add_records(lead_records(5))
            assert syncd(harness, "once").returncode == 0
            assert simz_emulator.received_counts() == {sf_id: 1 for sf_id in ids}

    def test_sigkill_during_release_loses_nothing_and_sends_nothing_twice(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        """Release killed at several moments: all held or all queued, never a mix or a loss."""
        with Harness(tmp_path, simz_emulator) as harness:
            guarded(harness)
            ids = harness.salesforce.add_records(lead_records(600))
            assert syncd(harness, "once").returncode == 0
            assert states(harness) == ["held"]
            command = syncd_command("release", "--sync", "web", "--yes", config=harness.config_path)
            for delay in (0.2, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0):
                process = subprocess.Popen(
                    command,
                    cwd=harness.tmp,
                    env=clean_env(USER="opuser"),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(delay)
                process.send_signal(signal.SIGKILL)
                process.wait(30)
                found = harness.lead_states()
                assert set(found) == set(ids)
                assert len(set(found.values())) == 1, "a release is all or nothing"
                if set(found.values()) == {"queued"}:
                    break
            final = syncd(harness, "release", "--sync", "web", "--yes")
            assert final.returncode == 0, final.stderr
            assert states(harness) == ["queued"]
            for _ in range(3):
                assert syncd(harness, "once").returncode == 0
            assert simz_emulator.received_counts() == {sf_id: 1 for sf_id in ids}
            moves = harness.query(
                "SELECT COUNT(*) FROM lead_transitions WHERE from_state = 'held' "
                "AND to_state = 'queued'"
            )
            assert moves == [(600,)]


class TestCallingHours:
    def test_outside_the_window_waits_and_is_sent_when_it_opens(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        """01:00 tomorrow in Washington DC: queued, no attempt; at 08:30 it is sent, once."""
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
        dc = ZoneInfo("America/New_York")

        def local(hour: int, minute: int = 0) -> datetime:
            return datetime.combine(tomorrow, dt_time(hour, minute), tzinfo=dc).astimezone(UTC)

        def at(moment: datetime) -> str:
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

        with Harness(tmp_path, simz_emulator) as harness:
            harness.write_config(
                sync={"calling_hours": {"window": "08:00-21:00", "days": "mon-sun"}}
            )
            stamp = (local(1) - timedelta(hours=1)).isoformat()
            ids = harness.salesforce.add_records(
                [{**record, "SystemModstamp": stamp} for record in lead_records(3)]
            )
            night = syncd(harness, "once", SYNCD_TEST_NOW=at(local(1)))
            assert night.returncode == 0, night.stderr
            assert simz_emulator.received() == []
            assert states(harness) == ["queued"]
            opens = local(8).strftime("%Y-%m-%d %H:%M:%S.000000")
            assert harness.query("SELECT DISTINCT attempts, next_attempt_at FROM leads") == [
                (0, opens)
            ]
            listed = syncd(harness, "leads")
            assert listed.stdout.count("waiting for calling hours") == 3
            status = syncd(harness, "status")
            assert "3 queued lead(s) waiting for calling hours" in status.stdout

            still = syncd(harness, "once", SYNCD_TEST_NOW=at(local(7, 59)))
            assert still.returncode == 0 and simz_emulator.received() == []

            morning = syncd(harness, "once", SYNCD_TEST_NOW=at(local(8, 30)))
            assert morning.returncode == 0, morning.stderr
            assert simz_emulator.received_counts() == {sf_id: 1 for sf_id in ids}
            assert states(harness) == ["accepted"]

    def test_test_clock_is_refused_against_a_real_simz(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        with Harness(tmp_path, simz_emulator) as harness:
            harness.write_config(simz={"base_url": "https://api.simz.com"})
            result = syncd(harness, "once", SYNCD_TEST_NOW="2026-01-06T06:00:00Z")
            assert result.returncode == 2
            assert "loopback" in result.stderr


class TestDaemon:
    def test_running_daemon_holds_a_multi_page_poll_and_stays_ready(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        """`syncd run` polls 600 records in 3 pages while delivering every second: nothing
        reaches SimZ, /status.json names held:web while /readyz stays 200; after `release`
        each lead is sent once."""
        with Harness(tmp_path, simz_emulator) as harness:
            config = harness.config(sync={"guard": {"max_new_per_poll": 300}})
            config["salesforce"]["page_size"] = 200
            harness.config_path.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
            ids = harness.salesforce.add_records(lead_records(600))
            daemon = harness.start()
            harness.wait_until(lambda: harness.count_state("held") == 600, "600 held leads")
            polls = harness.successful_polls()
            harness.wait_until(
                lambda: harness.successful_polls() >= polls + 3, "three more polls and deliveries"
            )
            assert simz_emulator.received() == []
            assert harness.query("SELECT pages, held FROM poll_runs WHERE held > 0") == [(3, 600)]
            status, body = daemon.get_json("/status.json")
            assert status == 503 and "held:web" in {item["check"] for item in body["failing"]}
            assert daemon.get("/readyz")[0] == 200  # the replica can still be drained
            assert daemon.find("poll held by the blast-radius guard", sync="web") is not None

            released = syncd(harness, "release", "--sync", "web", "--yes")
            assert released.returncode == 0, released.stderr
            harness.wait_until(
                lambda: len(simz_emulator.received()) == 600, "every released lead sent"
            )
            harness.wait_until(lambda: daemon.get("/status.json")[0] == 200, "all checks ok again")
            assert daemon.stop() == 0
            assert simz_emulator.received_counts() == {sf_id: 1 for sf_id in ids}

    def test_a_lookback_over_the_limit_logs_the_hold_once_not_every_poll(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        """Once the lookback holds more records than the limit every poll holds until it
        ends; `syncd run` says so once, when it starts, not at each poll."""
        with Harness(tmp_path, simz_emulator) as harness:
            guarded(harness, limit=5)
            harness.salesforce.add_records(lead_records(12))
            daemon = harness.start()
            harness.wait_until(lambda: harness.count_state("held") == 12, "12 held leads")
            polls = harness.successful_polls()
            harness.wait_until(lambda: harness.successful_polls() >= polls + 3, "three more polls")
            holds = [
                e for e in daemon.logs() if e.get("event") == "new leads held until the poll ends"
            ]
            assert len(holds) == 1, holds
            assert daemon.stop() == 0
