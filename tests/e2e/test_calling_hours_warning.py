"""``syncd check-config`` and ``syncd run`` warn about US numbers without calling hours.

The real CLI in a subprocess. The warning is one line on stderr that says what
to add; it does not change the exit status, and a sync with calling hours (or
one that cannot send US numbers) draws none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, run_syncd

HOURS = {"window": "08:00-21:00", "timezone": "from_phone"}
ADD = "add calling_hours: {profile: us, timezone: from_phone}"


def config_file(folder: Path, **sync: Any) -> Path:
    """A valid configuration of one sync (``web``), its keys replaced by ``sync``."""
    config = {
        "database": {"url": "sqlite:///./syncd.db"},
        "salesforce": {
            "auth": {"method": "password", "username": "u@example.com", "password": "pw"},
            "domain": "login",
        },
        "simz": {"base_url": "https://api.simz.com", "api_key": "key"},
        "syncs": [{"name": "web", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}, **sync}],
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    return path


def check(folder: Path, **sync: Any) -> tuple[int, str, str]:
    result = run_syncd("check-config", config=config_file(folder, **sync), cwd=folder)
    return result.returncode, result.stdout, result.stderr


class TestCheckConfig:
    def test_us_sync_without_calling_hours_is_warned_about(self, tmp_path: Path) -> None:
        code, stdout, stderr = check(tmp_path, phone={"default_region": "US"})
        assert code == 0, stderr
        assert stdout.splitlines()[0].endswith("config.yaml: ok, 1 sync(s)")
        [line] = stderr.splitlines()
        assert line.startswith("warning: sync web sends US numbers (phone.default_region: US)")
        assert ADD in line

    def test_a_route_to_us_agents_is_warned_about(self, tmp_path: Path) -> None:
        route = {"field": "Country", "values": {"US": "agt_us", "GB": "agt_uk"}}
        code, _, stderr = check(tmp_path, agent=None, route=route, phone={"default_region": "GB"})
        assert code == 0, stderr
        [line] = stderr.splitlines()
        assert "(route.values: US -> agt_us)" in line and ADD in line

    def test_no_warning_with_calling_hours(self, tmp_path: Path) -> None:
        code, _, stderr = check(tmp_path, phone={"default_region": "US"}, calling_hours=HOURS)
        assert (code, stderr) == (0, "")

    def test_no_warning_for_other_regions(self, tmp_path: Path) -> None:
        code, _, stderr = check(tmp_path, phone={"default_region": "GB"})
        assert (code, stderr) == (0, "")


class TestStartUpLog:
    def test_run_logs_the_warning_at_start(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        with Harness(tmp_path, simz_emulator) as harness:
            daemon = harness.start()
            line = daemon.wait_log("configuration warning", sync="web")
            assert line["level"] == "warning"
            assert line["warning"].startswith("sync web sends US numbers")
            assert ADD in line["warning"]
            assert daemon.stop() == 0

    def test_run_with_calling_hours_logs_none(
        self, tmp_path: Path, simz_emulator: SimzEmulator
    ) -> None:
        with Harness(tmp_path, simz_emulator) as harness:
            harness.write_config(sync={"calling_hours": HOURS})
            daemon = harness.start()
            assert daemon.stop() == 0
            assert daemon.find("configuration warning") is None
