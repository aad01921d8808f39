"""A dial decision's inputs in words and flattened, and the other lines of a lead's history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from syncd.domain.decision_words import (
    age_words,
    decision_words,
    flatten_inputs,
    input_columns,
)
from syncd.services import explain_words as words

FULL: dict[str, Any] = {
    "do_not_call": False,
    "consent": {
        "rule": "ConsentDate__c (date, lapsing after 365d)",
        "value": "2026-01-02",
        "age_seconds": 40 * 86400 + 3600.0,
    },
    "suppression": {"checked": True, "listed": False},
    "frequency": [
        {
            "cap": "3 per 24h (rules.max_sends_per_number)",
            "count": 3,
            "per_seconds": 86400,
            "sent": 1,
        }
    ],
    "duplicate_window_seconds": 86400,
    "calling_hours": {
        "rule": "08:00-21:00 mon-sun",
        "zones": ["America/New_York"],
        "zone_source": "phone",
        "local_time": "2026-01-05T08:00:00-05:00",
    },
}


def test_a_full_decision_reads_as_one_sentence() -> None:
    assert "; ".join(decision_words(FULL)) == (
        "DoNotCall not set; "
        "consent ConsentDate__c = 2026-01-02, 40 days old, within 365d; "
        "number not on the suppression list; "
        "no other send of this number to the agent within 24h; "
        "sends of this number in the last 24h: 1 of 3 allowed; "
        "local time 08:00 Monday in America/New_York (from the phone number), "
        "inside 08:00-21:00 mon-sun"
    )


def test_rules_that_were_off_say_so() -> None:
    off = {
        "do_not_call": False,
        "consent": None,
        "suppression": {"checked": True, "listed": False},
        "frequency": [],
        "duplicate_window_seconds": 0,
        "calling_hours": None,
    }
    assert decision_words(off) == [
        "DoNotCall not set",
        "consent rule off",
        "number not on the suppression list",
        "duplicate-phone window off",
        "no frequency cap",
        "no calling hours",
    ]


def test_missing_keys_read_not_recorded_and_unknown_keys_are_named() -> None:
    said = decision_words({"do_not_call": False, "org": "00D000000000001"})
    assert said == [
        "DoNotCall not set",
        "consent not recorded",
        "suppression list not recorded",
        "duplicate-phone window not recorded",
        "frequency caps not recorded",
        "calling hours not recorded",
        'org = "00D000000000001"',
    ]


@pytest.mark.parametrize(
    "inputs",
    [
        None,
        [],
        "text",
        {"consent": "yes", "suppression": [1], "frequency": {"x": 1}, "calling_hours": 3},
        {"consent": {}, "suppression": {}, "frequency": [None, {"sent": "a"}], "calling_hours": {}},
        {"duplicate_window_seconds": "1d", "do_not_call": None},
        {"duplicate_window_seconds": 10**20, "calling_hours": {"local_time": "noon"}},
        {"consent": {"rule": 5, "value": 7, "age_seconds": True}},
    ],
)
def test_odd_values_are_quoted_never_fatal(inputs: Any) -> None:
    """Rows written by another version, or by hand: every clause is a string, none is lost."""
    said = decision_words(inputs)
    assert said and all(isinstance(clause, str) and clause for clause in said)


def test_odd_values_keep_what_was_recorded() -> None:
    said = decision_words({"duplicate_window_seconds": "1d", "consent": "yes"})
    assert 'duplicate-phone window recorded as "1d"' in said
    assert 'consent recorded as "yes"' in said


def test_a_boolean_consent_and_a_listed_number() -> None:
    said = decision_words(
        {
            "consent": {"rule": "Consent__c (boolean)", "value": "true"},
            "suppression": {"checked": True, "listed": True},
            "do_not_call": True,
        }
    )
    assert said[:3] == [
        "DoNotCall set",
        "consent Consent__c = true",
        "number ON the suppression list",
    ]


def test_a_state_cap_names_its_source_and_state_rules_their_origin() -> None:
    said = decision_words(
        {
            "frequency": [
                {"cap": "3 per 24h (FL)", "count": 3, "per_seconds": 86400, "sent": 2},
                {
                    "cap": "5 per 7d (rules.max_sends_per_number)",
                    "count": 5,
                    "per_seconds": 604800,
                    "sent": 0,
                },
            ],
            "calling_hours": {
                "rule": "08:00-20:00 mon-sat",
                "zones": ["America/New_York", "America/Chicago"],
                "zone_source": "field",
                "local_time": "2026-01-10T19:30:00-05:00",
                "profile": "us",
                "states": ["FL"],
                "state_source": "area code",
            },
        }
    )
    assert "sends of this number in the last 24h: 2 of 3 allowed (FL)" in said
    assert "sends of this number in the last 7d: 0 of 5 allowed" in said
    assert (
        "local time 19:30 Saturday in America/New_York, America/Chicago (from the record's "
        "time-zone field), inside 08:00-20:00 mon-sat; state FL (from the area code), us rules"
    ) in said


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "1 minute"),
        (7200, "2 hours"),
        (86400, "1 day"),
        (40 * 86400 + 5, "40 days"),
    ],
)
def test_ages(seconds: float, said: str) -> None:
    assert age_words(seconds) == said


def test_flatten_gives_one_column_per_input() -> None:
    flat = flatten_inputs(FULL)
    assert flat["do_not_call"] == "false"
    assert flat["consent.value"] == "2026-01-02"
    assert flat["suppression.listed"] == "false"
    assert flat["frequency.0.sent"] == "1"
    assert flat["calling_hours.zones"] == "America/New_York"
    assert flat["duplicate_window_seconds"] == "86400"
    off = flatten_inputs({"consent": None, "frequency": [], "calling_hours": None})
    assert off == {"consent": "", "frequency": "", "calling_hours": ""}
    assert flatten_inputs("odd") == {"inputs": "odd"}


def test_columns_put_the_known_inputs_first_in_order() -> None:
    rows = [{"zzz": "1", "calling_hours.rule": "x"}, {"do_not_call": "false", "consent.value": "v"}]
    assert input_columns(rows) == ["do_not_call", "consent.value", "calling_hours.rule", "zzz"]


class TestHistoryLines:
    AT = datetime(2026, 1, 5, 13, 0, 1, tzinfo=UTC)

    def test_transition(self) -> None:
        assert words.transition_words(None, "queued", "polled", None) == "new -> queued: polled"
        assert (
            words.transition_words("queued", "sending", "claimed", 7)
            == "queued -> sending: claimed [batch 7]"
        )

    def test_decision_header_shows_only_the_last_digits(self) -> None:
        header = words.decision_header(7, "agt_1", "3f2a9c1e0b7d4a55", "+12025550123")
        assert header == (
            "dial decision: send to agent agt_1, in batch 7, number ending 0123, "
            "rules version 3f2a9c1e0b7d4a55"
        )
        assert "2025550123" not in header

    def test_batch_answered_in_flight_and_never_posted(self) -> None:
        common: dict[str, Any] = {"batch_id": 7, "agent": "agt_1", "lead_count": 3}
        answered = words.batch_words(
            **common,
            posted_at=self.AT,
            finished_at=self.AT,
            http_status=200,
            outcome="accepted",
            simz_batch_id="b-1",
            accepted=3,
            rejected=0,
        )
        assert answered == (
            "batch 7 to agent agt_1 (3 leads) posted at 2026-01-05T13:00:01Z: SimZ answered "
            "HTTP 200: accepted (SimZ batch id b-1; 3 accepted, 0 rejected), "
            "at 2026-01-05T13:00:01Z"
        )
        in_flight = words.batch_words(
            **common,
            posted_at=self.AT,
            finished_at=None,
            http_status=None,
            outcome=None,
            simz_batch_id=None,
        )
        assert in_flight.endswith("no answer recorded yet")
        lost = words.batch_words(
            **common,
            posted_at=self.AT,
            finished_at=self.AT,
            http_status=None,
            outcome="uncertain",
            simz_batch_id=None,
        )
        assert "no HTTP answer from SimZ: uncertain" in lost
        never = words.batch_words(
            **common,
            posted_at=None,
            finished_at=None,
            http_status=None,
            outcome="abandoned",
            simz_batch_id=None,
        )
        assert never.endswith("claimed, never posted (nothing was sent), closed abandoned")

    def test_operator_action(self) -> None:
        assert (
            words.action_words(
                "ana", "resolve", "sync", "web", "SimZ has it", "uncertain -> accepted"
            )
            == "operator ana: resolve (sync web): SimZ has it (uncertain -> accepted)"
        )

    def test_number_ending(self) -> None:
        assert words.number_ending("+12025550123") == "0123"
        assert words.number_ending(None) is None
        assert words.number_ending("") is None
