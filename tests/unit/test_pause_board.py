"""The pause board: the paused gauge follows pauses as they open, renew and end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncd.metrics import REGISTRY
from syncd.services.pause_board import PauseBoard

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
KEY = "fpboardtest1"


def gauge(scope: str, name: str) -> float | None:
    return REGISTRY.get_sample_value("syncd_paused", {"scope": scope, "name": name})


class TestPauseBoard:
    def test_announced_once_and_gauge_stays_up_across_a_renewal(self) -> None:
        """Only the first open is announced; a renewal after the end keeps the gauge at 1."""
        board = PauseBoard()
        assert board.open("api_key", KEY, T0 + timedelta(seconds=10)) is True
        assert gauge("api_key", KEY) == 1
        assert board.open("api_key", KEY, T0 + timedelta(seconds=10)) is False
        later = T0 + timedelta(seconds=11)
        assert board.expired([], later) == []  # not visited: nothing ends
        assert board.open("api_key", KEY, later + timedelta(seconds=20)) is False
        assert board.expired([("api_key", KEY)], later) == []  # renewed, still running
        assert gauge("api_key", KEY) == 1

    def test_expired_without_renewal_closes(self) -> None:
        """A pause past its end that a cycle got past is closed and the gauge drops to 0."""
        board = PauseBoard()
        board.open("agent", f"{KEY}/a", T0)
        assert board.expired([("agent", f"{KEY}/a")], T0 + timedelta(seconds=1)) == [
            ("agent", f"{KEY}/a")
        ]
        assert gauge("agent", f"{KEY}/a") == 0
        assert board.keys() == []

    def test_lifted_closes_key_and_agent(self) -> None:
        """A success ends the key's pause and the agent's, and only those."""
        board = PauseBoard()
        board.open("api_key", KEY, T0)
        board.open("agent", f"{KEY}/a", T0)
        board.open("agent", f"{KEY}/b", T0)
        assert sorted(board.lifted(KEY, "a")) == [("agent", f"{KEY}/a"), ("api_key", KEY)]
        assert board.keys() == [("agent", f"{KEY}/b")]

    def test_reconcile_adopts_running_and_forgets_deleted(self) -> None:
        """Running stored pauses are adopted unannounced; deleted ones close; expired stay."""
        board = PauseBoard()
        board.open("agent", f"{KEY}/gone", T0)
        board.open("agent", f"{KEY}/expired", T0)
        board.reconcile(
            [
                ("api_key", KEY, T0 + timedelta(minutes=5)),
                ("agent", f"{KEY}/expired", T0 - timedelta(minutes=1)),
            ],
            T0,
        )
        assert sorted(board.keys()) == [("agent", f"{KEY}/expired"), ("api_key", KEY)]
        assert gauge("agent", f"{KEY}/gone") == 0
        assert gauge("api_key", KEY) == 1
        # Adopted without a log line: the first delivery cycle that meets it announces it.
        assert board.open("api_key", KEY, T0 + timedelta(minutes=5)) is True
