"""Unit tests for syncd.domain.guard.PollGuard: one poll's blast-radius guard, step by step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncd.domain.guard import FORGOTTEN, Ending, Holding, NewLeads, PollGuard, window_limit
from syncd.domain.page_plan import ExistingLead, PagePlan, plan_page
from syncd.domain.rules import IntakeRules
from syncd.domain.states import LeadState
from tests.unit.test_page_plan import lead

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
END = T0 + timedelta(minutes=10)
RULES = IntakeRules(duplicate_window=timedelta(0))


def page(*ids: str, hold: bool = False) -> PagePlan:
    """A page of new records ready to call, each with its own number."""
    mapped = [lead(sf_id, phone=f"+1415555{n:04d}") for n, sf_id in enumerate(ids)]
    return plan_page(mapped, {}, set(), RULES, T0, END, hold=hold)


def states(plan: PagePlan) -> list[str]:
    return [new.state for new in plan.inserts]


class TestPagePlanHold:
    def test_sendable_counts_new_and_revived_before_any_hold(self) -> None:
        revived = lead("00Q9", "d2")
        plan = plan_page(
            [lead("00Q1"), revived],
            {"00Q9": ExistingLead(4, "skipped", "d1")},
            set(),
            RULES,
            T0,
            END,
            hold=True,
        )
        assert plan.sendable == ("00Q1", "00Q9")
        assert states(plan) == ["held"]
        assert [change.state for change in plan.changes] == ["held"]
        assert [state for _lead, state, _note, _change in plan.decided] == [LeadState.HELD] * 2

    def test_held_twice_is_held_once(self) -> None:
        plan = page("00Q1", "00Q2").held()
        assert plan.held() == plan


class TestStart:
    def test_known_size_within_the_limit_queues(self) -> None:
        assert PollGuard.limited(5).start(5).holding is Holding.QUEUEING

    def test_larger_or_unknown_size_holds(self) -> None:
        assert PollGuard.limited(5).start(6).holds
        assert PollGuard.limited(5).start(None).holds

    def test_no_limit_queues_and_remembers_nothing(self) -> None:
        guard = PollGuard.limited(None).start(None)
        assert guard.holding is Holding.QUEUEING
        assert guard.new_leads == FORGOTTEN

    def test_decided_once(self) -> None:
        assert PollGuard.limited(5).start(None).start(1).holds


class TestPages:
    def test_within_the_limit_queues_and_remembers(self) -> None:
        step = PollGuard.limited(3).start(3).page(page("00Q1", "00Q2"))
        assert states(step.plan) == ["queued", "queued"]
        assert step.guard.eligible == 2
        assert step.guard.new_leads == NewLeads(("00Q1", "00Q2"))
        assert step.to_hold == ()

    def test_the_page_that_crosses_holds_itself_and_the_earlier_ones(self) -> None:
        first = PollGuard.limited(2).start(2).page(page("00Q1", "00Q2"))
        second = first.guard.page(page("00Q3"))
        assert states(second.plan) == ["held"]
        assert second.to_hold == ("00Q1", "00Q2")
        assert second.guard.holds
        assert second.guard.new_leads == FORGOTTEN  # held for good

    def test_a_holding_poll_holds_each_page(self) -> None:
        step = PollGuard.limited(5).start(None).page(page("00Q1"))
        assert states(step.plan) == ["held"]
        assert step.to_hold == ()

    def test_stream_decides_from_its_page(self) -> None:
        guard = PollGuard(limit=None).for_window(window_limit(3, admitted=2))
        step = guard.page(page("00Q1", "00Q2"), stream=True)
        assert step.guard.limit == 1
        assert step.held_at_once == 2
        assert states(step.plan) == ["held", "held"]

    def test_stream_within_its_window_queues(self) -> None:
        step = PollGuard(limit=None).for_window(3).page(page("00Q1"), stream=True)
        assert (step.held_at_once, states(step.plan)) == (0, ["queued"])

    def test_stream_without_a_limit_queues(self) -> None:
        step = PollGuard(limit=None).for_window(None).page(page("00Q1", "00Q2"), stream=True)
        assert (step.held_at_once, step.guard.holding) == (0, Holding.QUEUEING)


class TestEnding:
    def test_over_the_limit_stays_held(self) -> None:
        guard = PollGuard.limited(1).start(None).page(page("00Q1", "00Q2")).guard
        assert guard.ending(finished=True, dry_run=False) is Ending.OVER_LIMIT

    def test_a_held_poll_within_the_limit_is_released_when_finished(self) -> None:
        guard = PollGuard.limited(5).start(None).page(page("00Q1")).guard
        assert guard.ending(finished=True, dry_run=False) is Ending.RELEASE
        assert guard.ending(finished=False, dry_run=False) is Ending.STAYS_HELD

    def test_nothing_to_settle(self) -> None:
        queued = PollGuard.limited(5).start(5).page(page("00Q1")).guard
        assert queued.ending(finished=True, dry_run=False) is Ending.NOTHING
        assert PollGuard.limited(None).ending(finished=True, dry_run=False) is Ending.NOTHING
        dry = PollGuard.limited(5).start(None).count(1)
        assert dry.ending(finished=True, dry_run=True) is Ending.NOTHING
        assert (
            PollGuard.limited(0).count(1).ending(finished=True, dry_run=True) is Ending.OVER_LIMIT
        )
