"""Planning what an answer does to a batch: every row of the SimZ answer table as plain values."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from syncd.domain.backoff import BackoffPolicy
from syncd.domain.outcome import (
    NO_SEND,
    SCOPE_AGENT,
    SCOPE_API_KEY,
    TRUNCATED,
    Counts,
    Limits,
    OutcomePlan,
    Reply,
    Step,
    bounded,
    plan_abandoned,
    plan_outcome,
    plan_unrecorded,
)
from syncd.domain.responses import classify, maybe_sent, nothing_sent
from syncd.domain.states import LeadState

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
POLICY = BackoffPolicy(timedelta(seconds=10), timedelta(minutes=10), 2.0)
KEY = "fp0123456789"


@dataclass(frozen=True)
class FakeLead:
    id: int
    attempts: int = 0


def leads(count: int, attempts: int = 0) -> list[FakeLead]:
    return [FakeLead(100 + i, attempts) for i in range(count)]


def answer(status: int, body: object = None, retry_after: str | None = None) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
    return Reply(status, raw, retry_after, duration=0.25)


def plan(
    reply: Reply | None,
    batch: list[FakeLead],
    *,
    max_attempts: int = 5,
    jitter: float = 0.5,
    decision_reason: str | None = None,
) -> OutcomePlan:
    if reply is not None:
        decision = classify(reply.status, reply.body, len(batch))
    elif decision_reason == "maybe":
        decision = maybe_sent("ReadTimeout: timed out")
    else:
        decision = nothing_sent("ConnectError: refused")
    return plan_outcome(
        decision,
        batch,
        agent_id="agt_1",
        credential=KEY,
        reply=reply,
        limits=Limits(max_attempts, POLICY, jitter),
        now=NOW,
    )


class TestOk:
    def test_all_accepted(self) -> None:
        """200 without errors: every lead accepted with SimZ's batchId; pauses cleared."""
        result = plan(answer(200, {"success": True, "batchId": "b1", "accepted": 3}), leads(3))
        [move] = result.moves
        assert (move.lead_ids, move.target, move.simz_batch_id) == (
            (100, 101, 102),
            LeadState.ACCEPTED,
            "b1",
        )
        assert result.rejections == ()
        assert result.clear_pauses and result.pause is None
        assert result.step is Step.CONTINUE
        assert result.counts == Counts(accepted=3)
        assert (result.batch.outcome, result.batch.http_status) == ("accepted", 200)
        assert (result.batch.accepted, result.batch.rejected, result.batch.simz_batch_id) == (
            3,
            0,
            "b1",
        )
        assert result.batch.duration == 0.25
        assert result.error is None

    def test_rejections_by_index(self) -> None:
        """errors[] rejects the leads at their index with their code and message."""
        body = {
            "success": True,
            "batchId": "b2",
            "accepted": 2,
            "rejected": 1,
            "errors": [{"index": 1, "code": "INVALID_PHONE_NUMBER", "message": "bad"}],
        }
        result = plan(answer(200, body), leads(3))
        assert result.moves[0].lead_ids == (100, 102)
        [rejected] = result.rejections
        assert (rejected.lead_id, rejected.code, rejected.message) == (
            101,
            "INVALID_PHONE_NUMBER",
            "bad",
        )
        assert (result.rejection_reason, result.rejection_batch_id) == ("rejected by SimZ", "b2")
        assert result.counts == Counts(accepted=2, rejected=1)

    def test_null_batch_id(self) -> None:
        """A null batchId is allowed and stored as nothing."""
        result = plan(answer(200, {"success": True, "batchId": None}), leads(2))
        assert result.moves[0].simz_batch_id is None
        assert result.batch.simz_batch_id is None
        assert result.batch.outcome == "accepted"

    def test_count_mismatch_still_accepts_with_a_warning(self) -> None:
        """Counts that disagree with errors[] still accept; the plan carries the warning."""
        reply = answer(200, {"success": True, "batchId": "b", "accepted": 7})
        result = plan(reply, leads(2))
        assert result.counts == Counts(accepted=2)
        assert result.warnings == ("SimZ reported accepted=7 but errors[] leaves 2",)

    def test_unreadable_200_is_uncertain(self) -> None:
        """A 200 whose body cannot be read: uncertain, next agent, an error reported."""
        result = plan(answer(200, b"<html>oops</html>"), leads(2))
        [move] = result.moves
        assert (move.target, move.error_code) == (LeadState.UNCERTAIN, "HTTP_200")
        assert result.batch.excerpt == "<html>oops</html>"
        assert result.step is Step.NEXT_AGENT
        assert result.counts == Counts(uncertain=2)
        assert result.error and "unreadable" in result.error

    def test_long_vendor_strings_are_bounded(self) -> None:
        """An over-long batchId, code or message is cut to its column with a marker."""
        body = {
            "success": True,
            "batchId": "b" * 300,
            "errors": [{"index": 0, "code": "C" * 150, "message": "m" * 5000}],
        }
        result = plan(answer(200, body), leads(2))
        batch_id = result.batch.simz_batch_id
        assert batch_id is not None and len(batch_id) == 255 and batch_id.endswith(TRUNCATED)
        assert result.moves[0].simz_batch_id == batch_id == result.rejection_batch_id
        [rejected] = result.rejections
        assert rejected.code is not None and len(rejected.code) == 100
        assert rejected.code.endswith(TRUNCATED)
        assert rejected.message is not None and len(rejected.message) == 2000
        assert len(result.batch.excerpt or "") == 500


class TestNothingQueued4xx:
    @pytest.mark.parametrize("status", [400, 413, 422])
    def test_split_in_halves(self, status: int) -> None:
        """400, 413, 422 to several leads: the batch is split in two halves, in order."""
        result = plan(answer(status, {"code": "INVALID_REQUEST"}), leads(5))
        assert result.halves == ((100, 101), (102, 103, 104))
        assert result.moves == () and result.rejections == ()
        assert (result.batch.outcome, result.step) == ("split", Step.CONTINUE)
        assert result.counts == Counts()

    def test_single_lead_is_rejected(self) -> None:
        """A single lead answered so is rejected with the body's code and message."""
        body = {"code": "INVALID_REQUEST", "message": "bad lead"}
        result = plan(answer(400, body), leads(1))
        [rejected] = result.rejections
        assert (rejected.lead_id, rejected.code, rejected.message) == (
            100,
            "INVALID_REQUEST",
            "bad lead",
        )
        assert result.halves == ()
        assert (result.batch.outcome, result.batch.accepted, result.batch.rejected) == (
            "rejected",
            0,
            1,
        )
        assert result.counts == Counts(rejected=1)

    def test_single_lead_without_code(self) -> None:
        """Without a body code, the lead's code is the HTTP status."""
        result = plan(answer(413, b""), leads(1))
        assert result.rejections[0].code == "HTTP_413"


class TestPauses:
    def test_401_pauses_the_key(self) -> None:
        """401: leads back to queued (no attempt used), the API key paused with backoff."""
        result = plan(answer(401, {"code": "UNAUTHORIZED"}), leads(2))
        [move] = result.moves
        assert (move.target, move.count_attempt, move.clear_batch) == (
            LeadState.QUEUED,
            False,
            True,
        )
        pause = result.pause
        assert pause is not None
        assert (pause.scope, pause.key, pause.http_status) == (SCOPE_API_KEY, KEY, 401)
        assert pause.ends(1) == NOW + timedelta(seconds=10)
        assert pause.ends(2) == NOW + timedelta(seconds=20)
        assert (result.batch.outcome, result.step) == ("paused", Step.STOP_KEY)
        assert result.counts == Counts(requeued=2)
        assert result.error and "401" in result.error

    def test_402_pauses_the_key_with_backoff(self) -> None:
        """402: the API key paused, the pause growing with each failure up to the maximum."""
        result = plan(answer(402, {"code": "INSUFFICIENT_CREDITS"}), leads(1))
        pause = result.pause
        assert pause is not None and (pause.scope, pause.http_status) == (SCOPE_API_KEY, 402)
        assert pause.ends(3) == NOW + timedelta(seconds=40)
        assert pause.ends(50) == NOW + timedelta(minutes=10)
        assert result.step is Step.STOP_KEY

    def test_404_pauses_the_agent(self) -> None:
        """404: only this agent paused; delivery goes on with the next agent."""
        result = plan(answer(404, {"code": "AGENT_NOT_FOUND"}), leads(2))
        pause = result.pause
        assert pause is not None
        assert (pause.scope, pause.key) == (SCOPE_AGENT, f"{KEY}/agt_1")
        assert result.step is Step.NEXT_AGENT
        assert result.moves[0].target is LeadState.QUEUED


class TestRetries:
    def test_429_retry_after_seconds(self) -> None:
        """429 with Retry-After seconds: queued until then, one attempt used, key paused."""
        result = plan(answer(429, {"code": "RATE_LIMITED"}, retry_after="30"), leads(2))
        queued, failed = result.moves
        assert queued.lead_ids == (100, 101) and failed.lead_ids == ()
        assert (queued.target, queued.count_attempt, queued.clear_batch) == (
            LeadState.QUEUED,
            True,
            True,
        )
        assert queued.next_attempt_at == NOW + timedelta(seconds=30)
        assert queued.error_code == "RATE_LIMITED"
        pause = result.pause
        assert pause is not None
        assert (pause.scope, pause.key, pause.http_status) == (SCOPE_API_KEY, KEY, 429)
        assert pause.ends(1) == pause.ends(9) == NOW + timedelta(seconds=30)
        assert (result.batch.outcome, result.step) == ("retry", Step.STOP_KEY)
        assert result.counts == Counts(requeued=2)
        assert result.error is None

    def test_429_retry_after_http_date(self) -> None:
        """429 with an HTTP date waits until that date."""
        when = format_datetime(NOW + timedelta(minutes=2), usegmt=True)
        result = plan(answer(429, retry_after=when), leads(1))
        assert result.moves[0].next_attempt_at == NOW + timedelta(minutes=2)

    def test_429_without_retry_after(self) -> None:
        """429 without Retry-After: the jittered backoff (draw 0.5 of 10 s)."""
        result = plan(answer(429), leads(1))
        assert result.moves[0].next_attempt_at == NOW + timedelta(seconds=5)

    @pytest.mark.parametrize(
        "value", ["99999999999999", "9" * 5000, "²", "-5", "soon", "1e9", "Mon, 99 Foo"]
    )
    def test_429_hostile_retry_after(self, value: str) -> None:
        """An absurd or garbage Retry-After never raises; a 429 stays "nothing queued"."""
        result = plan(answer(429, retry_after=value), leads(1))
        [queued, _failed] = result.moves
        assert queued.target is LeadState.QUEUED
        assert queued.next_attempt_at is not None
        assert NOW <= queued.next_attempt_at <= NOW + timedelta(hours=1)

    def test_429_huge_retry_after_is_capped(self) -> None:
        """A Retry-After of years waits at most an hour (or the backoff maximum)."""
        result = plan(answer(429, retry_after="99999999999999"), leads(1))
        assert result.moves[0].next_attempt_at == NOW + timedelta(hours=1)

    def test_503_backs_off(self) -> None:
        """503: queued after the jittered backoff, no pause, next agent."""
        result = plan(answer(503, {"code": "BILLING_CHECK_FAILED"}), leads(2, attempts=1))
        queued = result.moves[0]
        # Second failure: cap 20 s, draw 0.5.
        assert queued.next_attempt_at == NOW + timedelta(seconds=10)
        assert queued.error_code == "BILLING_CHECK_FAILED"
        assert result.pause is None
        assert (result.batch.outcome, result.step) == ("retry", Step.NEXT_AGENT)

    def test_nothing_sent_backs_off(self) -> None:
        """Connection refused (nothing sent): queued with backoff, NO_SEND, stop this key."""
        result = plan(None, leads(2))
        queued = result.moves[0]
        assert (queued.target, queued.error_code) == (LeadState.QUEUED, NO_SEND)
        assert queued.next_attempt_at == NOW + timedelta(seconds=5)
        assert (result.batch.outcome, result.batch.http_status) == ("retry", None)
        assert "ConnectError" in (result.batch.excerpt or "")
        assert result.step is Step.STOP_KEY
        assert result.error and "nothing sent" in result.error

    def test_attempt_budget_spent_fails(self) -> None:
        """Leads whose last allowed attempt this was become failed; the others retry."""
        batch = [FakeLead(1, attempts=4), FakeLead(2, attempts=1)]
        result = plan(answer(503), batch, max_attempts=5)
        queued, failed = result.moves
        assert queued.lead_ids == (2,) and failed.lead_ids == (1,)
        assert (failed.target, failed.count_attempt, failed.next_attempt_at) == (
            LeadState.FAILED,
            True,
            None,
        )
        assert failed.reason.startswith("attempt budget (5) spent; last: 503")
        assert result.failure_reason == failed.reason
        assert result.counts == Counts(requeued=1, failed=1)


class TestUncertain:
    @pytest.mark.parametrize("status", [500, 502, 301, 302, 418 + 1000])
    def test_unexpected_status_is_uncertain(self, status: int) -> None:
        """Other 5xx, 3xx and unexpected statuses: uncertain, alert, next agent."""
        result = plan(answer(status, b"x"), leads(2))
        [move] = result.moves
        assert (move.target, move.error_code) == (LeadState.UNCERTAIN, f"HTTP_{status}")
        assert move.count_attempt is False and move.clear_batch is False
        assert (result.batch.outcome, result.step) == ("uncertain", Step.NEXT_AGENT)
        assert result.counts == Counts(uncertain=2)

    def test_maybe_sent_is_uncertain(self) -> None:
        """Read timeout, reset, write failure: uncertain and this key stops for the cycle."""
        result = plan(None, leads(3), decision_reason="maybe")
        [move] = result.moves
        assert (move.target, move.error_code) == (LeadState.UNCERTAIN, None)
        assert (result.batch.outcome, result.batch.http_status) == ("uncertain", None)
        assert result.step is Step.STOP_KEY
        assert result.error and "outcome unknown" in result.error


class TestPlainValues:
    def test_plan_is_immutable(self) -> None:
        """A plan is frozen: applying it cannot change it."""
        result = plan(answer(200, {"success": True}), leads(1))
        with pytest.raises(FrozenInstanceError):
            result.step = Step.STOP_KEY  # type: ignore[misc]

    def test_excerpt_of_a_long_body_is_marked(self) -> None:
        """A body longer than the excerpt is cut with the marker; a short one is kept."""
        result = plan(answer(500, b"e" * 10_000), leads(1))
        assert result.batch.excerpt == "e" * (500 - len(TRUNCATED)) + TRUNCATED
        assert plan(answer(500, b"short"), leads(1)).batch.excerpt == "short"

    def test_bounded(self) -> None:
        """Short strings pass; long ones end in the marker at exactly the limit."""
        assert bounded(None, 10) is None
        assert bounded("abc", 100) == "abc"
        cut = bounded("x" * 200, 100)
        assert cut is not None and len(cut) == 100 and cut.endswith(TRUNCATED)


class TestNoAnswerRecorded:
    def test_unrecorded_answer_makes_the_batch_uncertain(self) -> None:
        """The POST happened: the leads become uncertain, the reason on the batch row."""
        batch = leads(2)
        result = plan_unrecorded(classify(200, b"{}", 2), batch)
        reason = "answer could not be recorded (accepted by SimZ)"
        assert (result.batch.outcome, result.batch.http_status, result.batch.excerpt) == (
            "uncertain",
            None,
            reason,
        )
        [move] = result.moves
        assert (move.lead_ids, move.target, move.reason) == (
            (100, 101),
            LeadState.UNCERTAIN,
            reason,
        )
        assert not (move.clear_batch or move.count_attempt or move.set_error)
        assert result.counts == Counts(uncertain=2) and not result.keep_batch_row

    def test_abandoned_batch_goes_back_to_the_queue(self) -> None:
        """Nothing sent: queued again with no attempt used, the batch row closed abandoned."""
        result = plan_abandoned(leads(3), "stop requested")
        [move] = result.moves
        assert (move.target, move.reason, move.clear_batch) == (
            LeadState.QUEUED,
            "stop requested",
            True,
        )
        assert not (move.count_attempt or move.set_error) and move.next_attempt_at is None
        assert (result.batch.outcome, result.batch.excerpt) == ("abandoned", None)
        assert result.counts == Counts(requeued=3) and not result.keep_batch_row

    def test_an_abandoned_split_part_keeps_its_parent_row(self) -> None:
        """The parent batch row is closed split already: it is left as it is."""
        assert plan_abandoned(leads(1), "paused", split_part=True).keep_batch_row
