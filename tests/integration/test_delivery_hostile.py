"""Hostile SimZ answers and delivery telemetry, over real HTTP, on SQLite and PostgreSQL.

Over-long vendor strings, an answer that trickles in, the pause gauge across
a renewal and the log events of pauses and spent attempt budgets.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.orm import LeadTransition
from syncd.adapters.simz import key_fingerprint
from syncd.domain.outcome import TRUNCATED
from syncd.metrics import REGISTRY
from syncd.sandbox.simz import SimzEmulator
from syncd.services.state_metrics import refresh_state_metrics
from tests.clock import Clock
from tests.integration.delivery_rows import batches, insert_leads, lead, pauses, states
from tests.integration.operator_rows import make_config
from tests.integration.test_delivery import Harness
from tests.integration.test_delivery import clock as clock
from tests.integration.test_delivery import make_harness as make_harness
from tests.simz_fixtures import SimzFactory


def gauge(scope: str, name: str) -> float | None:
    return REGISTRY.get_sample_value("syncd_paused", {"scope": scope, "name": name})


class TestVendorStrings:
    def test_long_batch_id_is_stored_cut_with_a_marker(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """A batchId over 255 characters still records an accepted batch, cut visibly."""
        harness = make_harness()
        ids = insert_leads(sessions, range(2))
        body = {"success": True, "batchId": "B" * 400, "accepted": 2, "rejected": 0}
        harness.emulator.inject("custom_200", body=json.dumps(body))
        result = harness.run()
        assert result.accepted == 2 and result.uncertain == 0
        stored = lead(sessions, ids[0]).simz_batch_id
        assert stored is not None and len(stored) == 255 and stored.endswith(TRUNCATED)
        assert stored.startswith("B" * 200)
        [batch] = batches(sessions)
        assert (batch.outcome, batch.simz_batch_id) == ("accepted", stored)

    def test_long_rejection_code_is_stored_cut(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """An errors[] code over 100 characters rejects its lead with the code cut visibly."""
        harness = make_harness()
        ids = insert_leads(sessions, range(2))
        body = {
            "success": True,
            "batchId": "b" * 300,
            "errors": [{"index": 1, "code": "C" * 150, "message": "m" * 10_000}],
        }
        harness.emulator.inject("custom_200", body=json.dumps(body))
        harness.run()
        assert states(sessions) == {ids[0]: "accepted", ids[1]: "rejected"}
        refused = lead(sessions, ids[1])
        assert refused.error_code is not None and len(refused.error_code) == 100
        assert refused.error_code.endswith(TRUNCATED)
        assert refused.error_message is not None and len(refused.error_message) == 2000

    def test_long_error_code_of_a_503_keeps_the_leads_queued(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """A 503 whose code is over 100 characters: still "nothing queued", code cut."""
        harness = make_harness()
        ids = insert_leads(sessions, range(2))
        body = json.dumps({"success": False, "code": "X" * 500, "message": "busy " * 2000})
        harness.emulator.inject("custom", status=503, body=body)
        result = harness.run()
        assert result.requeued == 2 and result.uncertain == 0
        first = lead(sessions, ids[0])
        assert first.state == "queued" and first.attempts == 1
        assert first.error_code is not None and len(first.error_code) == 100
        assert first.error_code.endswith(TRUNCATED)
        assert [b.outcome for b in batches(sessions)] == ["retry"]

    def test_long_error_code_of_a_429_with_a_garbage_retry_after(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """A 429 with a long code and a Retry-After of 5,000 digits: queued, paused."""
        harness = make_harness()
        ids = insert_leads(sessions, range(1))
        body = json.dumps({"success": False, "code": "R" * 600})
        harness.emulator.inject("custom", status=429, body=body, retry_after="9" * 5000)
        harness.run()
        assert lead(sessions, ids[0]).state == "queued"
        assert [b.outcome for b in batches(sessions)] == ["retry"]
        [pause] = pauses(sessions)
        assert (pause.http_status, len(pause.reason)) == (429, 500)
        assert pause.reason.endswith(TRUNCATED)
        with sessions() as session:
            reasons = session.scalars(select(LeadTransition.reason)).all()
        assert any(len(r) == 500 and r.endswith(TRUNCATED) for r in reasons)


class TestTotalDeadline:
    def test_trickling_answer_is_uncertain_past_the_deadline(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """An answer each byte of which is quick but whose whole is slow: uncertain."""
        harness = make_harness(timeout={"connect": 1, "read": 3, "total": 1})
        ids = insert_leads(sessions, range(2))
        harness.emulator.inject("trickle", seconds=30, interval=0.1)
        result = harness.run()
        assert result.uncertain == 2 and result.accepted == 0
        assert set(states(sessions).values()) == {"uncertain"}
        [batch] = batches(sessions)
        assert batch.outcome == "uncertain"
        assert "timeout.total" in (batch.response_excerpt or "")
        # SimZ had processed them: uncertain, never resent, was the right call.
        assert harness.emulator.received_counts() == {i: 1 for i in ids}


class TestPauseTelemetry:
    def test_gauge_stays_up_across_a_renewal_and_logs_once(
        self,
        make_harness: Callable[..., Harness],
        simz_emulator_factory: SimzFactory,
        sessions: sessionmaker[Session],
        clock: Clock,
    ) -> None:
        """syncd_paused reads 1 from the 402 to the success, renewal and refresh included."""
        poor: SimzEmulator = simz_emulator_factory(credits=0)
        harness = make_harness(emulator=poor)
        key = key_fingerprint(poor.api_key)
        insert_leads(sessions, range(2))
        config = make_config()
        with structlog.testing.capture_logs() as logs:
            harness.run()
            assert gauge("api_key", key) == 1
            harness.run()  # still paused: not announced again
            clock.advance(seconds=11)  # past the pause, before the retry renews it
            refresh_state_metrics(sessions, config, now=clock)
            assert gauge("api_key", key) == 1
            harness.run()  # another 402: the pause is renewed
            assert gauge("api_key", key) == 1
            refresh_state_metrics(sessions, config, now=clock)
            assert gauge("api_key", key) == 1
            poor.set_credits(100)
            clock.advance(seconds=21)
            result = harness.run()
        assert result.accepted == 2
        assert gauge("api_key", key) == 0
        events = [e["event"] for e in logs]
        assert events.count("delivery paused") == 1
        assert events.count("delivery pause extended") == 1
        assert events.count("delivery resumed") == 1
        assert events.index("delivery paused") < events.index("delivery resumed")

    def test_pause_that_lifts_without_renewal_resumes(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session], clock: Clock
    ) -> None:
        """A 429 pause that the next answer (a 503) does not renew is reported lifted."""
        harness = make_harness()
        key = key_fingerprint(harness.emulator.api_key)
        insert_leads(sessions, range(1))
        harness.emulator.inject("429", retry_after=30)
        harness.emulator.inject("503")
        with structlog.testing.capture_logs() as logs:
            harness.run()
            assert gauge("api_key", key) == 1
            clock.advance(seconds=31)
            harness.run()
        assert gauge("api_key", key) == 0
        assert [e["event"] for e in logs if e["event"].startswith("delivery ")] == [
            "delivery paused",
            "delivery resumed",
        ]


class TestDeliveryEvents:
    def test_spent_budget_is_logged_as_failed(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session], clock: Clock
    ) -> None:
        """The answer that spends the attempt budget logs the failure at error level."""
        harness = make_harness(max_attempts=2)
        insert_leads(sessions, range(3))
        harness.emulator.inject("503", count=2)
        with structlog.testing.capture_logs() as logs:
            harness.run()
            clock.advance(minutes=5)
            harness.run()
        assert set(states(sessions).values()) == {"failed"}
        failed = [e for e in logs if e["event"] == "leads failed"]
        assert len(failed) == 1
        assert failed[0]["log_level"] == "error" and failed[0]["leads"] == 3
        assert "attempt budget (2) spent" in failed[0]["reason"]
        nothing = [e for e in logs if e["event"] == "nothing sent"]
        assert [e["failed"] for e in nothing] == [0, 3]
        assert not [e for e in logs if e["event"] == "batch sent"]

    def test_nothing_sent_then_batch_sent(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session], clock: Clock
    ) -> None:
        """A 503 logs `nothing sent` with the leads requeued; the retry's 200 `batch sent`."""
        harness = make_harness()
        insert_leads(sessions, range(2))
        harness.emulator.inject("503")
        with structlog.testing.capture_logs() as logs:
            harness.run()
            clock.advance(minutes=1)
            harness.run()
        [line] = [e for e in logs if e["event"] == "nothing sent"]
        assert (line["outcome"], line["requeued"], line["log_level"]) == ("retry", 2, "warning")
        [sent] = [e for e in logs if e["event"] == "batch sent"]
        assert (sent["outcome"], sent["accepted"], sent["log_level"]) == ("accepted", 2, "info")
