"""End-to-end: calling_hours.profile: us through the real CLI and both emulators.

On a Sunday afternoon in Alabama (``SYNCD_TEST_NOW``), ``syncd once`` polls an
Alabama number, a Florida number whose record's address is in Alabama, and a
Washington DC number: only the DC lead reaches SimZ; the other two wait, queued
and without an attempt, for Monday 08:00 in their zones and are sent then.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, clean_env

#: Sunday 2026-12-06: 12:00 in Birmingham (CST), 13:00 in Miami and Washington (EST).
SUNDAY = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
#: Monday 2026-12-07 08:30 in Birmingham: past 08:00 in Miami too.
MONDAY = datetime(2026, 12, 7, 14, 30, tzinfo=UTC)
HOURS = {"profile": "us", "timezone": "from_phone", "state_field": "State"}


def at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def syncd(harness: Harness, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = harness.cli(*args, env=clean_env(**env))
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def record(n: int, phone: str, state: str | None) -> dict[str, object]:
    return {
        "sobject": "Lead",
        "FirstName": f"Ada{n}",
        "LastName": "Tester",
        "Phone": phone,
        "Company": "Acme",
        "State": state,
        "SystemModstamp": (SUNDAY - timedelta(hours=1)).isoformat(),
    }


class TestUsProfile:
    def test_a_sunday_alabama_lead_waits_for_monday(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        with Harness(tmp_path, simz_emulator) as harness:
            harness.write_config(sync={"calling_hours": HOURS})
            checked = syncd(harness, "check-config")
            assert checked.returncode == 0, checked.stderr
            assert "calling hours us: federal 08:00-21:00" in checked.stdout
            assert "data compiled 2026-12-07" in checked.stdout

            alabama, florida, dc = harness.salesforce.add_records(
                [
                    record(1, "+1 205 555 0101", None),
                    record(2, "+1 305 555 0102", "Alabama"),
                    record(3, "+1 202 555 0103", "DC"),
                ]
            )
            sunday = syncd(harness, "once", SYNCD_TEST_NOW=at(SUNDAY))
            assert sunday.returncode == 0, sunday.stderr
            assert simz_emulator.received_counts() == {dc: 1}
            waiting = harness.query(
                "SELECT salesforce_id, attempts, next_attempt_at, waiting_for, region "
                "FROM leads WHERE state = 'queued' ORDER BY salesforce_id"
            )
            assert sorted(waiting) == sorted(
                [
                    (alabama, 0, "2026-12-07 14:00:00.000000", "calling_hours", None),
                    (florida, 0, "2026-12-07 13:00:00.000000", "calling_hours", "Alabama"),
                ]
            )
            listed = syncd(harness, "leads")
            assert listed.stdout.count("waiting for calling hours") == 2

            monday = syncd(harness, "once", SYNCD_TEST_NOW=at(MONDAY))
            assert monday.returncode == 0, monday.stderr
            assert simz_emulator.received_counts() == {alabama: 1, florida: 1, dc: 1}
            assert set(harness.lead_states().values()) == {"accepted"}
