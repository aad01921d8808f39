"""End-to-end: decisions that stick, and a guard that counts every lead made sendable.

Through the real CLI (``syncd once``, ``discard``, ``syncd run`` in stream mode)
and both emulators, on a SQLite file. Each test is a case where a person who
must not be called, or must not be called yet, used to be called
(docs/design.md#one-ledger):

* an operator's discard revived by an unrelated edit of the record;
* invalid leads made callable by a mass update, past the guard's limit;
* a mass import while streaming, past the guard's rolling window;
* a deletion (DELETE, or GAP_DELETE from a clean-up job) of a lead that was
  queued, or claimed ahead and then handed back by a 503.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, lead_records
from tests.e2e.test_stream import back_dated, start_streaming, stream_sync


def syncd(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    result = harness.cli(*args)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def once(harness: Harness) -> subprocess.CompletedProcess[str]:
    result = syncd(harness, "once")
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def states_of(harness: Harness, ids: list[str]) -> list[str]:
    states = harness.lead_states()
    return sorted({states.get(sf_id, "missing") for sf_id in ids})


def sent(harness: Harness, ids: list[str]) -> dict[str, int]:
    counts = harness.simz.received_counts()
    return {sf_id: counts[sf_id] for sf_id in ids if sf_id in counts}


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        yield h


class TestDiscardIsFinal:
    def test_an_unrelated_edit_does_not_revive_discarded_leads(self, harness: Harness) -> None:
        """30 held leads discarded, then their Company cleaned up: none is called."""
        harness.write_config(sync={"guard": {"max_new_per_poll": 2}})
        ids = harness.salesforce.add_records(lead_records(30))
        assert "HELD 30" in once(harness).stdout
        discard = syncd(harness, "discard", "--sync", "web", "--yes", "--reason", "bad import")
        assert discard.returncode == 0, discard.stderr
        assert states_of(harness, ids) == ["skipped"]

        edited = datetime.now(UTC) - timedelta(seconds=2)  # inside the next poll's window
        for sf_id in ids:
            harness.salesforce.update_record(
                "Lead", sf_id, {"Company": "Acme Inc."}, system_modstamp=edited
            )
        once(harness)
        assert states_of(harness, ids) == ["skipped"]
        assert sent(harness, ids) == {}
        trail = syncd(harness, "leads", "--id", ids[0], "--history")
        assert "stays discarded" in trail.stdout, trail.stdout

    def test_restore_rechecks_then_holds_and_release_sends_once(self, harness: Harness) -> None:
        """Only `syncd restore` brings a discarded lead back: re-fetched, re-checked, held."""
        harness.write_config(sync={"guard": {"max_new_per_poll": 2}})
        ids = harness.salesforce.add_records(lead_records(4))
        assert "HELD 4" in once(harness).stdout
        assert syncd(harness, "discard", "--sync", "web", "--yes").returncode == 0
        opted_out = datetime.now(UTC) - timedelta(seconds=1)
        harness.salesforce.update_record(
            "Lead", ids[0], {"DoNotCall": True}, system_modstamp=opted_out
        )
        refused = syncd(harness, "restore", "--sync", "web")  # no answer on stdin
        assert refused.returncode == 1 and states_of(harness, ids) == ["skipped"]

        restored = syncd(harness, "restore", "--sync", "web", "--yes", "--reason", "false alarm")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "3 held" in restored.stdout, restored.stdout
        states = harness.lead_states()
        assert states[ids[0]] == "skipped"  # DoNotCall now: the re-check keeps it back
        assert [states[sf_id] for sf_id in ids[1:]] == ["held"] * 3
        assert sent(harness, ids) == {}  # restoring dials nobody

        assert syncd(harness, "release", "--sync", "web", "--yes").returncode == 0
        once(harness)
        assert sent(harness, ids) == {sf_id: 1 for sf_id in ids[1:]}
        trail = syncd(harness, "leads", "--id", ids[1], "--history")
        assert "false alarm (by opuser)" in trail.stdout, trail.stdout


class TestTheGuardCountsEveryLead:
    def test_invalid_leads_made_callable_by_a_mass_update_are_held(self, harness: Harness) -> None:
        """Five leads without a phone, limit 2: a mass update adds phones; nothing is sent."""
        harness.write_config(sync={"guard": {"max_new_per_poll": 2}})
        ids = harness.salesforce.add_records(lead_records(5, Phone=None))
        once(harness)
        assert states_of(harness, ids) == ["invalid"]
        edited = datetime.now(UTC) - timedelta(seconds=1)  # after the first read, in the window
        for n, sf_id in enumerate(ids):
            harness.salesforce.update_record(
                "Lead", sf_id, {"Phone": f"+1 202 555 01{n:02d}"}, system_modstamp=edited
            )
        result = once(harness)
        assert states_of(harness, ids) == ["held"], result.stdout
        assert sent(harness, ids) == {}

    def test_a_mass_import_while_streaming_is_held(self, harness: Harness) -> None:
        """40 records created in one import with a limit of 25: all held, none sent."""
        harness.write_config(sync=stream_sync(guard={"max_new_per_poll": 25}))
        daemon = start_streaming(harness)
        ids = harness.salesforce.add_records(back_dated(40, 0))
        harness.wait_until(lambda: states_of(harness, ids) == ["held"], "the import held")
        assert daemon.find("stream intake held by the blast-radius guard") is not None
        status, body = daemon.get_json("/status.json")
        assert status == 503 and body["checks"]["held:web"] != "ok", body
        assert daemon.get("/readyz")[0] == 200  # held leads never make a replica unready
        assert daemon.stop() == 0, daemon.output()
        assert sent(harness, ids) == {}

    def test_the_stream_queues_within_its_window(self, harness: Harness) -> None:
        """Below the limit the stream sends as before: the guard counts, it does not stall."""
        harness.write_config(sync=stream_sync(guard={"max_new_per_poll": 25}))
        daemon = start_streaming(harness)
        ids = harness.salesforce.add_records(back_dated(10, 0))
        harness.wait_until(lambda: len(sent(harness, ids)) == 10, "the ten leads sent")
        more = harness.salesforce.add_records(back_dated(20, 10))  # 30 in the window
        harness.wait_until(lambda: states_of(harness, more) == ["held"], "the next import held")
        assert daemon.stop() == 0, daemon.output()
        assert sent(harness, more) == {}


class TestDeletionsStick:
    def test_gap_delete_stops_a_queued_lead(self, harness: Harness) -> None:
        """A record deleted by a clean-up job (GAP_DELETE) while its lead waits is never dialled."""
        harness.write_config(sync=stream_sync())
        daemon = start_streaming(harness)
        paused = syncd(harness, "pause", "--sync", "web", "--reason", "maintenance")
        assert paused.returncode == 0, paused.stderr
        [sf_id] = harness.salesforce.add_records(back_dated(1, 0))
        harness.wait_until(lambda: harness.lead_states().get(sf_id) == "queued", "queued")
        with harness.salesforce.store.lock:
            harness.salesforce.store.set_deleted("Lead", sf_id, True)  # no DELETE event
        harness.salesforce.publish_gap("Lead", [sf_id], "GAP_DELETE")
        harness.wait_until(lambda: harness.lead_states().get(sf_id) == "skipped", "skipped")
        resumed = syncd(harness, "resume", "--sync", "web", "--reason", "done")
        assert resumed.returncode == 0, resumed.stderr
        later = harness.salesforce.add_records(back_dated(1, 1))
        harness.wait_until(lambda: sent(harness, later), "a later lead sent")
        assert daemon.stop() == 0, daemon.output()
        assert sent(harness, [sf_id]) == {}
        [(deleted_at,)] = harness.query(
            "SELECT deleted_at FROM leads WHERE salesforce_id = ?", [sf_id]
        )
        assert deleted_at is not None

    def test_an_undeleted_record_is_evaluated_again_and_sent_once(self, harness: Harness) -> None:
        """DELETE then UNDELETE while delivery is paused: the lead comes back and is sent once."""
        harness.write_config(sync=stream_sync())
        daemon = start_streaming(harness)
        paused = syncd(harness, "pause", "--sync", "web", "--reason", "maintenance")
        assert paused.returncode == 0, paused.stderr
        [sf_id] = harness.salesforce.add_records(back_dated(1, 0))
        harness.wait_until(lambda: harness.lead_states().get(sf_id) == "queued", "queued")
        harness.salesforce.delete_record("Lead", sf_id)
        harness.wait_until(lambda: harness.lead_states().get(sf_id) == "skipped", "skipped")
        harness.salesforce.undelete_record("Lead", sf_id)
        harness.wait_until(lambda: harness.lead_states().get(sf_id) == "queued", "queued again")
        resumed = syncd(harness, "resume", "--sync", "web", "--reason", "done")
        assert resumed.returncode == 0, resumed.stderr
        harness.wait_until(lambda: sent(harness, [sf_id]), "the lead sent")
        assert daemon.stop() == 0, daemon.output()
        assert sent(harness, [sf_id]) == {sf_id: 1}
        [(deleted_at,)] = harness.query(
            "SELECT deleted_at FROM leads WHERE salesforce_id = ?", [sf_id]
        )
        assert deleted_at is None

    @pytest.mark.parametrize("change", ["DELETE", "GAP_DELETE"])
    def test_delete_while_claimed_ahead_then_503_is_never_sent(
        self, harness: Harness, change: str
    ) -> None:
        """A deletion while the lead is claimed ahead; its batch is answered 503 (nothing
        queued), the lead goes back to queued, and the send gate skips it: never dialled."""
        harness.write_config(sync=stream_sync(), simz={"batch_size": 1})
        daemon = start_streaming(harness)
        harness.simz.inject("delay", seconds=6)  # the first batch's answer waits ...
        harness.simz.inject("503")  # ... and the one claimed meanwhile is refused
        first, second = harness.salesforce.add_records(back_dated(2, 0))
        harness.wait_until(
            lambda: harness.lead_states().get(second) == "sending", "the second claimed ahead"
        )
        if change == "DELETE":  # stored while the lead is in flight
            harness.salesforce.delete_record("Lead", second)
        else:  # deleted outside the application server: Salesforce sends a gap
            with harness.salesforce.store.lock:
                harness.salesforce.store.set_deleted("Lead", second, True)
            harness.salesforce.publish_gap("Lead", [second], "GAP_DELETE")
        harness.wait_until(
            lambda: harness.lead_states().get(second) in ("skipped", "accepted"),
            "the second lead settled",
        )
        assert daemon.stop() == 0, daemon.output()
        assert sent(harness, [first]) == {first: 1}
        assert sent(harness, [second]) == {}
        assert harness.lead_states()[second] == "skipped"
        trail = syncd(harness, "leads", "--id", second, "--history")
        # The deletion was stored while the lead was sending; the gate skipped it later.
        assert "stored, never sent while sending" in trail.stdout, trail.stdout
        assert "send gate: record deleted in Salesforce" in trail.stdout, trail.stdout
