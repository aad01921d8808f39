"""Reading a call-outcome webhook body: which lead (the correlation value), what happened."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from syncd.config.calls import CallPathsConfig
from syncd.domain.call_outcome import (
    CALL_KEY_CHARS,
    CallReading,
    NotRead,
    ReadingRules,
    body_digest,
    read_call,
)
from syncd.domain.call_ref import make_ref

SECRET = b"s" * 32
SF_ID = "00Q5e00000AbCdEFGH"
LEAD_ID = 42
REF = make_ref(SECRET, SF_ID, LEAD_ID)

#: The example payload of docs/call-outcomes.md, with a genuine ref.
EXAMPLE: dict[str, Any] = {
    "event": "call.completed",
    "callId": "call_5f0c2a7e9b1d",
    "batchId": "batch_3c9e1f",
    "lead": {
        "salesforceId": SF_ID,
        "phoneNumber": "+14155550123",
        "customData": {"syncdRef": REF},
    },
    "call": {
        "outcome": "answered",
        "disposition": "interested",
        "durationSeconds": 74,
        "startedAt": "2026-12-07T16:01:02Z",
        "endedAt": "2026-12-07T16:02:16Z",
        "recordingUrl": "https://recordings.example/call_5f0c2a7e9b1d",
    },
}


def rules(**overrides: Any) -> ReadingRules:
    values: dict[str, Any] = {
        "secret": SECRET,
        "key": "syncdRef",
        "paths": CallPathsConfig().model_dump(),
        "disposition_map": {"Interested": "Qualified", "DNC": "do_not_call"},
        "opt_out_dispositions": ["do_not_call", "Opt_Out"],
        **overrides,
    }
    return ReadingRules.build(**values)


def payload(change: Any = None) -> str:
    body = copy.deepcopy(EXAMPLE)
    if change is not None:
        change(body)
    return json.dumps(body)


def reading(body: str, **overrides: Any) -> CallReading:
    result = read_call(body, rules(**overrides))
    assert isinstance(result, CallReading), result
    return result


def not_read(body: str, **overrides: Any) -> NotRead:
    result = read_call(body, rules(**overrides))
    assert isinstance(result, NotRead), result
    return result


class TestTheExample:
    def test_the_example_payload_reads_into_one_outcome(self) -> None:
        """Every default path reads the example; the map turns interested into Qualified."""
        got = reading(payload())
        assert (got.lead_id, got.salesforce_id) == (LEAD_ID, SF_ID)
        assert got.call_key == "call_5f0c2a7e9b1d"
        assert (got.outcome, got.raw_disposition, got.disposition) == (
            "answered",
            "interested",
            "Qualified",
        )
        assert got.duration_seconds == 74
        assert got.started_at == datetime(2026, 12, 7, 16, 1, 2, tzinfo=UTC)
        assert got.ended_at == datetime(2026, 12, 7, 16, 2, 16, tzinfo=UTC)
        assert got.recording_url == "https://recordings.example/call_5f0c2a7e9b1d"
        assert not got.opt_out
        assert got.notes == ()


class TestCorrelation:
    def test_the_key_is_found_nested_deep_in_a_list(self) -> None:
        """The key may sit anywhere: here four levels down, inside a list."""

        def bury(body: dict[str, Any]) -> None:
            del body["lead"]
            body["meta"] = {"attempts": [{"x": 1}, {"context": {"vars": [{"syncdRef": REF}]}}]}

        assert reading(payload(bury)).lead_id == LEAD_ID

    def test_a_forged_mac_matches_no_lead(self) -> None:
        forged = f"{SF_ID}.{LEAD_ID}.{'0' * 16}"
        got = not_read(payload(lambda b: b["lead"]["customData"].update(syncdRef=forged)))
        assert got.status == "unmatched"
        assert "MAC does not match" in got.detail

    def test_another_lead_id_under_the_same_mac_matches_nothing(self) -> None:
        altered = REF.replace(f".{LEAD_ID}.", f".{LEAD_ID + 1}.")
        got = not_read(payload(lambda b: b["lead"]["customData"].update(syncdRef=altered)))
        assert got.status == "unmatched"

    def test_a_ref_made_with_another_secret_matches_nothing(self) -> None:
        assert not_read(payload(), secret=b"t" * 32).status == "unmatched"

    def test_an_absent_key_says_so(self) -> None:
        got = not_read(payload(lambda b: b["lead"].pop("customData")))
        assert got.status == "unmatched"
        assert got.detail.startswith("no syncdRef in the payload")

    def test_a_value_that_is_no_ref_says_so(self) -> None:
        got = not_read(payload(lambda b: b["lead"]["customData"].update(syncdRef=["x"])))
        assert got.detail == "syncdRef found but it is not a correlation value"

    def test_the_first_genuine_value_wins_over_forged_ones_before_it(self) -> None:
        """A forged value earlier in the body does not hide the genuine one."""
        other = make_ref(SECRET, SF_ID, 7)

        def both(body: dict[str, Any]) -> None:
            body["a"] = {"syncdRef": f"{SF_ID}.99.{'f' * 16}"}
            body["b"] = [{"syncdRef": other}]

        body = json.loads(payload(both))
        ordered = {"a": body.pop("a"), "b": body.pop("b"), **body}
        assert reading(json.dumps(ordered)).lead_id == 7

    def test_a_configured_key_name_is_the_one_looked_for(self) -> None:
        got = not_read(payload(), key="otherRef")
        assert got.detail.startswith("no otherRef")


class TestUnreadable:
    @pytest.mark.parametrize("body", ["", "not json", "{", "<xml/>", "[" * 100_000])
    def test_a_body_that_is_not_json_is_unreadable(self, body: str) -> None:
        got = not_read(body)
        assert (got.status, got.detail) == ("unreadable", "the body is not JSON")

    def test_paths_that_find_neither_outcome_nor_disposition_make_it_unreadable(self) -> None:
        """The lead is known (kept for the record), the call is not."""
        got = not_read(payload(lambda b: b.update(call={"result": "answered"})))
        assert got.status == "unreadable"
        assert "$.call.outcome" in got.detail
        assert got.lead == (SF_ID, LEAD_ID)

    def test_an_outcome_alone_is_enough(self) -> None:
        got = reading(payload(lambda b: b["call"].pop("disposition")))
        assert (got.outcome, got.disposition, got.opt_out) == ("answered", None, False)

    def test_json_that_is_not_an_object_names_no_lead(self) -> None:
        assert not_read("[1, 2, 3]").status == "unmatched"
        assert not_read('"syncdRef"').status == "unmatched"


class TestDispositions:
    def test_the_map_matches_ignoring_case(self) -> None:
        got = reading(payload(lambda b: b["call"].update(disposition="INTERESTED")))
        assert (got.raw_disposition, got.disposition) == ("INTERESTED", "Qualified")

    def test_an_unmapped_disposition_passes_as_it_is(self) -> None:
        got = reading(payload(lambda b: b["call"].update(disposition="callback")))
        assert got.disposition == "callback"

    @pytest.mark.parametrize("raw", ["do_not_call", "DNC", "opt_out", "OPT_OUT"])
    def test_an_opt_out_disposition_after_the_map_is_flagged(self, raw: str) -> None:
        assert reading(payload(lambda b: b["call"].update(disposition=raw))).opt_out

    def test_a_disposition_that_is_not_text_is_left_empty_with_a_note(self) -> None:
        got = reading(payload(lambda b: b["call"].update(disposition={"code": 3})))
        assert got.disposition is None and not got.opt_out
        assert got.notes == ("disposition is not text (dict): left empty",)


class TestValues:
    @pytest.mark.parametrize(("value", "seconds"), [(74, 74), (74.6, 75), ("  12 ", 12), ("0", 0)])
    def test_a_duration_from_a_number_or_numeric_text(self, value: object, seconds: int) -> None:
        got = reading(payload(lambda b: b["call"].update(durationSeconds=value)))
        assert got.duration_seconds == seconds

    @pytest.mark.parametrize("value", [-5, "-5", 10**9, "long", True, [74], "1e3", None])
    def test_a_bad_duration_is_left_empty_with_a_note(self, value: object) -> None:
        got = reading(payload(lambda b: b["call"].update(durationSeconds=value)))
        assert got.duration_seconds is None
        assert (len(got.notes) == 1) is (value is not None)

    def test_times_with_an_offset_are_read_in_utc(self) -> None:
        got = reading(payload(lambda b: b["call"].update(startedAt="2026-12-07T17:01:02+01:00")))
        assert got.started_at == datetime(2026, 12, 7, 16, 1, 2, tzinfo=UTC)

    @pytest.mark.parametrize("value", ["2026-12-07T16:01:02", "yesterday", 1765123262, ""])
    def test_a_time_without_offset_or_not_iso_is_left_empty_with_a_note(
        self, value: object
    ) -> None:
        got = reading(payload(lambda b: b["call"].update(endedAt=value)))
        assert got.ended_at is None
        assert len(got.notes) == 1 and got.notes[0].startswith("end ")

    @pytest.mark.parametrize(
        "value", ["javascript:alert(1)", "ftp://x/y", "https:///x", "https://a b", 7]
    )
    def test_a_recording_link_must_be_http_or_https(self, value: object) -> None:
        got = reading(payload(lambda b: b["call"].update(recordingUrl=value)))
        assert got.recording_url is None
        assert got.notes == ("recording URL is not an http(s) link: left empty",)

    def test_long_text_is_cut_to_its_column(self) -> None:
        got = reading(payload(lambda b: b["call"].update(outcome="x" * 500)))
        assert got.outcome == "x" * 100


class TestCallKey:
    def test_a_long_call_id_is_cut(self) -> None:
        got = reading(payload(lambda b: b.update(callId="c" * 200)))
        assert got.call_key == "c" * CALL_KEY_CHARS

    def test_a_numeric_call_id_is_its_text(self) -> None:
        assert reading(payload(lambda b: b.update(callId=12345))).call_key == "12345"

    def test_without_a_call_id_the_key_is_the_body_digest(self) -> None:
        body = payload(lambda b: b.pop("callId"))
        assert reading(body).call_key == body_digest(body)
        assert read_call(body, rules(), digest="d" * 64).call_key == "d" * 64  # type: ignore[union-attr]

    def test_a_path_not_configured_is_not_read(self) -> None:
        paths = {**CallPathsConfig().model_dump(), "call_id": None, "recording_url": None}
        got = reading(payload(), paths=paths)
        assert got.recording_url is None
        assert len(got.call_key) == 64


def test_a_bad_path_name_is_refused_when_the_rules_are_built() -> None:
    with pytest.raises(ValueError, match="unknown values"):
        rules(paths={"outcome": "$.x", "colour": "$.y"})
