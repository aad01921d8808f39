"""The send gate's checks of numbers and consent (syncd.domain.gate.decide), from plain values.

The suppression list, consent at the send, and frequency caps across every
agent and sync; the order in which the checks decide; and the inputs of the
dial decision of every lead let through.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.domain.consent import ConsentKind, ConsentRule
from syncd.domain.frequency import Cap
from syncd.domain.gate import (
    CONSENT_RULE,
    DO_NOT_CALL_RULE,
    DUPLICATE_RULE,
    FREQUENCY_RULE,
    NO_FACTS,
    SEND,
    STOPPED_RULE,
    SUPPRESSION_RULE,
    Action,
    Candidate,
    GateRules,
    NumberFacts,
    Rival,
    Verdict,
    decide,
    judge,
)
from syncd.domain.states import LeadState

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PHONE = "+12025550101"
OTHER = "+12025550102"
LISTED = "number is on the suppression list (operator: asked not to be called)"
DAY = timedelta(hours=24)
THREE_A_DAY = Cap(3, DAY)
CONSENT = ConsentRule("Consent_At__c", ConsentKind.DATETIME, timedelta(days=365))
KEYS = {
    "do_not_call",
    "consent",
    "suppression",
    "frequency",
    "duplicate_window_seconds",
    "calling_hours",
}


def lead(lead_id: int, phone: str | None = PHONE, **fields: object) -> Candidate:
    return Candidate(lead_id, "agt_1", phone, bool(fields.pop("dnc", False)), **fields)  # type: ignore[arg-type]


def sends(*hours_ago: float, phone: str = PHONE) -> NumberFacts:
    return NumberFacts(sends={phone: [NOW - timedelta(hours=h) for h in hours_ago]})


def one(candidate: Candidate, rules: GateRules, numbers: NumberFacts = NO_FACTS) -> Verdict:
    [verdict] = judge([candidate], [], rules, NOW, numbers)
    return verdict


class TestSuppression:
    def test_a_listed_number_is_skipped_with_the_entry(self) -> None:
        verdict = one(lead(1), GateRules(), NumberFacts(suppressed={PHONE: LISTED}))
        assert (verdict.action, verdict.rule) == (Action.SKIP, SUPPRESSION_RULE)
        assert verdict.note == f"send gate: {LISTED}"

    def test_other_numbers_go(self) -> None:
        assert one(lead(1, OTHER), GateRules(), NumberFacts(suppressed={PHONE: LISTED})) == SEND

    def test_a_lead_without_a_number_is_not_listed(self) -> None:
        assert one(lead(1, None), GateRules(), NumberFacts(suppressed={PHONE: LISTED})) == SEND

    def test_even_a_sync_that_ignores_do_not_call_skips_a_listed_number(self) -> None:
        rules = GateRules(respect_do_not_call=False)
        verdict = one(lead(1, dnc=True), rules, NumberFacts(suppressed={PHONE: LISTED}))
        assert verdict.rule == SUPPRESSION_RULE


class TestConsent:
    @pytest.mark.parametrize(
        ("value", "words"),
        [
            (None, "no consent: Consent_At__c is empty"),
            ("soon", "consent unreadable"),
            ((NOW - timedelta(days=400)).isoformat(), "consent lapsed"),
            ((NOW + timedelta(days=2)).isoformat(), "lies in the future"),
        ],
    )
    def test_missing_unreadable_or_lapsed_consent_skips(
        self, value: str | None, words: str
    ) -> None:
        verdict = one(lead(1, consent=value), GateRules(consent=CONSENT))
        assert (verdict.action, verdict.rule) == (Action.SKIP, CONSENT_RULE)
        assert verdict.note is not None and verdict.note.startswith("send gate: ")
        assert words in verdict.note

    def test_consent_that_lapsed_since_intake_is_caught_now(self) -> None:
        """Given 364 days ago at intake, 366 at the send: the send decides."""
        given = (NOW - timedelta(days=366)).isoformat()
        assert one(lead(1, consent=given), GateRules(consent=CONSENT)).rule == CONSENT_RULE

    def test_valid_consent_sends(self) -> None:
        given = (NOW - timedelta(days=30)).isoformat()
        assert one(lead(1, consent=given), GateRules(consent=CONSENT)) == SEND

    def test_the_rule_off_reads_no_consent(self) -> None:
        assert one(lead(1, consent=None), GateRules()) == SEND


class TestFrequencyCaps:
    def test_under_the_cap_sends(self) -> None:
        assert one(lead(1), GateRules(caps=(THREE_A_DAY,)), sends(1, 2)) == SEND

    def test_a_full_cap_waits_until_the_oldest_send_leaves_it(self) -> None:
        verdict = one(lead(1), GateRules(caps=(THREE_A_DAY,)), sends(1, 2, 5))
        assert (verdict.action, verdict.rule) == (Action.WAIT, FREQUENCY_RULE)
        assert verdict.until == NOW - timedelta(hours=5) + DAY
        assert verdict.waiting_for is None  # noted in the audit trail and counted
        assert verdict.note is not None and "3 per 1d (rules.max_sends_per_number)" in verdict.note

    def test_over_cap_skip(self) -> None:
        rules = GateRules(caps=(THREE_A_DAY,), over_cap_skip=True)
        verdict = one(lead(1), rules, sends(1, 2, 5))
        assert (verdict.action, verdict.rule, verdict.until) == (Action.SKIP, FREQUENCY_RULE, None)
        assert verdict.note == (
            "send gate: frequency cap 3 per 1d (rules.max_sends_per_number) reached (3 sends)"
        )

    def test_sends_older_than_the_cap_do_not_count(self) -> None:
        assert one(lead(1), GateRules(caps=(THREE_A_DAY,)), sends(1, 2, 25)) == SEND

    def test_the_leads_own_state_caps_apply(self) -> None:
        state = Cap(1, DAY, "calling_hours: Florida")
        verdict = one(lead(1, caps=(state,)), GateRules(), sends(3))
        assert (verdict.action, verdict.rule) == (Action.WAIT, FREQUENCY_RULE)
        assert verdict.note is not None and "calling_hours: Florida" in verdict.note

    def test_leads_sent_earlier_in_the_claim_count(self) -> None:
        """The duplicate rule is per agent and off here: the cap still stops the third."""
        rules = GateRules(caps=(Cap(2, DAY),))
        verdicts = judge([lead(1), lead(2), lead(3), lead(4, OTHER)], [], rules, NOW)
        assert [v.action for v in verdicts] == [Action.SEND, Action.SEND, Action.WAIT, Action.SEND]

    def test_a_lead_held_back_does_not_count_against_the_next(self) -> None:
        rules = GateRules(caps=(Cap(1, DAY),))
        verdicts = judge([lead(1, dnc=True), lead(2)], [], rules, NOW)
        assert [v.action for v in verdicts] == [Action.SKIP, Action.SEND]

    def test_no_number_no_cap(self) -> None:
        assert one(lead(1, None), GateRules(caps=(Cap(1, DAY),)), sends(1)) == SEND


class TestOrder:
    """The first check that objects decides; the permanent reasons come first."""

    def test_stopped_before_everything(self) -> None:
        rules = GateRules(consent=CONSENT, caps=(Cap(1, DAY),))
        numbers = NumberFacts(suppressed={PHONE: LISTED}, sends={PHONE: [NOW]})
        verdict = one(lead(1, dnc=True, stopped="record deleted"), rules, numbers)
        assert verdict.rule == STOPPED_RULE

    def test_do_not_call_before_the_list(self) -> None:
        verdict = one(lead(1, dnc=True), GateRules(), NumberFacts(suppressed={PHONE: LISTED}))
        assert verdict.rule == DO_NOT_CALL_RULE

    def test_the_list_before_consent(self) -> None:
        verdict = one(lead(1), GateRules(consent=CONSENT), NumberFacts(suppressed={PHONE: LISTED}))
        assert verdict.rule == SUPPRESSION_RULE

    def test_consent_before_a_further_rule(self) -> None:
        def later(_lead: Candidate, now: datetime) -> Verdict:
            return Verdict.wait("test", "later", now + DAY)

        verdict = one(lead(1), GateRules(consent=CONSENT, extra=(later,)))
        assert verdict.rule == CONSENT_RULE

    def test_a_duplicate_is_skipped_rather_than_left_waiting_for_a_cap(self) -> None:
        rules = GateRules(duplicate_window=DAY, caps=(Cap(1, DAY),))
        rivals = [Rival(9, PHONE, LeadState.ACCEPTED, NOW - timedelta(hours=1))]
        [verdict] = judge([lead(10)], rivals, rules, NOW, sends(1))
        assert verdict.rule == DUPLICATE_RULE


class TestDialInputs:
    def test_a_sent_lead_carries_its_inputs(self) -> None:
        given = NOW - timedelta(days=30)
        rules = GateRules(
            duplicate_window=DAY, consent=CONSENT, caps=(THREE_A_DAY, Cap(10, timedelta(days=30)))
        )
        evidence = {"rule": "08:00-21:00 mon-sun", "zones": ["America/New_York"]}
        candidate = lead(1, consent=given.isoformat(), calling_hours=evidence)
        [decision] = decide([candidate], [], rules, NOW, sends(2, 48))
        assert decision.verdict == SEND
        assert decision.inputs == {
            "do_not_call": False,
            "consent": {
                "rule": "Consent_At__c (datetime, lapsing after 365d)",
                "value": given.isoformat(),
                "age_seconds": 30 * 86400.0,
            },
            "suppression": {"checked": True, "listed": False},
            "frequency": [
                {
                    "cap": "3 per 1d (rules.max_sends_per_number)",
                    "count": 3,
                    "per_seconds": 86400,
                    "sent": 1,
                },
                {
                    "cap": "10 per 30d (rules.max_sends_per_number)",
                    "count": 10,
                    "per_seconds": 2592000,
                    "sent": 2,
                },
            ],
            "duplicate_window_seconds": 86400,
            "calling_hours": evidence,
        }

    def test_default_rules(self) -> None:
        [decision] = decide([lead(1)], [], GateRules(), NOW, NumberFacts())
        assert decision.inputs is not None and set(decision.inputs) == KEYS
        assert decision.inputs["consent"] is None
        assert decision.inputs["calling_hours"] is None
        assert decision.inputs["frequency"] == []
        assert decision.inputs["duplicate_window_seconds"] == 0

    def test_a_checkbox_consent_has_no_age(self) -> None:
        rules = GateRules(consent=ConsentRule("Consent__c", ConsentKind.BOOLEAN))
        [decision] = decide([lead(1, consent="true")], [], rules, NOW, NumberFacts())
        assert decision.inputs is not None
        assert decision.inputs["consent"] == {
            "rule": "Consent__c (boolean)",
            "value": "true",
            "age_seconds": None,
        }

    def test_a_do_not_call_lead_sent_by_an_opted_out_sync_says_so(self) -> None:
        rules = GateRules(respect_do_not_call=False)
        [decision] = decide([lead(1, dnc=True)], [], rules, NOW, NumberFacts())
        assert decision.inputs is not None and decision.inputs["do_not_call"] is True

    def test_the_list_unread_or_no_number_is_not_checked(self) -> None:
        [unread] = decide([lead(1)], [], GateRules(), NOW)
        [no_number] = decide([lead(2, None)], [], GateRules(), NOW, NumberFacts())
        for decision in (unread, no_number):
            assert decision.inputs is not None
            assert decision.inputs["suppression"] == {"checked": False, "listed": False}

    def test_the_count_includes_sends_earlier_in_the_claim(self) -> None:
        rules = GateRules(caps=(THREE_A_DAY,))
        decisions = decide([lead(1), lead(2)], [], rules, NOW, sends(1))
        counts = [d.inputs["frequency"][0]["sent"] for d in decisions if d.inputs is not None]
        assert counts == [1, 2]

    def test_held_back_leads_have_no_inputs(self) -> None:
        [decision] = decide([lead(1, dnc=True)], [], GateRules(), NOW, NumberFacts())
        assert decision.inputs is None

    def test_equal_inputs_are_shared_so_a_claim_serialises_them_once(self) -> None:
        first, second, other = decide(
            [lead(1), lead(2, OTHER), lead(3, None)], [], GateRules(), NOW, NumberFacts()
        )
        assert first.inputs is second.inputs
        assert other.inputs is not first.inputs  # no number: the list was not checked
