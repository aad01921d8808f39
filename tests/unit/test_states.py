"""The lead state machine of docs/design.md#lead-states."""

import pytest

from syncd.domain.states import (
    ALLOWED,
    NOT_YET_SENT,
    IllegalTransition,
    LeadState,
    check_transition,
)


class TestTransitions:
    def test_accepted_is_final(self) -> None:
        """Nothing, not even an operator, moves an accepted lead."""
        for target in LeadState:
            with pytest.raises(IllegalTransition):
                check_transition(LeadState.ACCEPTED, target)

    def test_uncertain_requeued_or_resolved(self) -> None:
        """An uncertain lead can be requeued (or held back by the requeue's re-check), or
        resolved as accepted when SimZ confirmed it has it; never sent straight from that state."""
        assert ALLOWED[LeadState.UNCERTAIN] == {
            LeadState.QUEUED,
            LeadState.SKIPPED,
            LeadState.INVALID,
            LeadState.ACCEPTED,
        }
        assert check_transition("uncertain", "accepted") is LeadState.ACCEPTED
        for target in ("sending", "rejected", "failed"):
            with pytest.raises(IllegalTransition):
                check_transition("uncertain", target)

    @pytest.mark.parametrize("state", ["failed", "rejected", "uncertain"])
    def test_requeue_recheck_targets(self, state: str) -> None:
        """A requeue's re-check may queue the lead, or skip it or find it invalid."""
        for target in ("queued", "skipped", "invalid"):
            assert check_transition(state, target) is LeadState(target)
        with pytest.raises(IllegalTransition):
            check_transition(state, "sending")

    def test_accepted_only_by_an_answer_or_a_resolve(self) -> None:
        """A lead becomes accepted from sending (SimZ's answer) or from uncertain (an operator's
        `syncd resolve`, once SimZ confirmed it has the lead), from nothing else: never from
        failed or rejected, which SimZ did not take."""
        into = {state for state, targets in ALLOWED.items() if LeadState.ACCEPTED in targets}
        assert into == {LeadState.SENDING, LeadState.UNCERTAIN}
        assert check_transition("uncertain", "accepted") is LeadState.ACCEPTED

    def test_only_queued_leads_are_sent(self) -> None:
        """Only a queued lead can be claimed into a batch."""
        senders = {state for state, targets in ALLOWED.items() if LeadState.SENDING in targets}
        assert senders == {LeadState.QUEUED}

    def test_new_leads_start_unsent(self) -> None:
        """A lead first seen by a poll starts in a state that has not reached SimZ."""
        assert ALLOWED[None] <= NOT_YET_SENT
        assert check_transition(None, "queued") is LeadState.QUEUED

    def test_every_state_has_a_rule(self) -> None:
        """The transition table covers every state."""
        assert set(LeadState) <= set(ALLOWED)


class TestHeld:
    def test_only_intake_puts_a_lead_in_held(self) -> None:
        """held is entered by a new lead, from queued by the poll's own crossing page, or by
        a changed record that would make an invalid or skipped lead sendable again."""
        into = {state for state, targets in ALLOWED.items() if LeadState.HELD in targets}
        assert into == {None, LeadState.QUEUED, LeadState.INVALID, LeadState.SKIPPED}

    def test_held_is_never_sent_directly(self) -> None:
        """A held lead leaves only by release (queued), discard (skipped) or a changed record."""
        assert ALLOWED[LeadState.HELD] == {LeadState.QUEUED, LeadState.SKIPPED, LeadState.INVALID}
        with pytest.raises(IllegalTransition):
            check_transition("held", "sending")
