"""``syncd pause``/``resume`` against a running ``syncd run``, as an operator uses them.

The daemon and the CLI are real subprocesses sharing one SQLite file; both
emulators run in the test process. The SimZ emulator records every lead it
received, so "sent once" is counted at the receiving end.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Daemon, Harness, lead_records


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        yield h


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def polls_after(harness: Harness, count: int) -> None:
    """Wait for ``count`` more successful polls (delivery runs as often)."""
    start = harness.successful_polls()
    harness.wait_until(lambda: harness.successful_polls() >= start + count, f"{count} more polls")


def metric_line(daemon: Daemon, needle: str) -> str | None:
    _, text = daemon.get("/metrics")
    return next((line for line in text.splitlines() if line.startswith(needle)), None)


class TestPauseWords:
    def test_pause_and_status_say_who_when_why_and_the_resume_command(
        self, harness: Harness
    ) -> None:
        """The pause's message and status name the actor, the time, the reason and the
        exact `syncd resume --sync <name>` (database only: no daemon needed)."""
        ok(harness.cli("migrate"))
        out = ok(harness.cli("pause", "--sync", "web", "--reason", "CHG-42", "--by", "alice"))
        assert re.search(
            r"^paused: sync web paused by alice since \S+ \S+Z, reason: CHG-42$", out, re.M
        )
        assert "to resume: syncd resume --sync web\n" in out
        status = ok(harness.cli("status"))
        assert re.search(
            r"^  delivery +PAUSED by an operator: alice, since \S+ \S+Z, reason: CHG-42$",
            status,
            re.M,
        ), status
        assert re.search(r"^ +to resume: syncd resume --sync web$", status, re.M), status
        assert "syncd resume --sync to resume" not in status


class TestPauseSync:
    def test_pause_stops_sending_and_resume_sends_each_lead_once(self, harness: Harness) -> None:
        """Paused: polling goes on, nothing is sent; resumed: each waiting lead goes once."""
        harness.salesforce.add_records(lead_records(5))
        daemon = harness.start()
        harness.wait_until(lambda: harness.count_state("accepted") == 5, "5 leads accepted")

        out = ok(harness.cli("pause", "--sync", "web", "--reason", "campaign change"))
        assert "paused: sync web" in out and "by opuser" in out
        harness.salesforce.add_records(lead_records(10, start=5))
        harness.wait_until(lambda: harness.count_state("queued") == 10, "10 new leads queued")
        polls_after(harness, 3)
        assert len(harness.simz.received()) == 5
        assert harness.count_state("queued") == 10

        status, body = daemon.get_json("/status.json")
        assert status == 200, body
        assert body["paused"] == [
            {"scope": "sync", "name": "web", "reason": "campaign change", "by": "opuser"}
        ]
        report: dict[str, Any] = json.loads(ok(harness.cli("status", "--json")))
        assert report["syncs"][0]["delivery_paused"] is True
        assert [(p["scope"], p["name"], p["paused_by"]) for p in report["operator_pauses"]] == [
            ("sync", "web", "opuser")
        ]
        assert "PAUSED by an operator" in ok(harness.cli("status"))
        harness.wait_until(
            lambda: metric_line(daemon, 'syncd_paused{name="web",scope="operator_sync"} 1.0'),
            "syncd_paused for the operator pause",
        )

        out = ok(harness.cli("resume", "--sync", "web", "--by", "alice"))
        assert "resumed sync web (by alice)" in out
        harness.wait_until(lambda: harness.count_state("accepted") == 15, "15 leads accepted")
        polls_after(harness, 3)
        counts = harness.simz.received_counts()
        assert len(counts) == 15 and set(counts.values()) == {1}
        assert daemon.get_json("/status.json")[1]["paused"] == []
        assert daemon.stop() == 0, daemon.output()
        assert daemon.find("delivery resumed by an operator") is None  # logged by the CLI
        assert harness.query(
            "SELECT action, scope, name, actor FROM operator_actions ORDER BY id"
        ) == [("pause", "sync", "web", "opuser"), ("resume", "sync", "web", "alice")]


class TestPauseAgent:
    def test_paused_agent_waits_while_the_other_flows(
        self, harness: Harness, simz_emulator: SimzEmulator
    ) -> None:
        """An agent pause holds only that agent's leads; resume sends them once each."""
        config = harness.config()
        sync = config["syncs"][0]
        del sync["agent"]
        sync["route"] = {"field": "Company", "values": {"Acme": "agt_1", "Beta": "agt_2"}}
        harness.write_config(**config)
        daemon = harness.start()
        ok(harness.cli("pause", "--agent", "agt_1", "--reason", "agent on holiday"))
        harness.salesforce.add_records(lead_records(6, Company="Acme"))
        harness.salesforce.add_records(lead_records(4, start=6, Company="Beta"))
        harness.wait_until(lambda: harness.count_state("accepted") == 4, "agt_2's leads accepted")
        polls_after(harness, 3)
        received = simz_emulator.received()
        assert len(received) == 4
        assert {lead["agentId"] for lead in received} == {"agt_2"}
        assert harness.count_state("queued") == 6

        ok(harness.cli("resume", "--agent", "agt_1"))
        harness.wait_until(lambda: harness.count_state("accepted") == 10, "all leads accepted")
        polls_after(harness, 2)
        counts = simz_emulator.received_counts()
        assert len(counts) == 10 and set(counts.values()) == {1}
        assert daemon.stop() == 0, daemon.output()


class TestRefusals:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["pause", "--sync", "nope", "--reason", "x"], "no sync 'nope' in the configuration"),
            (["pause", "--agent", "agt_9", "--reason", "x"], "no agent 'agt_9'"),
            (["pause", "--sync", "web"], "Missing option '--reason'"),
            (["pause", "--sync", "web", "--agent", "agt_1", "--reason", "x"], "exactly one"),
            (["resume"], "exactly one"),
        ],
    )
    def test_bad_target_or_missing_reason(
        self, harness: Harness, args: list[str], message: str
    ) -> None:
        """A typo, a missing reason or an ambiguous target is one line and exit 2."""
        result = harness.cli(*args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
