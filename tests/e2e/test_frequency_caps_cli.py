"""End-to-end: Florida's three calls per 24 hours through the real CLI and both emulators.

``calling_hours.profile: us`` hands a Florida number's cap (Fla. Stat. §
501.616(6), ``max_per_24h: 3`` in the shipped data) to the send gate. Four
records with one Miami number, the duplicate-phone window off: on a Tuesday
afternoon in Miami (``SYNCD_TEST_NOW``) ``syncd once`` sends three; the fourth
waits queued, without an attempt, and goes once the clock has passed 24 hours
after the first send.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, clean_env

#: Tuesday 2026-12-08 19:00Z: 14:00 in Miami (EST).
TUESDAY = datetime(2026, 12, 8, 19, 0, tzinfo=UTC)
PHONES = ["+1 305 555 0142", "(305) 555-0142", "305.555.0142", "+13055550142"]


def once_at(harness: Harness, moment: datetime) -> str:
    now = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    result: subprocess.CompletedProcess[str] = harness.cli(
        "once", env=clean_env(SYNCD_TEST_NOW=now)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def parse(stamp: str) -> datetime:
    """A SQLite datetime column as written by SQLAlchemy (naive UTC)."""
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC)


class TestFloridaCap:
    def test_the_fourth_send_in_24h_waits_for_the_first_to_age_out(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        with Harness(tmp_path, simz_emulator) as harness:
            harness.write_config(sync={"calling_hours": {"profile": "us"}})
            ids = harness.salesforce.add_records(
                {
                    "sobject": "Lead",
                    "FirstName": f"Ada{n}",
                    "LastName": "Tester",
                    "Phone": phone,
                    "Company": "Acme",
                    "SystemModstamp": (TUESDAY - timedelta(hours=1, seconds=-n)).isoformat(),
                }
                for n, phone in enumerate(PHONES)
            )
            once_at(harness, TUESDAY)
            assert simz_emulator.received_counts() == {sf_id: 1 for sf_id in ids[:3]}
            assert {r["lead"]["phoneNumber"] for r in simz_emulator.received()} == {"+13055550142"}
            [(first_send,)] = harness.query("SELECT min(sent_at) FROM leads")
            reopens = parse(first_send) + timedelta(hours=24)
            [(lead_id, sf_id, attempts, due)] = harness.query(
                "SELECT id, salesforce_id, attempts, next_attempt_at FROM leads "
                "WHERE state = 'queued'"
            )
            assert (sf_id, attempts, parse(due)) == (ids[3], 0, reopens)
            assert harness.query(
                "SELECT from_state, to_state, reason FROM lead_transitions WHERE lead_id = ?",
                [lead_id],
            )[-1] == (
                "queued",
                "queued",
                "send gate: frequency cap 3 per 1d (state FL) reached (3 sends); "
                f"due again at {reopens.isoformat()}",
            )
            decided = harness.query("SELECT inputs FROM dial_decisions ORDER BY lead_id")
            assert [json.loads(inputs)["frequency"] for (inputs,) in decided] == [
                [{"cap": "3 per 1d (state FL)", "count": 3, "per_seconds": 86400, "sent": sent}]
                for sent in range(3)
            ]

            once_at(harness, reopens - timedelta(minutes=1))
            assert len(simz_emulator.received()) == 3
            once_at(harness, reopens + timedelta(minutes=1))
            assert simz_emulator.received_counts() == {sf_id: 1 for sf_id in ids}
            assert set(harness.lead_states().values()) == {"accepted"}
