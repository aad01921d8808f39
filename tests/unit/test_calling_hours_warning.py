"""Warn about a sync that can send US numbers without calling hours (the TCPA's window).

Not an error: another dialer may enforce the hours. The shipped configurations
(config.example.yaml, the Kubernetes ConfigMaps) set the window, so they draw no
warning; the Docker Compose sandbox says "around the clock" explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.config import SyncConfig

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [
    REPO / "config.example.yaml",
    REPO / "deploy" / "kubernetes" / "base" / "config.yaml",
    REPO / "deploy" / "kubernetes" / "overlays" / "postgresql" / "config.yaml",
]
HOURS = {"window": "08:00-21:00", "timezone": "from_phone"}


def warnings_of(**settings: Any) -> list[str]:
    base = {"name": "web", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}}
    return SyncConfig.model_validate({**base, **settings}).safety_warnings()


def test_default_region_us_without_hours_warns_with_what_to_add() -> None:
    [line] = warnings_of()  # phone.default_region is US unless set
    assert line.startswith("sync web sends US numbers (phone.default_region: US)")
    assert "add calling_hours: {profile: us, timezone: from_phone}" in line
    assert "TCPA" in line and "\n" not in line


@pytest.mark.parametrize("region", ["US", "us", "PR", "GU"])
def test_us_regions_warn(region: str) -> None:
    assert len(warnings_of(phone={"default_region": region})) == 1


def test_a_route_to_us_numbers_warns() -> None:
    route = {"field": "Country", "values": {"GB": "agt_uk", "United States": "agt_us"}}
    [line] = warnings_of(agent=None, route=route, phone={"default_region": "GB"})
    assert "(route.values: United States -> agt_us)" in line


def test_both_reasons_make_one_line() -> None:
    route = {"field": "Country", "values": {"US": "agt_us", "USA": "agt_us"}}
    [line] = warnings_of(agent=None, route=route)
    assert "phone.default_region: US; route.values: US -> agt_us, USA -> agt_us" in line


@pytest.mark.parametrize(
    "settings",
    [
        {"calling_hours": HOURS},
        {"calling_hours": {"profile": "us"}},
        {"calling_hours": {"window": "00:00-24:00", "timezone": "UTC"}},  # around the clock
        {"phone": {"default_region": "GB"}},
        {
            "phone": {"default_region": "DE"},
            "agent": None,
            "route": {"field": "Country", "values": {"DE": "agt_de", "CA": "agt_ca"}},
        },
        {"enabled": False},
    ],
)
def test_no_warning(settings: dict[str, Any]) -> None:
    assert warnings_of(**settings) == []


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_configs_set_the_tcpa_window(path: Path) -> None:
    """Each sync of the shipped files calls 08:00-21:00 (or the us profile) in the lead's zone
    and draws no warning."""
    for raw in yaml.safe_load(path.read_text("utf-8"))["syncs"]:
        hours = raw["calling_hours"]
        assert hours.get("profile") == "us" or hours["window"] == "08:00-21:00"
        sync = SyncConfig.model_validate(raw)
        assert sync.calling_hours is not None and sync.calling_hours.fixed_zone is None
        assert sync.safety_warnings() == []


def test_the_compose_sandbox_calls_around_the_clock_on_purpose() -> None:
    raw = yaml.safe_load((REPO / "deploy" / "compose" / "config.yaml").read_text("utf-8"))
    [sync] = raw["syncs"]
    assert sync["calling_hours"] == {"window": "00:00-24:00", "timezone": "UTC"}
    assert SyncConfig.model_validate(sync).safety_warnings() == []
