"""The stream's batch window grows under a flow of events, shrinks when they thin out, and
stays within ``base`` and ``ceiling``."""

from __future__ import annotations

import pytest

from syncd.domain.linger import Linger


def test_starts_at_base() -> None:
    assert Linger(0.1, 1.0).current == 0.1


def test_a_flow_doubles_the_window_up_to_the_ceiling() -> None:
    linger = Linger(0.1, 1.0)
    assert [linger.observe(3) for _ in range(5)] == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])


def test_lone_events_halve_it_back_to_base() -> None:
    linger = Linger(0.1, 1.0)
    for _ in range(5):
        linger.observe(20)
    assert [linger.observe(1) for _ in range(6)] == pytest.approx([0.5, 0.25, 0.125, 0.1, 0.1, 0.1])


def test_lone_events_at_base_keep_base() -> None:
    linger = Linger(0.1, 1.0)
    assert [linger.observe(1) for _ in range(3)] == [0.1, 0.1, 0.1]


def test_a_zero_base_grows_straight_to_the_ceiling() -> None:
    linger = Linger(0.0, 1.0)
    assert linger.observe(2) == 1.0
    assert linger.observe(1) == 0.5


def test_a_ceiling_below_base_is_base() -> None:
    linger = Linger(0.5, 0.1)
    assert linger.observe(10) == 0.5


def test_a_negative_base_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Linger(-1.0, 1.0)


def test_a_quiet_spell_longer_than_the_ceiling_starts_again_at_base() -> None:
    linger = Linger(0.1, 1.0)
    for _ in range(5):
        linger.observe(20)
    assert linger.start(quiet=0.05) == 1.0  # the flow goes on
    assert linger.start(quiet=1.5) == 0.1  # a lone event after the burst
