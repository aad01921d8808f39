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


def test_the_sweep_line_then_the_intake_out_of_the_missed() -> None:
    """A sweep's line counts records compared and missed; its intake's line counts out of
    the missed records, not the swept ones."""
    from datetime import UTC, datetime

    from syncd.domain.window import PollWindow
    from syncd.entrypoints.backfill_progress import SweepProgress
    from syncd.services.reconcile import ReconcileResult

    progress = Progress("web", total=4000, terminal=False, word="reconcile")
    sweep = SweepProgress(progress)
    at = datetime(2024, 1, 1, tzinfo=UTC)
    swept = ReconcileResult("web", PollWindow(at, at), pages=1, fetched=2000, missed=["a", "b"])
    assert sweep.line(swept).startswith(
        "reconcile web: 1 page(s), 2000/4000 records compared, missed 2"
    )
    sweep(swept)
    sweep.intake(PollResult(sync="web", pages=1, fetched=2, new=2))
    assert progress.total == 2
    assert progress.line(PollResult(sync="web", pages=1, fetched=2, new=2)).startswith(
        "reconcile web: 1 page(s), 2/2 records, new 2"
    )
