"""``syncd run`` against a hostile or broken world: debug logs, refused logins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, run_syncd

FIRST, LAST, EMAIL = "Zelphira", "Quenneville", "zelphira.q@example.org"
PHONE_E164, PHONE_LOCAL = "+12025550142", "202 555 0142"


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        yield h


def poll_errors(harness: Harness) -> int:
    try:
        return int(harness.query("SELECT COUNT(*) FROM poll_runs WHERE status = 'error'")[0][0])
    except Exception:
        return 0


class TestDebugLogs:
    def test_no_personal_data_at_debug(self, harness: Harness) -> None:
        """At log_level debug a lead's phone, names and email appear in no log line."""
        config = harness.config(
            sync={
                "mapping": {
                    "phoneNumber": "Phone",
                    "firstName": "FirstName",
                    "lastName": "LastName",
                    "email": "Email",
                }
            }
        )
        config["observability"]["log_level"] = "debug"
        harness.write_config(**config)
        harness.salesforce.add_records(
            [
                {
                    "sobject": "Lead",
                    "FirstName": FIRST,
                    "LastName": LAST,
                    "Email": EMAIL,
                    "Phone": f"+1 {PHONE_LOCAL}",
                    "Company": "Acme",
                }
            ]
        )
        daemon = harness.start()
        harness.wait_until(lambda: harness.count_state("accepted") == 1, "the lead accepted")
        polls = harness.successful_polls()
        harness.wait_until(lambda: harness.successful_polls() >= polls + 2, "two more polls")
        assert daemon.stop() == 0
        output = daemon.output()
        assert '"level": "debug"' in output  # debug lines were written
        for value in (FIRST, LAST, EMAIL, PHONE_E164, PHONE_LOCAL, "2025550142"):
            assert value not in output, value


class TestLoginBackoff:
    def test_wrong_password_is_tried_once_and_shown(self, harness: Harness) -> None:
        """Polls every second with a wrong password: one login, shown by /status.json and status."""
        config = harness.config()
        config["salesforce"]["auth"]["password"] = "not-the-password"
        path = harness.write_config(**config)
        daemon = harness.start()
        harness.wait_until(lambda: poll_errors(harness) >= 4, "four failed polls")
        assert harness.salesforce.login_attempts() == 1
        status, body = daemon.get_json("/status.json")
        assert status == 503
        reasons = {item["check"]: item["reason"] for item in body["failing"]}
        assert "INVALID_LOGIN" in reasons["salesforce_login"]
        assert "held back until" in reasons["salesforce_login"]
        shown = run_syncd("status", cwd=harness.tmp, config=path, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "held back until" in shown.stdout
        assert daemon.stop() == 0
        assert harness.salesforce.login_attempts() == 1
