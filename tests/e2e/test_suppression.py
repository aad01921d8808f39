"""The suppression list end to end: ``syncd suppress``, a suppression source, DoNotCall propagation.

Real subprocesses (the CLI and ``syncd run``/``once``) on one SQLite file, both
emulators in the test process. SimZ records every lead it received, so "never
sent" is checked at the receiving end.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, lead_records

NUMBER = "+12025550177"


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        yield h


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def entries(harness: Harness) -> dict[str, dict[str, str | None]]:
    listed = json.loads(ok(harness.cli("suppress", "list", "--json")))
    return {entry["phone"]: entry for entry in listed["entries"]}


def stamp(ago: timedelta = timedelta(seconds=2)) -> str:
    return (datetime.now(UTC) - ago).isoformat()


class TestOperatorCommands:
    def test_add_list_remove_import_export(self, harness: Harness, tmp_path: Path) -> None:
        ok(harness.cli("migrate"))
        out = ok(harness.cli("suppress", "add", "(202) 555-0177", "--reason", "asked, T-1"))
        assert out.startswith(f"suppressed: {NUMBER} (operator) added by opuser at ")
        again = ok(harness.cli("suppress", "add", "+1 202 555 0177", "--reason", "twice"))
        assert again.startswith("already on the list, left as it was: ")
        assert "reason: asked, T-1" in again

        bad = harness.cli("suppress", "add", "12", "--reason", "x")
        assert bad.returncode == 2 and "'12' is not a valid phone number" in bad.stderr

        scrub = tmp_path / "dnc.csv"
        scrub.write_text("Name,PhoneNumber\nA,2025550178\nB,not a number\nC,202.555.0177\nD,\n")
        imported = ok(
            harness.cli(
                "suppress", "import", str(scrub), "--column", "phonenumber", "--reason", "FTC scrub"
            )
        )
        assert "4 row(s), 1 added, 1 already listed, 2 unreadable" in imported
        assert "line 3: not a phone number: not a number" in imported
        assert "line 5: not a phone number: (empty)" in imported
        missing = harness.cli("suppress", "import", str(scrub), "--reason", "x")
        assert missing.returncode == 2 and "has no 'phone' column" in missing.stderr

        listed = entries(harness)
        assert set(listed) == {NUMBER, "+12025550178"}
        assert listed["+12025550178"]["source"] == "import"
        assert listed[NUMBER]["added_by"] == "opuser"

        exported = list(csv.DictReader(io.StringIO(ok(harness.cli("suppress", "export")))))
        assert [row["phone"] for row in exported] == [NUMBER, "+12025550178"]
        as_json = json.loads(ok(harness.cli("suppress", "export", "--format", "json")))
        assert [row["source"] for row in as_json] == ["operator", "import"]

        refused = harness.cli("suppress", "remove", NUMBER, "--reason", "wrong number")
        assert refused.returncode == 1 and "no confirmation on stdin" in refused.stderr
        assert NUMBER in entries(harness)
        ok(harness.cli("suppress", "remove", NUMBER, "--reason", "wrong number", "--yes"))
        assert set(entries(harness)) == {"+12025550178"}
        gone = ok(harness.cli("suppress", "remove", NUMBER, "--reason", "again", "--yes"))
        assert "is not on the suppression list; nothing to do" in gone

        audit = harness.query("SELECT action, scope, name, actor, reason FROM operator_actions")
        assert ("suppress", "number", NUMBER, "opuser", "asked, T-1") in audit
        assert ("unsuppress", "number", NUMBER, "opuser", "wrong number") in audit
        assert ("suppress_import", "number", "dnc.csv", "opuser", "FTC scrub") in audit


class TestTheDaemon:
    def test_a_suppression_source_stops_a_lead_with_the_same_number(self, harness: Harness) -> None:
        """A Contact with DoNotCall read by a source suppresses a Lead of that number."""
        harness.write_config(
            suppression={
                "sources": [
                    {
                        "name": "contacts-dnc",
                        "object": "Contact",
                        "where": "DoNotCall = true",
                        "phone_fields": ["Phone", "MobilePhone"],
                        "every": "1s",
                    }
                ]
            }
        )
        [contact] = harness.salesforce.add_records(
            [
                {
                    "sobject": "Contact",
                    "LastName": "Opted",
                    "MobilePhone": "(202) 555-0177",
                    "DoNotCall": True,
                    "SystemModstamp": stamp(),
                }
            ]
        )
        daemon = harness.start()
        daemon.wait_log("suppression source read", source="contacts-dnc", added=1)
        [lead, other] = harness.salesforce.add_records(
            lead_records(1, Phone="202 555 0177") + lead_records(1, start=1)
        )
        harness.wait_until(lambda: harness.lead_states().get(lead) == "skipped", "lead skipped")
        harness.wait_until(lambda: len(harness.simz.received()) == 1, "the other lead sent")
        # A later opt-out is measured (the first read loaded history and is not).
        harness.salesforce.add_records(
            [
                {
                    "sobject": "Contact",
                    "LastName": "Later",
                    "Phone": "202 555 0179",
                    "DoNotCall": True,
                    "SystemModstamp": stamp(),
                }
            ]
        )
        measured = 'syncd_suppression_lag_seconds_count{source="contacts-dnc"} 1.0'
        harness.wait_until(lambda: measured in daemon.get("/metrics")[1], "the lag measured")
        assert (
            'syncd_suppression_late_total{source="contacts-dnc"} 0.0' in (daemon.get("/metrics")[1])
        )
        assert daemon.stop() == 0
        [(note,)] = harness.query("SELECT note FROM leads WHERE salesforce_id = ?", [lead])
        assert note.startswith("number is on the suppression list (query: returned by ")
        assert [r["salesforceId"] for r in harness.simz.received()] == [other]
        found = harness.query("SELECT phone_e164, source, record_id FROM suppressions")
        assert ("+12025550177", "query", contact) in found
        assert len(found) == 2

    def test_do_not_call_on_one_sync_stops_another_syncs_lead(self, harness: Harness) -> None:
        """A Lead with DoNotCall read by one sync suppresses the number for every sync."""
        web = {"name": "web", "where": "LeadSource = 'Web'"}
        partner = {
            **harness.config()["syncs"][0],
            "name": "partner",
            "where": "LeadSource = 'Partner'",
        }
        harness.write_config(sync=web, syncs=[{**harness.config()["syncs"][0], **web}, partner])
        [opted] = harness.salesforce.add_records(
            lead_records(1, Phone="202 555 0177", LeadSource="Web", DoNotCall=True)
        )
        [same] = harness.salesforce.add_records(
            lead_records(1, start=1, Phone="+12025550177", LeadSource="Partner")
        )
        out = ok(harness.cli("once"))
        assert "sync partner: poll ok" in out
        states = harness.lead_states()
        assert states == {opted: "skipped", same: "skipped"}
        [(note,)] = harness.query("SELECT note FROM leads WHERE salesforce_id = ?", [same])
        assert note == (
            "number is on the suppression list (do_not_call: DoNotCall is set on record "
            f"{opted} of sync web)"
        )
        assert harness.simz.received() == []
        [entry] = harness.query("SELECT source, record_id, sync_name FROM suppressions")
        assert entry == ("do_not_call", opted, "web")
