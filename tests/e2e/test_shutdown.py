"""SIGTERM while a batch is in flight: finish it, exit 0, and never send a lead twice.

The SimZ emulator's ``delay`` fault holds the first POST open, so the signal
arrives while leads are ``sending`` (claim committed, answer not yet read). With
more leads queued, the next batch is claimed ahead meanwhile: it is ``sending``
too, but was never released for sending (``batches.posted_at`` empty).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, lead_records


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        yield h


def in_flight(harness: Harness) -> int:
    return harness.count_state("sending")


def batches(harness: Harness) -> list[tuple[str | None, bool]]:
    """(outcome, released for sending) of every batch row, oldest first."""
    rows = harness.query("SELECT outcome, posted_at IS NOT NULL FROM batches ORDER BY id")
    return [(outcome, bool(posted)) for outcome, posted in rows]


class TestGracefulStop:
    def test_sigterm_during_batch(self, harness: Harness) -> None:
        """The in-flight batch completes, exit is 0, nothing is left sending or sent twice."""
        harness.salesforce.add_records(lead_records(30))
        harness.simz.inject("delay", seconds=3)
        daemon = harness.start()
        harness.wait_until(
            lambda: in_flight(harness) == 20, "a batch of 10 in flight, the next claimed ahead"
        )
        assert batches(harness) == [(None, True), (None, False)]

        daemon.send(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.output()
        assert daemon.find("syncd stopped") is not None
        states = harness.lead_states()
        assert "sending" not in states.values()
        # The batch in flight got its answer; the one claimed ahead went back unsent.
        assert list(states.values()).count("accepted") == 10
        assert list(states.values()).count("queued") == 20
        assert sum(harness.simz.received_counts().values()) == 10
        assert batches(harness) == [("accepted", True), ("abandoned", False)]

        again = harness.start()
        assert again.started["recovered_uncertain"] == 0
        harness.wait_until(lambda: harness.count_state("accepted") == 30, "all 30 accepted")
        assert again.stop() == 0, again.output()
        counts = harness.simz.received_counts()
        assert len(counts) == 30
        assert set(counts.values()) == {1}

    def test_second_signal_exits_at_once(self, harness: Harness) -> None:
        """A second SIGTERM exits at once (143): the batch in flight turns uncertain, not
        resent; the batch claimed ahead was never sent and goes back to the queue."""
        harness.salesforce.add_records(lead_records(20))
        harness.simz.inject("delay", seconds=4)
        daemon = harness.start()
        harness.wait_until(
            lambda: in_flight(harness) == 20, "a batch of 10 in flight, the next claimed ahead"
        )

        daemon.send(signal.SIGTERM)
        daemon.wait_log("stopping")
        daemon.send(signal.SIGTERM)
        assert daemon.wait() == 128 + signal.SIGTERM, daemon.output()
        assert harness.count_state("sending") == 20

        again = harness.start()
        assert again.started["recovered_uncertain"] == 10
        assert batches(harness)[:2] == [("interrupted", True), ("abandoned", False)]
        harness.wait_until(lambda: harness.count_state("accepted") == 10, "the other 10 accepted")
        # The delayed request still reaches the emulator once; wait for it, then compare.
        harness.wait_until(lambda: len(harness.simz.received()) == 20, "20 leads at SimZ")
        assert again.stop() == 0
        assert harness.count_state("uncertain") == 10
        counts = harness.simz.received_counts()
        assert len(counts) == 20
        assert set(counts.values()) == {1}

    def test_grace_period_runs_out(self, harness: Harness) -> None:
        """A batch outlasting the grace period: exit 1, a warning, leads uncertain at restart."""
        harness.salesforce.add_records(lead_records(10))
        harness.simz.inject("delay", seconds=6)
        harness.write_config(daemon={"shutdown_grace": "1s"})
        daemon = harness.start()
        harness.wait_until(lambda: in_flight(harness) == 10, "a batch of 10 in flight")

        daemon.send(signal.SIGTERM)
        assert daemon.wait() == 1, daemon.output()
        warning = daemon.find(
            "grace period over with leads in flight: they will become uncertain at the next start"
        )
        assert warning is not None
        assert warning["sending"] == 10

        again = harness.start()
        assert again.started["recovered_uncertain"] == 10
        assert again.stop() == 0
        assert harness.count_state("uncertain") == 10
        harness.wait_until(lambda: len(harness.simz.received()) == 10, "the delayed batch at SimZ")
        assert set(harness.simz.received_counts().values()) == {1}
