"""The send gate's decisions (syncd.domain.gate) and DoNotCall read failing closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.domain.gate import (
    DO_NOT_CALL_RULE,
    DUPLICATE_RULE,
    SEND,
    Action,
    Candidate,
    GateRules,
    Rival,
    Verdict,
    judge,
)
from syncd.domain.mapping import read_do_not_call
from syncd.domain.states import LeadState

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DAY = GateRules(duplicate_window=timedelta(hours=24))
PHONE = "+12025550101"


def candidate(lead_id: int, phone: str | None = PHONE, dnc: bool = False) -> Candidate:
    return Candidate(lead_id, "agt_1", phone, dnc)


def rival(lead_id: int, state: LeadState, sent_at: datetime | None = None) -> Rival:
    return Rival(lead_id, PHONE, state, sent_at)


def queued(*lead_ids: int) -> list[Rival]:
    """The candidates themselves, as the rivals query returns them (queued)."""
    return [rival(lead_id, LeadState.QUEUED) for lead_id in lead_ids]


class TestDoNotCall:
    def test_stored_flag_skips(self) -> None:
        [verdict] = judge([candidate(1, dnc=True)], [], GateRules(), NOW)
        assert (verdict.action, verdict.rule) == (Action.SKIP, DO_NOT_CALL_RULE)

    def test_opted_out_sync_sends(self) -> None:
        rules = GateRules(respect_do_not_call=False)
        assert judge([candidate(1, dnc=True)], [], rules, NOW) == [SEND]

    def test_a_skipped_lead_does_not_hold_the_number(self) -> None:
        """The first candidate is skipped for DoNotCall: the second, same number, goes."""
        verdicts = judge([candidate(1, dnc=True), candidate(2)], queued(1, 2), DAY, NOW)
        assert [v.action for v in verdicts] == [Action.SKIP, Action.SEND]


class TestNumbers:
    @pytest.mark.parametrize("state", [LeadState.SENDING, LeadState.UNCERTAIN])
    def test_in_flight_blocks_whatever_its_age(self, state: LeadState) -> None:
        old = NOW - timedelta(days=30)
        [verdict] = judge([candidate(5)], [*queued(5), rival(1, state, old)], DAY, NOW)
        assert (verdict.action, verdict.rule) == (Action.SKIP, DUPLICATE_RULE)
        assert verdict.note is not None and f"is {state.value}" in verdict.note

    def test_accepted_blocks_within_the_window_only(self) -> None:
        recent = rival(1, LeadState.ACCEPTED, NOW - timedelta(hours=23))
        old = rival(1, LeadState.ACCEPTED, NOW - timedelta(hours=25))
        assert judge([candidate(5)], [*queued(5), recent], DAY, NOW)[0].action is Action.SKIP
        assert judge([candidate(5)], [*queued(5), old], DAY, NOW) == [SEND]

    def test_queued_ahead_blocks_whatever_its_age(self) -> None:
        """A lead queued earlier (lower id), outside this claim, holds the number."""
        [verdict] = judge([candidate(5)], queued(1, 5), DAY, NOW)
        assert verdict.note is not None and "lead 1" in verdict.note
        assert "queued ahead" in verdict.note

    def test_queued_behind_does_not_block(self) -> None:
        assert judge([candidate(5)], queued(5, 9), DAY, NOW) == [SEND]

    def test_two_in_one_claim_send_the_first(self) -> None:
        verdicts = judge([candidate(1), candidate(2)], queued(1, 2), DAY, NOW)
        assert [v.action for v in verdicts] == [Action.SEND, Action.SKIP]

    def test_rule_off_sends_all(self) -> None:
        rivals = [*queued(1, 2), rival(0, LeadState.SENDING)]
        verdicts = judge([candidate(1), candidate(2)], rivals, GateRules(), NOW)
        assert verdicts == [SEND, SEND]

    def test_other_numbers_do_not_matter(self) -> None:
        other = Rival(1, "+12025550199", LeadState.SENDING, NOW)
        assert judge([candidate(5)], [*queued(5), other], DAY, NOW) == [SEND]

    def test_no_number_is_not_checked(self) -> None:
        assert judge([candidate(5, phone=None)], queued(1), DAY, NOW) == [SEND]


class TestFurtherRules:
    def test_wait_verdict_passes_through(self) -> None:
        later = NOW + timedelta(hours=2)

        def not_now(_candidate: Candidate, _now: datetime) -> Verdict:
            return Verdict.wait("hours", "outside calling hours", later)

        [verdict] = judge([candidate(1)], [], GateRules(extra=(not_now,)), NOW)
        assert (verdict.action, verdict.until, verdict.rule) == (Action.WAIT, later, "hours")

    def test_a_waiting_lead_does_not_hold_the_number_in_its_claim(self) -> None:
        later = NOW + timedelta(hours=2)

        def first_waits(lead: Candidate, _now: datetime) -> Verdict | None:
            return Verdict.wait("hours", "later", later) if lead.lead_id == 1 else None

        rules = GateRules(duplicate_window=timedelta(hours=24), extra=(first_waits,))
        verdicts = judge([candidate(1), candidate(2)], queued(1, 2), rules, NOW)
        assert [v.action for v in verdicts] == [Action.WAIT, Action.SEND]


CALLABLE = frozenset({"false", "0", "no", "n"})


class TestReadDoNotCall:
    @pytest.mark.parametrize("value", [True, "true", " TRUE ", "1", "yes", 1])
    def test_plain_do_not_call(self, value: object) -> None:
        assert read_do_not_call(value, CALLABLE) == (True, None)

    @pytest.mark.parametrize("value", [False, None, "", "  ", "false", " No ", "n", "0", 0])
    def test_callable(self, value: object) -> None:
        assert read_do_not_call(value, CALLABLE) == (False, None)

    @pytest.mark.parametrize("value", ["Y", "on", "Do Not Call", "1.0", 1.0, "off", 2])
    def test_anything_else_fails_closed(self, value: object) -> None:
        flag, unrecognised = read_do_not_call(value, CALLABLE)
        assert flag is True
        assert unrecognised is not None

    def test_configured_values(self) -> None:
        assert read_do_not_call("Callable", frozenset({"callable"})) == (False, None)
        assert read_do_not_call("false", frozenset({"callable"})) == (True, "false")
