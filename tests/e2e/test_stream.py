"""``syncd run`` with ``source.mode: stream``: change events to SimZ through the real CLI.

Records created "back-dated" (a SystemModstamp long before the poll's
watermark) are invisible to every poll: when such a record reaches SimZ, the
stream brought it. The regular poll runs once at start (and then hourly), so a
first record read by it puts the watermark at the present.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Daemon, Harness, clean_env, lead_records

BACK_DATED = "2021-06-01T00:00:00Z"


def stream_sync(**extra: Any) -> dict[str, Any]:
    """Stream mode, hourly polls that never reach back to the back-dated records."""
    return {
        "source": {"mode": "stream", "reconcile_every": "1h"},
        "lookback": "1m",
        "start_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
        **extra,
    }


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        h.write_config(sync=stream_sync())
        yield h


def back_dated(count: int, start: int, **fields: Any) -> list[dict[str, Any]]:
    return lead_records(count, start=start, SystemModstamp=BACK_DATED, **fields)


def start_streaming(harness: Harness) -> Daemon:
    """Start with one present-day record (the watermark), once the stream is connected."""
    if not harness.lead_states():
        # A few seconds old: the first poll's window ends at a whole second before now.
        stamp = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
        harness.salesforce.add_records(lead_records(1, start=650, SystemModstamp=stamp))
    daemon = harness.start()
    daemon.wait_log("stream connected")
    harness.wait_until(lambda: harness.successful_polls() >= 1, "the first poll")
    harness.wait_until(lambda: harness.simz.received_counts(), "the first poll's lead sent")
    return daemon


def daemon_lines(daemon: Daemon, event: str) -> list[dict[str, Any]]:
    return [line for line in daemon.logs() if line.get("event") == event]


def sent_once(harness: Harness, ids: list[str]) -> bool:
    counts = harness.simz.received_counts()
    return all(counts.get(record_id) == 1 for record_id in ids)


def no_duplicates(harness: Harness) -> None:
    counts = harness.simz.received_counts()
    assert set(counts.values()) <= {1}, {k: v for k, v in counts.items() if v > 1}


class TestStream:
    def test_created_record_arrives_once_through_the_stream(self, harness: Harness) -> None:
        """A record created while syncd runs reaches SimZ once, read because of its event."""
        daemon = start_streaming(harness)
        ids = harness.salesforce.add_records(back_dated(1, 0))
        harness.wait_until(lambda: sent_once(harness, ids), "the streamed lead sent")
        assert daemon.find("stream batch", new=1) is not None
        status, body = daemon.get_json("/status.json")
        assert status == 200 and body["checks"]["stream:web"] == "ok", body
        web = body["streams"]["web"]
        assert web["connected"] is True and web["last_event_age_seconds"] is not None
        assert web["replay_lag_seconds"] is not None and web["gaps"] == 0
        _, metrics = daemon.get("/metrics")
        assert 'syncd_stream_connected{sync="web"} 1.0' in metrics
        assert daemon.stop() == 0, daemon.output()
        no_duplicates(harness)
        status = subprocess.run(
            [sys.executable, "-m", "syncd", "status", "-c", str(harness.config_path), "--json"],
            cwd=harness.tmp,
            env=clean_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        stream = json.loads(status.stdout)["syncs"][0]["stream"]
        assert stream["mode"] == "stream" and stream["topic"] == "/data/LeadChangeEvent"
        assert stream["replay_stored"] is True and stream["last_event_at"] is not None
        assert stream["state"] == "not running"  # stopped: no replica leads the sync

    def test_events_while_down_arrive_after_restart(self, harness: Harness) -> None:
        """Events published while syncd was stopped come from the stored replay id."""
        daemon = start_streaming(harness)
        first = harness.salesforce.add_records(back_dated(1, 0))
        harness.wait_until(lambda: sent_once(harness, first), "the first streamed lead")
        assert daemon.stop() == 0, daemon.output()
        missed = harness.salesforce.add_records(back_dated(3, 1))
        daemon = harness.start()
        harness.wait_until(lambda: sent_once(harness, missed), "the missed leads")
        custom = [s for s in harness.salesforce.subscribe_log() if s["preset"] == "CUSTOM"]
        assert custom and custom[-1]["outcome"] == "subscribed"
        assert daemon.stop() == 0, daemon.output()
        no_duplicates(harness)

    def test_expired_replay_reconciles(self, harness: Harness) -> None:
        """An expired replay id: LATEST, a reconciliation poll, nothing lost or sent twice."""
        daemon = start_streaming(harness)
        first = harness.salesforce.add_records(lead_records(1, start=0))
        harness.wait_until(lambda: sent_once(harness, first), "the first lead")
        assert daemon.stop() == 0, daemon.output()
        missed = harness.salesforce.add_records(lead_records(3, start=1))
        harness.salesforce.pubsub_fault("expire_replay")
        daemon = harness.start()
        harness.wait_until(lambda: sent_once(harness, missed), "the missed leads")
        daemon.wait_log("stream replay id refused; starting at LATEST and reconciling the gap")
        daemon.wait_log("stream gap reconciled")
        later = harness.salesforce.add_records(back_dated(1, 10))
        harness.wait_until(lambda: sent_once(harness, later), "a lead after the reset")
        _, metrics = daemon.get("/metrics")
        assert 'syncd_stream_replay_resets_total{sync="web"} 1.0' in metrics
        assert daemon.stop() == 0, daemon.output()
        no_duplicates(harness)

    def test_unauthenticated_logs_in_again(self, harness: Harness) -> None:
        """UNAUTHENTICATED mid-stream: syncd logs in again and the stream goes on."""
        daemon = start_streaming(harness)
        harness.salesforce.pubsub_fault("UNAUTHENTICATED")
        daemon.wait_log("pubsub session refused; logging in again")
        # Back-dated, its event is the only way in: publish it once the new stream is open.
        harness.wait_until(lambda: len(daemon_lines(daemon, "stream connected")) >= 2, "reopened")
        ids = harness.salesforce.add_records(back_dated(1, 0))
        harness.wait_until(lambda: sent_once(harness, ids), "the lead after the new login")
        assert daemon.stop() == 0, daemon.output()

    def test_gap_event_reads_the_record(self, harness: Harness) -> None:
        """A record known only through a gap event is read and sent."""
        hidden = harness.salesforce.add_records(back_dated(1, 0))  # before the stream
        daemon = start_streaming(harness)
        assert harness.simz.received_counts().get(hidden[0]) is None
        harness.salesforce.publish_gap("Lead", hidden, "GAP_CREATE")
        harness.wait_until(lambda: sent_once(harness, hidden), "the gap's record sent")
        assert daemon.stop() == 0, daemon.output()

    def test_stream_and_poll_send_once(self, harness: Harness) -> None:
        """A record seen by the stream and by frequent polls is sent exactly once."""
        harness.write_config(sync=stream_sync(source={"mode": "stream", "reconcile_every": "1s"}))
        daemon = start_streaming(harness)
        ids = harness.salesforce.add_records(lead_records(5, start=0))
        harness.wait_until(lambda: sent_once(harness, ids), "the leads sent")
        polls = harness.successful_polls()
        harness.wait_until(lambda: harness.successful_polls() >= polls + 3, "three more polls")
        assert daemon.stop() == 0, daemon.output()
        no_duplicates(harness)

    def test_do_not_call_by_stream_is_skipped(self, harness: Harness) -> None:
        """A DoNotCall record arriving by stream is skipped, never sent."""
        daemon = start_streaming(harness)
        [dnc] = harness.salesforce.add_records(back_dated(1, 0, DoNotCall=True))
        after = harness.salesforce.add_records(back_dated(1, 1))
        harness.wait_until(lambda: sent_once(harness, after), "the later lead sent")
        harness.wait_until(lambda: harness.lead_states().get(dnc) == "skipped", "skipped")
        assert dnc not in harness.simz.received_counts()
        assert daemon.stop() == 0, daemon.output()

    def test_sigkill_during_intake(self, harness: Harness) -> None:
        """SIGKILL while events flow in: after a restart every record has its lead, none twice."""
        daemon = start_streaming(harness)
        ids = harness.salesforce.add_records(back_dated(1, 199))
        harness.wait_until(lambda: sent_once(harness, ids), "a replay id stored")
        for chunk in range(6):
            ids += harness.salesforce.add_records(back_dated(20, chunk * 20))
            if chunk == 2:
                daemon.stop(signal.SIGKILL)
        daemon = harness.start()
        harness.wait_until(lambda: set(ids) <= set(harness.lead_states()), "every record a lead")
        harness.wait_until(
            lambda: all(harness.lead_states()[i] in ("accepted", "uncertain") for i in ids),
            "every lead settled",
        )
        assert daemon.stop() == 0, daemon.output()
        no_duplicates(harness)
        counts = harness.simz.received_counts()
        states = harness.lead_states()
        accepted = [i for i in ids if states[i] == "accepted"]
        assert all(counts.get(i) == 1 for i in accepted)
