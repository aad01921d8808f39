"""The backfill progress line: counts, the COUNT() total and the ETA."""

from __future__ import annotations

from syncd.entrypoints.backfill_progress import Progress
from syncd.services.poll import PollResult


def test_line_with_total_and_eta() -> None:
    """Half the records read after 10 s: about 10 s to go."""
    progress = Progress("web", total=400, terminal=False)
    progress.started -= 10
    result = PollResult(sync="web", pages=1, fetched=200, new=150, unchanged=40, skipped=10)
    line = progress.line(result)
    assert line.startswith("backfill web: 1 page(s), 200/400 records, new 150, known 40, ")
    assert "skipped 10" in line
    eta = progress.eta(200)
    assert eta is not None and 9 < eta < 12


def test_no_eta_without_a_total_or_when_done() -> None:
    """Without a COUNT() total (or once everything is read) no ETA is shown."""
    unknown = Progress("web", total=None, terminal=False)
    assert "ETA" not in unknown.line(PollResult(sync="web", pages=1, fetched=5))
    assert "/" not in unknown.line(PollResult(sync="web", pages=1, fetched=5)).split(",")[1]
    done = Progress("web", total=5, terminal=False)
    assert done.eta(5) is None
