"""Write-back end to end: ``syncd run`` writes each lead's SimZ outcome to its record.

The real CLI in a subprocess, HTTPS to the Salesforce emulator (with the
write-back fields declared as custom fields), HTTP to the SimZ emulator, a
SQLite file. Faults come from the emulators: SimZ answers that make leads
rejected or uncertain, Salesforce outages, a deleted record, kill -9.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncd.domain.soql import parse_datetime
from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, lead_records

FIELDS = {
    "status": "SimZ_Status__c",
    "batch_id": "SimZ_Batch_Id__c",
    "sent_at": "SimZ_Sent_At__c",
    "error": "SimZ_Error__c",
}
CUSTOM_FIELDS = (
    "Lead.SimZ_Status__c:picklist:40",
    "Lead.SimZ_Batch_Id__c:string:64",
    "Lead.SimZ_Sent_At__c:datetime",
    "Lead.SimZ_Error__c:string:60",
)


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        for spec in CUSTOM_FIELDS:
            h.salesforce.declare_field(spec)
        h.write_config(sync={"writeback": {"fields": FIELDS}})
        yield h


def writeback_rows(harness: Harness) -> dict[str, tuple[str, str, str | None]]:
    """Salesforce Id -> (state written, status, last error)."""
    rows = harness.query(
        "SELECT l.salesforce_id, w.state, w.status, w.last_error "
        "FROM writebacks w JOIN leads l ON l.id = w.lead_id"
    )
    return {sf: (state, status, error) for sf, state, status, error in rows}


def statuses(harness: Harness) -> list[str]:
    return sorted(status for _s, status, _e in writeback_rows(harness).values())


def field(harness: Harness, sf_id: str, name: str) -> object:
    record = harness.salesforce.get_record("Lead", sf_id)
    assert record is not None
    return record.get(name)


class TestOutcomes:
    def test_accepted_rejected_and_uncertain_land_on_the_records(self, harness: Harness) -> None:
        """Each record gets its lead's state, SimZ batchId, sent time and error."""
        answer = {
            "success": True,
            "batchId": "batch_e2e_1",
            "accepted": 1,
            "rejected": 1,
            "errors": [{"index": 1, "code": "DUPLICATE_LEAD", "message": "already in a campaign"}],
        }
        harness.simz.inject("custom_200", body=json.dumps(answer))
        first = harness.salesforce.add_records(lead_records(2))
        daemon = harness.start()
        harness.wait_until(lambda: harness.count_state("rejected") == 1, "one lead rejected")
        harness.simz.inject("500")  # processed, then a 500: the lead is uncertain
        [third] = harness.salesforce.add_records(lead_records(1, start=2))
        harness.wait_until(lambda: harness.count_state("uncertain") == 1, "one lead uncertain")
        harness.wait_until(lambda: statuses(harness) == ["done"] * 3, "three write-backs done")

        accepted, rejected = first
        assert field(harness, accepted, "SimZ_Status__c") == "accepted"
        assert field(harness, accepted, "SimZ_Batch_Id__c") == "batch_e2e_1"
        assert str(field(harness, accepted, "SimZ_Sent_At__c")).startswith("20")
        assert field(harness, accepted, "SimZ_Error__c") is None
        assert field(harness, rejected, "SimZ_Status__c") == "rejected"
        assert field(harness, rejected, "SimZ_Error__c") == "DUPLICATE_LEAD: already in a campaign"
        assert field(harness, third, "SimZ_Status__c") == "uncertain"
        assert daemon.stop() == 0, daemon.output()

    def test_write_backs_cause_no_resend_and_no_re_evaluation(self, harness: Harness) -> None:
        """Polls that read the written records again count them unchanged, for several polls."""
        ids = harness.salesforce.add_records(lead_records(5))
        daemon = harness.start()
        harness.wait_until(lambda: statuses(harness) == ["done"] * 5, "five write-backs done")
        stamps = {sf: field(harness, sf, "SystemModstamp") for sf in ids}
        [(last_run,)] = harness.query("SELECT MAX(id) FROM poll_runs")
        [(transitions,)] = harness.query("SELECT COUNT(*) FROM lead_transitions")
        harness.wait_until(
            lambda: (
                harness.query(
                    "SELECT COUNT(*) FROM poll_runs WHERE status = 'ok' AND id > ?", [last_run]
                )[0][0]
                >= 4
            ),
            "four more polls",
        )
        assert daemon.stop() == 0, daemon.output()

        [(fetched, updated, new)] = harness.query(
            "SELECT SUM(fetched), SUM(updated), SUM(new) FROM poll_runs WHERE id > ?", [last_run]
        )
        assert fetched >= 5  # the written records were read again
        # The polls read past the write-backs' SystemModstamps: they saw the changed records.
        [(watermark,)] = harness.query("SELECT watermark FROM sync_state")
        read_up_to = datetime.fromisoformat(watermark).replace(tzinfo=UTC)
        assert read_up_to >= max(parse_datetime(str(stamp)) for stamp in stamps.values())
        assert (updated, new) == (0, 0)
        assert harness.query("SELECT COUNT(*) FROM lead_transitions") == [(transitions,)]
        assert set(harness.simz.received_counts().values()) == {1}
        assert statuses(harness) == ["done"] * 5  # nothing was queued to be written again
        assert all(field(harness, sf, "SystemModstamp") == stamps[sf] for sf in ids)


class TestFailures:
    def test_an_outage_loses_nothing_and_the_rows_go_out_when_salesforce_is_back(
        self, harness: Harness
    ) -> None:
        harness.salesforce.inject("503", count=100_000, only="/composite")
        ids = harness.salesforce.add_records(lead_records(4))
        daemon = harness.start()
        harness.wait_until(lambda: harness.count_state("accepted") == 4, "four leads accepted")
        harness.wait_until(
            lambda: (
                harness.query("SELECT COUNT(*) FROM writeback_attempts WHERE outcome = 'retry'")[0][
                    0
                ]
                >= 4
            ),
            "a failed write-back call",
        )
        # Now Salesforce is down altogether: polls fail too.
        harness.salesforce.inject("503", count=100_000)
        harness.wait_until(
            lambda: harness.query("SELECT COUNT(*) FROM poll_runs WHERE status = 'error'")[0][0],
            "a failed poll",
        )
        assert statuses(harness) == ["pending"] * 4
        harness.salesforce.clear_faults()
        harness.wait_until(lambda: statuses(harness) == ["done"] * 4, "four write-backs done")
        assert all(field(harness, sf, "SimZ_Status__c") == "accepted" for sf in ids)
        assert daemon.stop() == 0, daemon.output()

    def test_a_deleted_record_is_a_failed_write_back_with_its_error(self, harness: Harness) -> None:
        """No crash: the row fails with ENTITY_IS_DELETED; status, history and retry show it."""
        harness.salesforce.inject("503", count=100_000, only="/composite")
        gone, kept = harness.salesforce.add_records(lead_records(2))
        daemon = harness.start()
        harness.wait_until(lambda: harness.count_state("accepted") == 2, "two leads accepted")
        harness.wait_until(
            lambda: harness.query("SELECT COUNT(*) FROM writeback_attempts")[0][0] >= 2,
            "a failed write-back call",
        )
        harness.salesforce.delete_record("Lead", gone)
        harness.salesforce.clear_faults()
        harness.wait_until(lambda: statuses(harness) == ["done", "failed"], "one done, one failed")
        error = writeback_rows(harness)[gone][2]
        assert error is not None and error.startswith("ENTITY_IS_DELETED"), error
        assert daemon.process.poll() is None

        status = harness.cli("status")
        assert status.returncode == 0, status.stderr
        assert "write-back     pending 0, failed 1, done 1" in status.stdout
        history = harness.cli("leads", "--id", gone, "--history")
        assert history.returncode == 0, history.stderr
        assert "write-back: failed (accepted, " in history.stdout
        assert "write-back accepted: failed  ENTITY_IS_DELETED" in history.stdout
        assert "write-back accepted: retry  SalesforceUnavailable" in history.stdout

        retry = harness.cli("writeback", "retry", "--sync", "web", "--yes")
        assert retry.returncode == 0, retry.stderr
        assert "retried 1 write-back(s) of sync web" in retry.stdout
        harness.wait_until(
            lambda: (
                harness.query(
                    "SELECT COUNT(*) FROM writeback_attempts a JOIN leads l ON l.id = a.lead_id "
                    "WHERE l.salesforce_id = ? AND a.outcome = 'failed'",
                    [gone],
                )[0][0]
                == 2
            ),
            "the retried write-back to fail again",
        )
        assert field(harness, kept, "SimZ_Status__c") == "accepted"
        assert daemon.stop() == 0, daemon.output()

    def test_kill_9_during_a_write_back_batch_loses_nothing(self, harness: Harness) -> None:
        """The rows stay pending until their answer is committed; the next run sends them."""
        harness.salesforce.inject("delay", count=1, only="/composite", seconds=6)
        ids = harness.salesforce.add_records(lead_records(6))
        daemon = harness.start()
        harness.wait_until(lambda: harness.count_state("accepted") == 6, "six leads accepted")
        harness.wait_until(
            lambda: not harness.salesforce.pending_faults(), "the write-back call in flight"
        )
        daemon.send(signal.SIGKILL)
        daemon.wait()
        assert statuses(harness) == ["pending"] * 6
        assert harness.query("SELECT COUNT(*) FROM writeback_attempts") == [(0,)]

        again = harness.start()
        harness.wait_until(lambda: statuses(harness) == ["done"] * 6, "six write-backs done")
        assert all(field(harness, sf, "SimZ_Status__c") == "accepted" for sf in ids)
        assert set(harness.simz.received_counts().values()) == {1}
        assert again.stop() == 0, again.output()


class TestOnce:
    def test_once_writes_the_outcomes_back(self, harness: Harness) -> None:
        ids = harness.salesforce.add_records(lead_records(3))
        result = harness.cli("once")
        assert result.returncode == 0, result.stderr
        assert "sync web: write-back: 1 call(s), done 3, to retry 0, failed 0" in result.stdout
        assert all(field(harness, sf, "SimZ_Status__c") == "accepted" for sf in ids)


class TestCheckConnect:
    def test_good_fields_pass(self, harness: Harness) -> None:
        """One login serves the poll queries and the describe."""
        before = harness.salesforce.login_attempts()
        result = harness.cli("check-config", "--connect")
        assert result.returncode == 0, result.stderr
        assert "writeback: ok (sync web: Lead SimZ_Status__c" in result.stdout
        assert harness.salesforce.login_attempts() == before + 1

    def test_a_refused_login_is_not_tried_again_for_the_fields(self, harness: Harness) -> None:
        config = harness.config(sync={"writeback": {"fields": FIELDS}})
        config["salesforce"]["auth"]["password"] = "not-the-password"
        harness.write_config(**config)
        before = harness.salesforce.login_attempts()
        result = harness.cli("check-config", "--connect")
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "writeback: not checked: the Salesforce login failed" in result.stderr
        assert harness.salesforce.login_attempts() == before + 1

    def test_a_bad_field_name_is_refused(self, harness: Harness) -> None:
        harness.salesforce.declare_field("Lead.SimZ_Readonly__c:string:255:readonly")
        bad = {**FIELDS, "status": "SimZ_Statu__c", "error": "SimZ_Readonly__c"}
        harness.write_config(sync={"writeback": {"fields": bad}})
        result = harness.cli("check-config", "--connect")
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        failed = [line for line in result.stderr.splitlines() if line.startswith("writeback:")]
        assert failed == [
            "writeback: FAILED: sync web: writeback.fields.status: "
            "Lead.SimZ_Statu__c does not exist",
            "writeback: FAILED: sync web: writeback.fields.error: "
            "Lead.SimZ_Readonly__c is not updateable by the integration user",
        ]
