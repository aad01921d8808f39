"""The blast-radius guard's limit per poll."""

from __future__ import annotations

from syncd.domain.guard import GUARD_HISTORY, over_limit, poll_limit


def limit(**kw: object) -> int | None:
    args: dict[str, object] = {
        "max_new_per_poll": 1000,
        "max_factor": None,
        "min_history": 5,
        "factor_floor": 100,
        "history": [],
    }
    args.update(kw)
    return poll_limit(**args)  # type: ignore[arg-type]


def test_fixed_limit_only_by_default() -> None:
    assert limit() == 1000
    assert limit(history=[1] * 30) == 1000


def test_nothing_limits_when_both_are_off() -> None:
    assert limit(max_new_per_poll=None) is None
    assert not over_limit(10**9, None)


def test_factor_needs_history() -> None:
    """With fewer than min_history polls the factor does not apply."""
    assert limit(max_factor=10, history=[50] * 4) == 1000
    assert limit(max_factor=10, history=[50] * 5) == 500


def test_factor_never_below_floor() -> None:
    """Ten times an average of 2 would be 20; the floor keeps it at 100."""
    assert limit(max_factor=10, history=[2] * 10) == 100
    assert limit(max_factor=10, history=[0] * 10, factor_floor=30) == 30


def test_smaller_of_the_two() -> None:
    assert limit(max_factor=10, history=[500] * 10) == 1000
    assert limit(max_new_per_poll=None, max_factor=10, history=[500] * 10) == 5000


def test_only_recent_polls_count() -> None:
    """History is newest first and only the last GUARD_HISTORY polls count."""
    history = [10] * GUARD_HISTORY + [10_000] * 50
    assert limit(max_new_per_poll=None, max_factor=3, history=history, factor_floor=1) == 30


def test_over_limit_is_strictly_more() -> None:
    assert not over_limit(1000, 1000)
    assert over_limit(1001, 1000)
