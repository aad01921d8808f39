"""Speed to lead's stages: consecutive intervals that add up, clamped on clock skew."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncd.domain.speed_to_lead import (
    STAGE_NAMES,
    Timeline,
    interval,
    percentile,
    stage_times,
    steps,
    summarise,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def full(offset: float = 0.0) -> Timeline:
    at = T0 + timedelta(seconds=offset)
    return Timeline(
        created=at,
        read=at + timedelta(seconds=2),
        queued=at + timedelta(seconds=2.5),
        sent=at + timedelta(seconds=3),
        accepted=at + timedelta(seconds=3.25),
        first_call=at + timedelta(seconds=40),
    )


def test_stages_are_consecutive_and_add_up() -> None:
    """read + queued + sent + accepted is total, lead by lead."""
    found = {s.stage: s.seconds for s in stage_times(full())}
    assert found == {
        "read": 2.0,
        "queued": 0.5,
        "sent": 0.5,
        "accepted": 0.25,
        "first_call": 36.75,
        "total": 3.25,
    }
    assert sum(found[name] for name in ("read", "queued", "sent", "accepted")) == found["total"]


def test_negative_interval_is_clamped_and_marked() -> None:
    """CreatedDate ahead of syncd's clock: 0 seconds, marked as skew."""
    value = interval("read", T0 + timedelta(seconds=1), T0)
    assert value is not None and (value.seconds, value.skewed) == (0.0, True)
    value = interval("read", T0, T0 + timedelta(seconds=1))
    assert value is not None and not value.skewed


def test_unknown_moments_give_no_stage() -> None:
    """A lead stored before the moments were kept has only what it has."""
    legacy = Timeline(sent=T0, accepted=T0 + timedelta(seconds=1))
    assert [s.stage for s in stage_times(legacy)] == ["accepted"]
    assert stage_times(Timeline()) == []


def test_steps_name_the_stage_ending_at_each_moment() -> None:
    found = steps(Timeline(created=T0, read=T0 + timedelta(seconds=1), sent=T0))
    assert [(s.moment, s.stage, s.seconds) for s in found] == [
        ("created", None, None),
        ("read", "read", 1.0),
        ("queued", "queued", None),
        ("sent", "sent", None),
        ("accepted", "accepted", None),
        ("first_call", "first_call", None),
    ]


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0


def test_summary_counts_stages_ending_in_the_window() -> None:
    """A stage counts when its end moment is in the window; every stage is listed."""
    since = T0 + timedelta(seconds=100)
    old, new = full(), full(offset=200)
    late_call = Timeline(accepted=T0, first_call=since + timedelta(seconds=5))
    summary = {s.stage: s for s in summarise([old, new, late_call], since)}
    assert list(summary) == list(STAGE_NAMES)
    assert summary["read"].count == 1 and summary["read"].p50 == 2.0
    assert summary["first_call"].count == 2
    assert summary["total"].p95 == 3.25
