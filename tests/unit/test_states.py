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

    def test_uncertain_only_back_to_queued(self) -> None:
        """An uncertain lead can only be requeued (or held back by the requeue's re-check),
        never sent straight from that state."""
        assert ALLOWED[LeadState.UNCERTAIN] == {
            LeadState.QUEUED,
            LeadState.SKIPPED,
            LeadState.INVALID,
        }
        with pytest.raises(IllegalTransition):
            check_transition("uncertain", "sending")

    @pytest.mark.parametrize("state", ["failed", "rejected", "uncertain"])
    def test_requeue_recheck_targets(self, state: str) -> None:
        """A requeue's re-check may queue the lead, or skip it or find it invalid."""
        for target in ("queued", "skipped", "invalid"):
            assert check_transition(state, target) is LeadState(target)
        for target in ("sending", "accepted"):
            with pytest.raises(IllegalTransition):
                check_transition(state, target)

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
    def test_only_a_poll_puts_a_lead_in_held(self) -> None:
        """held is entered by a new lead, or from queued by the poll's own crossing page."""
        into = {state for state, targets in ALLOWED.items() if LeadState.HELD in targets}
        assert into == {None, LeadState.QUEUED}

    def test_held_is_never_sent_directly(self) -> None:
        """A held lead leaves only by release (queued), discard (skipped) or a changed record."""
        assert ALLOWED[LeadState.HELD] == {LeadState.QUEUED, LeadState.SKIPPED, LeadState.INVALID}
        with pytest.raises(IllegalTransition):
            check_transition("held", "sending")
