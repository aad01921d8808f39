"""One claim round decided from plain values (syncd.domain.gate_round)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncd.domain.calling_hours import WAITING_FOR
from syncd.domain.gate import (
    DO_NOT_CALL_RULE,
    DUPLICATE_RULE,
    Candidate,
    GateRules,
    Rival,
    Verdict,
)
from syncd.domain.gate_round import (
    CALLING_HOURS_RULE,
    RoundPlan,
    numbers_to_lock,
    plan_round,
)
from syncd.domain.states import LeadState

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=3)
DAY = GateRules(duplicate_window=timedelta(hours=24))
AGENT = "agt_1"
PHONE = "+12025550101"
OTHER = "+12025550102"


def due(lead_id: int, phone: str | None = PHONE, dnc: bool = False) -> Candidate:
    return Candidate(lead_id, AGENT, phone, dnc)


def plan(
    leads: list[Candidate],
    *,
    openings: dict[int, datetime] | None = None,
    locked: set[tuple[str, str]] | None = None,
    rivals: list[Rival] | None = None,
    rules: GateRules | None = None,
) -> RoundPlan:
    """One round; unless ``locked`` says otherwise every open lead's number was locked."""
    held = numbers_to_lock(leads, openings or {}) if locked is None else locked
    return plan_round(leads, openings or {}, held, rivals or [], rules or GateRules(), NOW)


class TestCallingHours:
    def test_closed_hours_wait_for_the_opening(self) -> None:
        """A lead outside its window waits, with waiting_for set; the others are judged."""
        result = plan([due(1), due(2)], openings={1: LATER})
        assert result.send == (2,)
        [(lead_id, verdict)] = result.wait
        assert (lead_id, verdict.until, verdict.rule) == (1, LATER, CALLING_HOURS_RULE)
        assert verdict.waiting_for == WAITING_FOR
        assert result.progressed

    def test_closed_hours_come_before_the_gate(self) -> None:
        """A DoNotCall lead whose hours are closed waits: the gate does not see it yet."""
        result = plan([due(1, dnc=True)], openings={1: LATER})
        assert (result.skip, result.send) == ((), ())
        assert [lead_id for lead_id, _v in result.wait] == [1]

    def test_calling_hours_waits_are_not_noted(self) -> None:
        """leads.waiting_for explains them: no audit note, no gate count."""
        assert plan([due(1)], openings={1: LATER}).noted == ()

    def test_numbers_of_closed_leads_are_not_locked(self) -> None:
        leads = [due(1, PHONE), due(2, OTHER), due(3, None)]
        assert numbers_to_lock(leads, {1: LATER}) == {(AGENT, OTHER)}

    def test_an_opening_not_after_now_is_no_progress(self) -> None:
        result = plan([due(1)], openings={1: NOW})
        assert [lead_id for lead_id, _v in result.wait] == [1]
        assert not result.progressed


class TestNumberLocks:
    def test_a_lead_whose_lock_was_not_taken_is_left_alone(self) -> None:
        """Neither sent, skipped nor deferred: it stays queued for the next claim."""
        result = plan([due(1, PHONE), due(2, OTHER)], locked={(AGENT, OTHER)}, rules=DAY)
        assert result == RoundPlan(send=(2,))

    def test_a_lead_without_a_number_needs_no_lock(self) -> None:
        assert plan([due(1, None)], rules=DAY).send == (1,)

    def test_a_number_needs_its_lock_without_the_duplicate_rule_too(self) -> None:
        """The suppression list and the caps are number rules that are always read."""
        assert plan([due(1)], locked=set()) == RoundPlan()


class TestGate:
    def test_skip(self) -> None:
        result = plan([due(1, dnc=True), due(2)])
        assert result.send == (2,)
        [(lead_id, verdict)] = result.skip
        assert (lead_id, verdict.rule) == (1, DO_NOT_CALL_RULE)
        assert result.noted == result.skip
        assert result.progressed

    def test_a_rival_skips(self) -> None:
        rivals = [Rival(9, PHONE, LeadState.SENDING, NOW)]
        result = plan([due(1)], locked={(AGENT, PHONE)}, rivals=rivals, rules=DAY)
        assert [(i, v.rule) for i, v in result.skip] == [(1, DUPLICATE_RULE)]

    def test_wait(self) -> None:
        """A gate rule that says "not now": noted and counted, waiting_for left alone."""

        def not_now(_candidate: Candidate, _now: datetime) -> Verdict:
            return Verdict.wait("test_hours", "outside the test's hours", LATER)

        result = plan([due(1)], rules=GateRules(extra=(not_now,)))
        [(lead_id, verdict)] = result.wait
        assert (lead_id, verdict.until, verdict.waiting_for) == (1, LATER, None)
        assert result.noted == result.wait
        assert result.progressed

    def test_a_wait_until_now_is_no_progress(self) -> None:
        def now_again(_candidate: Candidate, now: datetime) -> Verdict:
            return Verdict.wait("test", "again", now)

        result = plan([due(1)], rules=GateRules(extra=(now_again,)))
        assert len(result.wait) == 1 and not result.progressed

    def test_send_in_claim_order(self) -> None:
        result = plan([due(1, PHONE), due(2, OTHER)])
        assert result == RoundPlan(send=(1, 2), progressed=False)

    def test_nothing_due(self) -> None:
        assert plan([]) == RoundPlan()
