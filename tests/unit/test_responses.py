"""Classifying SimZ answers: every row of docs/design.md#simz-answers as plain values."""

from __future__ import annotations

import json

import pytest

from syncd.domain.responses import Handling, classify, maybe_sent, nothing_sent


def body(value: object) -> bytes:
    return json.dumps(value).encode()


class TestOk:
    def test_all_accepted(self) -> None:
        """A 200 without errors accepts every lead and keeps SimZ's batchId."""
        result = classify(200, body({"success": True, "batchId": "b1", "accepted": 3}), 3)
        assert result.action is Handling.RECORD
        assert result.simz_batch_id == "b1"
        assert result.rejections == {}
        assert result.warnings == ()

    def test_rejections_by_index(self) -> None:
        """errors[] entries reject the leads at their index, keeping code and message."""
        answer = {
            "success": True,
            "batchId": None,
            "accepted": 2,
            "rejected": 1,
            "errors": [{"index": 1, "code": "INVALID_PHONE_NUMBER", "message": "bad"}],
        }
        result = classify(200, body(answer), 3)
        assert result.action is Handling.RECORD
        assert result.simz_batch_id is None
        assert list(result.rejections) == [1]
        assert result.rejections[1].code == "INVALID_PHONE_NUMBER"
        assert result.rejections[1].message == "bad"
        assert result.warnings == ()

    def test_out_of_range_and_duplicate_indexes_warn(self) -> None:
        """Bad or repeated indexes are warnings, never a crash, and reject nobody extra."""
        answer = {"errors": [{"index": 7}, {"index": -1}, {"index": 0}, {"index": 0}]}
        result = classify(200, body(answer), 2)
        assert result.action is Handling.RECORD
        assert list(result.rejections) == [0]
        assert len(result.warnings) == 3

    def test_counts_disagreeing_warn(self) -> None:
        """Counts that contradict errors[] are reported as a warning."""
        result = classify(200, body({"accepted": 5, "rejected": 0}), 3)
        assert result.action is Handling.RECORD
        assert any("accepted=5" in w for w in result.warnings)

    def test_empty_object_is_all_accepted(self) -> None:
        """The spec requires no field of a 200, so {} accepts the batch."""
        assert classify(200, b"{}", 4).action is Handling.RECORD

    @pytest.mark.parametrize(
        "raw",
        [
            b"<html>oops</html>",
            b"",
            b"[1, 2]",
            b'"ok"',
            body({"batchId": 12}),
            body({"accepted": "3"}),
            body({"accepted": True}),
            body({"errors": {"index": 0}}),
            body({"errors": [{"index": "0"}]}),
            body({"errors": [5]}),
            body({"success": "yes"}),
            body({"success": False}),
            b"\xff\xfe",
        ],
    )
    def test_unreadable_200_is_uncertain(self, raw: bytes) -> None:
        """A 200 whose body cannot be read makes the batch uncertain."""
        result = classify(200, raw, 2)
        assert result.action is Handling.UNCERTAIN
        assert result.reason.startswith("200")


class TestErrors:
    @pytest.mark.parametrize("status", [400, 405, 408, 409, 413, 415, 422, 451])
    def test_unlisted_4xx_split(self, status: int) -> None:
        """400 and 4xx the table does not list mean nothing was queued: split."""
        result = classify(status, body({"code": "BAD", "message": "no"}), 10)
        assert result.action is Handling.SPLIT
        assert (result.error_code, result.error_message) == ("BAD", "no")

    def test_401_pauses_key(self) -> None:
        """401 pauses the API key."""
        assert classify(401, b"", 1).action is Handling.PAUSE_KEY

    def test_402_pauses_key_with_action_required(self) -> None:
        """402 pauses the key and carries the body's data.actionRequired."""
        answer = {"code": "INSUFFICIENT_CREDITS", "data": {"actionRequired": "Add credits"}}
        result = classify(402, body(answer), 1)
        assert result.action is Handling.PAUSE_KEY
        assert result.action_required == "Add credits"

    def test_402_without_body_still_pauses(self) -> None:
        """A 402 with an unreadable body is still a pause, with no actionRequired."""
        result = classify(402, b"nope", 1)
        assert result.action is Handling.PAUSE_KEY
        assert result.action_required is None

    def test_404_pauses_agent(self) -> None:
        """404 pauses that agent only."""
        assert classify(404, body({"code": "AGENT_NOT_FOUND"}), 1).action is Handling.PAUSE_AGENT

    @pytest.mark.parametrize("status", [429, 503])
    def test_retryable(self, status: int) -> None:
        """429 and 503 say nothing was queued: retry later."""
        assert classify(status, b"", 3).action is Handling.RETRY

    @pytest.mark.parametrize("status", [500, 502, 504, 301, 302, 201, 204, 100, 600])
    def test_other_statuses_uncertain(self, status: int) -> None:
        """Other 5xx, 3xx and unexpected statuses leave the batch uncertain."""
        assert classify(status, b"{}", 3).action is Handling.UNCERTAIN


class TestTransport:
    def test_nothing_sent_retries(self) -> None:
        """A connection that never opened is retried."""
        assert nothing_sent("refused").action is Handling.RETRY

    def test_maybe_sent_uncertain(self) -> None:
        """A request that may have reached SimZ is uncertain."""
        assert maybe_sent("read timeout").action is Handling.UNCERTAIN
