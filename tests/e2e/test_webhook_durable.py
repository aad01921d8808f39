"""The webhook receiver in the real daemon: no 2xx before the commit, even across a SIGKILL.

The test holds SQLite's write lock (``BEGIN IMMEDIATE`` on its own connection)
so the receiver's INSERT waits; the daemon is killed while it waits. The
sender got no answer at all, nothing was stored, and the redelivery to the
restarted daemon is stored once. The daemon's processor finds no correlation
value in it, and ``syncd calls --unmatched`` lists it.
"""

from __future__ import annotations

import http.client
import json
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Any

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Daemon, Harness

TOKEN = "e2e-" + "5d1c9a7b" * 5
HOOK = {"event": "call.completed", "callId": "call_e2e_1", "call": {"outcome": "answered"}}


def webhook_section() -> dict[str, Any]:
    return {
        "webhook": {
            "listen": "127.0.0.1:0",
            "public_url": "https://hooks.example.com",
            "token": TOKEN,
            "correlation_secret": "k" * 40,
        }
    }


def receiver_address(daemon: Daemon) -> tuple[str, int]:
    line = daemon.wait_log("webhook receiver listening")
    assert TOKEN not in json.dumps(line)
    assert line["public_url"] == "https://hooks.example.com/hooks/simz/***"
    host, port = str(line["listen"]).rsplit(":", 1)
    return host, int(port)


def post_hook(address: tuple[str, int], body: bytes) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection(*address, timeout=120)
    try:
        connection.request(
            "POST", f"/hooks/simz/{TOKEN}", body, {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def stored_events(db_path: Path) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(db_path, timeout=60)
    try:
        return list(connection.execute("SELECT id, status, body FROM call_events ORDER BY id"))
    finally:
        connection.close()


def test_sigkill_before_the_commit_sends_no_2xx_and_the_redelivery_is_stored_once(
    tmp_path: Path, simz_emulator: SimzEmulator
) -> None:
    body = json.dumps(HOOK).encode()
    with Harness(tmp_path, simz_emulator) as h:
        h.write_config(
            simz=webhook_section(),
            observability={"listen": "127.0.0.1:0", "log_format": "json", "log_level": "debug"},
        )
        first = h.start()
        address = receiver_address(first)

        lock = sqlite3.connect(h.db_path, timeout=60, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        outcome: dict[str, Any] = {}

        def deliver() -> None:
            try:
                outcome["answer"] = post_hook(address, body)
            except (OSError, http.client.HTTPException) as exc:
                outcome["error"] = exc

        sender = threading.Thread(target=deliver)
        sender.start()
        try:
            # The body was read and its commit waits on the lock: kill now.
            first.wait_log("webhook storing", bytes=len(body))
            first.kill()
            assert first.process.returncode == -signal.SIGKILL
            sender.join(60)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert "answer" not in outcome, outcome
        assert isinstance(outcome["error"], OSError | http.client.HTTPException)
        assert stored_events(h.db_path) == []

        second = h.start()
        address = receiver_address(second)
        assert post_hook(address, body) == (200, {"status": "stored"})
        assert post_hook(address, body) == (200, {"status": "duplicate"})
        [(event_id, _status, stored)] = stored_events(h.db_path)
        assert json.loads(stored) == HOOK
        assert second.find("webhook received", event_id=event_id, new=True, bytes=len(body))

        # The processor marks it unmatched (it names no lead); it is listed, never deleted.
        h.wait_until(lambda: stored_events(h.db_path)[0][1] == "unmatched", "the event processed")
        listed = h.cli("calls", "--unmatched")
        assert listed.returncode == 0, listed.stderr
        [header, row] = listed.stdout.splitlines()
        assert header.split()[:3] == ["EVENT", "RECEIVED", "STATUS"]
        assert row.split()[0] == str(event_id) and "unmatched" in row.split()
        assert "no syncdRef in the payload" in row
        as_json = json.loads(h.cli("calls", "--unmatched", "--json").stdout)
        assert [(e["id"], e["status"]) for e in as_json["events"]] == [(event_id, "unmatched")]
        assert h.cli("calls", "--unreadable").stdout.strip() == "no unreadable call events"
        assert second.stop() == 0
        assert stored_events(h.db_path)[0][:2] == (event_id, "unmatched")


def test_check_config_prints_the_receiver_with_the_token_masked(
    tmp_path: Path, simz_emulator: SimzEmulator
) -> None:
    with Harness(tmp_path, simz_emulator) as h:
        h.write_config(simz=webhook_section())
        checked = h.cli("check-config")
    assert checked.returncode == 0, checked.stderr
    assert (
        "  webhook receiver: listen 127.0.0.1:0 on every replica; SimZ posts to "
        "https://hooks.example.com/hooks/simz/***"
    ) in checked.stdout.splitlines()
    assert TOKEN not in checked.stdout + checked.stderr
