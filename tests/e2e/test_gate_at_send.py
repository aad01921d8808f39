"""The send gate through the real CLI: what changed between a lead's intake and its send.

A lead is queued while its sync is paused (``syncd pause``); before ``syncd
resume`` its number is opted out by a Contact a suppression source reads, or
its consent lapses. The next ``syncd once`` must skip it at the gate, not send
it: its intake was clean, so only the gate can stop it. SimZ records every lead
it received, so "never sent" is checked at the receiving end.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, clean_env, lead_records

CONTACTS_DNC = {
    "name": "contacts-dnc",
    "object": "Contact",
    "where": "DoNotCall = true",
    "phone_fields": ["Phone", "MobilePhone"],
    "every": "1s",
}
#: Monday 2026-03-02 15:00Z (10:00 in Washington): the clock of the consent test's intake.
INTAKE = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        yield h


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def once_at(harness: Harness, moment: datetime) -> str:
    """``syncd once`` on the sandbox clock started at ``moment``."""
    now = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return ok(harness.cli("once", env=clean_env(SYNCD_TEST_NOW=now)))


def paused(harness: Harness) -> None:
    ok(harness.cli("migrate"))
    ok(harness.cli("pause", "--sync", "web", "--reason", "campaign change"))


def gate_skip(harness: Harness, salesforce_id: str) -> tuple[str, str]:
    """The lead's note and the reason of its last transition, which must be queued -> skipped."""
    [(lead_id, note)] = harness.query(
        "SELECT id, note FROM leads WHERE salesforce_id = ?", [salesforce_id]
    )
    [(from_state, to_state, reason)] = harness.query(
        "SELECT from_state, to_state, reason FROM lead_transitions WHERE lead_id = ? "
        "ORDER BY id DESC LIMIT 1",
        [lead_id],
    )
    assert (from_state, to_state) == ("queued", "skipped")
    return note, reason


class TestSuppressedWhileQueued:
    def test_a_contacts_opt_out_stops_a_queued_lead_at_the_gate(self, harness: Harness) -> None:
        harness.write_config(suppression={"sources": [CONTACTS_DNC]})
        paused(harness)
        [lead, other] = harness.salesforce.add_records(
            lead_records(1, Phone="(202) 555-0177") + lead_records(1, start=1)
        )
        first = ok(harness.cli("once"))
        assert "suppression source contacts-dnc: ok: 0 record(s)" in first
        assert "; paused" in first
        assert harness.lead_states() == {lead: "queued", other: "queued"}

        stamp = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()  # older than the lag
        [contact] = harness.salesforce.add_records(
            [
                {
                    "sobject": "Contact",
                    "LastName": "Opted",
                    "MobilePhone": "+1 202 555 0177",
                    "DoNotCall": True,
                    "SystemModstamp": stamp,
                }
            ]
        )
        ok(harness.cli("resume", "--sync", "web"))
        second = ok(harness.cli("once"))
        assert "suppression source contacts-dnc: ok: 1 record(s), 1 number(s) added" in second
        assert "unchanged 2" in second  # intake read both again and changed neither

        assert harness.lead_states() == {lead: "skipped", other: "accepted"}
        assert [r["salesforceId"] for r in harness.simz.received()] == [other]
        note, reason = gate_skip(harness, lead)
        assert note == reason
        assert note == (
            "send gate: number is on the suppression list (query: returned by suppression "
            "source contacts-dnc: Contact where DoNotCall = true)"
        )
        assert harness.query("SELECT phone_e164, source, record_id FROM suppressions") == [
            ("+12025550177", "query", contact)
        ]
        assert harness.query(
            "SELECT l.salesforce_id FROM dial_decisions d JOIN leads l ON l.id = d.lead_id"
        ) == [(other,)]


class TestConsentLapsedWhileQueued:
    def test_consent_valid_at_intake_lapsed_at_the_send(self, harness: Harness) -> None:
        """Consent 29 days old at intake, 31 at the send, with a 30-day limit."""
        harness.salesforce.declare_field("Lead.ConsentDate__c:datetime")
        consent = {"field": "ConsentDate__c", "kind": "datetime", "max_age": "30d"}
        harness.write_config(sync={"rules": {"duplicate_phone_window": "0s", "consent": consent}})
        paused(harness)
        modstamp = {"SystemModstamp": (INTAKE - timedelta(hours=1)).isoformat()}
        [lapsing] = harness.salesforce.add_records(
            lead_records(1, ConsentDate__c=(INTAKE - timedelta(days=29)).isoformat(), **modstamp)
        )
        [recent] = harness.salesforce.add_records(
            lead_records(
                1, start=1, ConsentDate__c=(INTAKE - timedelta(days=1)).isoformat(), **modstamp
            )
        )
        first = once_at(harness, INTAKE)
        assert "new 2, updated 0, unchanged 0, invalid 0, skipped 0" in first
        assert harness.lead_states() == {lapsing: "queued", recent: "queued"}

        ok(harness.cli("resume", "--sync", "web"))
        once_at(harness, INTAKE + timedelta(days=2))
        assert harness.lead_states() == {lapsing: "skipped", recent: "accepted"}
        assert [r["salesforceId"] for r in harness.simz.received()] == [recent]
        note, reason = gate_skip(harness, lapsing)
        assert note == reason
        assert note.startswith("send gate: consent lapsed: ConsentDate__c = 2026-02-01T15:00:00")
        assert note.endswith(" is older than 30d")
