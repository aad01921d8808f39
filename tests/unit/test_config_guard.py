"""The guard and calling_hours keys of a sync."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from syncd.config.models import SyncConfig


def sync(**extra: Any) -> SyncConfig:
    return SyncConfig.model_validate(
        {"name": "web", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}, **extra}
    )


def test_defaults() -> None:
    """The guard is on with 1,000 per poll and no factor; calling hours are off."""
    found = sync()
    assert (found.guard.max_new_per_poll, found.guard.max_factor) == (1000, None)
    assert found.calling_hours is None


def test_guard_keys() -> None:
    found = sync(guard={"max_new_per_poll": None, "max_factor": 10, "min_history": 3})
    assert (found.guard.max_new_per_poll, found.guard.max_factor) == (None, 10)


@pytest.mark.parametrize(
    "guard",
    [
        {"max_new_per_poll": 0},
        {"max_factor": 1},
        {"min_history": 0},
        {"min_history": 21},
        {"max_new": 10},  # unknown key
    ],
)
def test_bad_guard(guard: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        sync(guard=guard)


def test_calling_hours() -> None:
    found = sync(calling_hours={"window": "09:00-17:30", "days": "mon-fri"})
    hours = found.calling_hours
    assert hours is not None and hours.fixed_zone is None and hours.zone_field is None
    assert (hours.hours.start_minute, hours.hours.end_minute) == (540, 1050)
    assert hours.hours.days == frozenset(range(5))
    fixed = sync(calling_hours={"window": "08:00-21:00", "timezone": "America/Chicago"})
    assert fixed.calling_hours is not None and fixed.calling_hours.fixed_zone == "America/Chicago"
    field = sync(calling_hours={"window": "08:00-21:00", "timezone": {"field": "Tz__c"}})
    assert field.calling_hours is not None and field.calling_hours.zone_field == "Tz__c"


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ({"window": "21:00-08:00"}, "overnight"),
        ({"window": "08:00-21:00", "days": "sun-mon"}, "runs forward"),
        ({"window": "08:00-21:00", "timezone": "Mars/Base"}, "IANA"),
        ({"window": "08:00-21:00", "timezone": {"field": "bad field"}}, "timezone"),
        ({"window": "08:00-21:00", "hours": "x"}, "hours"),  # unknown key
    ],
)
def test_bad_calling_hours(hours: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        sync(calling_hours=hours)
