"""Delivery over real HTTP against the SimZ emulator, on SQLite and PostgreSQL.

One test (at least) per row of docs/design.md#simz-answers, asserting the leads' states,
the batch rows and the pauses; plus crash recovery, stop handling and the
"uncertain is never resent" promise.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import structlog
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import outbox
from syncd.adapters.orm import Batch, Lead
from syncd.adapters.simz import SimzClient, key_fingerprint
from syncd.config.models import SimzConfig, SyncConfig
from syncd.sandbox.simz import SimzEmulator
from syncd.services.deliver import DeliveryResult, deliver_sync, recover_in_flight
from syncd.services.delivery_activity import DeliveryActivity
from tests.clock import Clock
from tests.integration.delivery_rows import (
    T0,
    batches,
    count,
    insert_leads,
    lead,
    make_sync,
    pauses,
    sf_id,
    states,
    transitions,
)
from tests.simz_fixtures import SimzFactory, simz_config_for

BACKOFF = {"initial": "10s", "max": "10m", "multiplier": 2}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + timedelta(minutes=1))


class Harness:
    """Runs delivery cycles against one emulator with one client."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        emulator: SimzEmulator,
        clock: Clock,
        config: SimzConfig,
        sync: SyncConfig,
    ) -> None:
        self.sessions = sessions
        self.emulator = emulator
        self.clock = clock
        self.config = config
        self.sync = sync
        self.client = SimzClient(config)

    def run(self, **kwargs: Any) -> DeliveryResult:
        return deliver_sync(
            self.sessions,
            self.client,
            self.sync,
            self.config,
            now=self.clock,
            rng=lambda: 0.5,
            worker="test",
            **kwargs,
        )

    def posts(self) -> int:
        return sum(1 for r in self.emulator.requests() if r["method"] == "POST")


@pytest.fixture
def make_harness(
    sessions: sessionmaker[Session], simz_emulator: SimzEmulator, clock: Clock
) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def build(
        emulator: SimzEmulator | None = None, sync: SyncConfig | None = None, **config: Any
    ) -> Harness:
        target = emulator or simz_emulator
        settings: dict[str, Any] = {"batch_size": 10, "backoff": BACKOFF, **config}
        harness = Harness(
            sessions, target, clock, simz_config_for(target, **settings), sync or make_sync()
        )
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.client.close()


def broken_once(real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, except that its first call raises as if the database went away."""
    calls: list[int] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real(*args, **kwargs)

    return call


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestMarksItsActivity:
    def test_a_pass_marks_the_activity_while_it_sends_and_clears_it_after(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """Write-back gives way to what this marks (syncd/services/delivery_activity.py)."""
        harness = make_harness()
        activity = DeliveryActivity()
        seen: list[float | None] = []
        submit = harness.client.submit

        def watched(*args: Any, **kwargs: Any) -> Any:
            seen.append(activity.busy_for())
            return submit(*args, **kwargs)

        harness.client.submit = watched  # type: ignore[method-assign]
        insert_leads(sessions, range(25))
        assert harness.run(activity=activity).accepted == 25
        assert len(seen) == 3 and all(busy is not None for busy in seen)
        assert activity.busy_for() is None
        assert harness.run(activity=activity).batches == 0
        assert len(seen) == 3


class TestAccepted:
    def test_200_accepts_and_records_batch(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """A 200 makes every lead accepted with SimZ's batchId, in one closed batch row."""
        harness = make_harness()
        ids = insert_leads(sessions, range(5))
        result = harness.run()
        assert (result.batches, result.accepted, result.rejected) == (1, 5, 0)
        assert set(states(sessions).values()) == {"accepted"}
        [batch] = batches(sessions)
        assert batch.outcome == "accepted"
        assert batch.http_status == 200
        assert (batch.accepted, batch.rejected, batch.lead_count) == (5, 0, 5)
        assert batch.simz_batch_id and batch.simz_batch_id.startswith("batch_")
        assert batch.api_key_id == key_fingerprint("test-key")
        assert batch.finished_at is not None and batch.worker == "test"
        first = lead(sessions, ids[0])
        assert first.simz_batch_id == batch.simz_batch_id
        assert first.batch_id == batch.id
        assert transitions(sessions, ids[0]) == [
            (None, "queued", None),
            ("queued", "sending", batch.id),
            ("sending", "accepted", batch.id),
        ]
        assert harness.emulator.received_counts() == {i: 1 for i in ids}

    def test_batches_of_batch_size_in_id_order(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """25 leads with batch_size 10 go out as 10, 10, 5, in id order, options included."""
        harness = make_harness(sync=make_sync(options={"priority": "high", "enableAMD": True}))
        ids = insert_leads(sessions, range(25))
        result = harness.run()
        assert result.batches == 3 and result.accepted == 25
        assert [b.lead_count for b in batches(sessions)] == [10, 10, 5]
        received = [r["salesforceId"] for r in harness.emulator.received()]
        assert received == ids

    def test_200_with_rejections(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """Leads named in errors[] are rejected with SimZ's code; the rest accepted."""
        harness = make_harness()
        ids = insert_leads(sessions, range(3), phones={1: "4155550100"})
        result = harness.run()
        assert (result.accepted, result.rejected) == (2, 1)
        assert states(sessions) == {ids[0]: "accepted", ids[1]: "rejected", ids[2]: "accepted"}
        bad = lead(sessions, ids[1])
        assert bad.error_code == "INVALID_PHONE_NUMBER"
        assert bad.error_message
        [batch] = batches(sessions)
        assert (batch.outcome, batch.accepted, batch.rejected) == ("accepted", 2, 1)

    def test_unreadable_200_is_uncertain(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """A 200 with a body that is not JSON leaves the batch uncertain, never resent."""
        harness = make_harness()
        ids = insert_leads(sessions, range(3))
        harness.emulator.inject("garbage_200")
        result = harness.run()
        assert result.uncertain == 3 and result.errors
        assert set(states(sessions).values()) == {"uncertain"}
        [batch] = batches(sessions)
        assert (batch.outcome, batch.http_status) == ("uncertain", 200)
        harness.run()
        assert harness.emulator.received_counts() == {i: 1 for i in ids}


class TestSplit:
    def test_400_splits_into_halves(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """A 400 on a batch sends its two halves as new batches; all end accepted."""
        harness = make_harness()
        ids = insert_leads(sessions, range(4))
        harness.emulator.inject("400")
        result = harness.run()
        assert result.accepted == 4
        rows = batches(sessions)
        assert [(b.outcome, b.lead_count, b.http_status) for b in rows] == [
            ("split", 4, 400),
            ("accepted", 2, 200),
            ("accepted", 2, 200),
        ]
        assert lead(sessions, ids[0]).batch_id == rows[1].id
        assert lead(sessions, ids[3]).batch_id == rows[2].id
        assert harness.emulator.received_counts() == {i: 1 for i in ids}

    def test_single_lead_answered_400_is_rejected(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """Splitting down to one lead that still gets 400 rejects just that lead."""
        harness = make_harness()
        ids = insert_leads(sessions, range(2))
        harness.emulator.inject("400", count=2)  # the pair, then the first alone
        result = harness.run()
        assert states(sessions) == {ids[0]: "rejected", ids[1]: "accepted"}
        assert (result.rejected, result.accepted) == (1, 1)
        bad = lead(sessions, ids[0])
        assert bad.error_code == "INVALID_REQUEST"
        assert [b.outcome for b in batches(sessions)] == ["split", "rejected", "accepted"]

    def test_retry_on_a_half_puts_the_other_half_back(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """A 503 on the first half requeues it; the unsent second half goes back untouched."""
        harness = make_harness()
        ids = insert_leads(sessions, range(4))
        harness.emulator.inject("400")
        harness.emulator.inject("503")
        result = harness.run()
        assert set(states(sessions).values()) == {"queued"}
        assert [lead(sessions, i).attempts for i in ids] == [1, 1, 0, 0]
        # The second half never got a batch row of its own: it was never sent.
        assert [b.outcome for b in batches(sessions)] == ["split", "retry"]
        assert result.requeued == 4
        assert harness.emulator.received_counts() == {}

    def test_413_splits_too(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """A 413 (not listed in the spec) is handled like 400: split, then accepted."""
        harness = make_harness()
        ids = insert_leads(sessions, range(3))
        harness.emulator.inject("413")
        harness.run()
        assert set(states(sessions).values()) == {"accepted"}
        assert [(b.outcome, b.lead_count) for b in batches(sessions)] == [
            ("split", 3),
            ("accepted", 1),
            ("accepted", 2),
        ]
        assert harness.emulator.received_counts() == {i: 1 for i in ids}


class TestPauses:
    def test_401_requeues_and_pauses_the_key(
        self,
        make_harness: Callable[..., Harness],
        simz_emulator: SimzEmulator,
        sessions: sessionmaker[Session],
        clock: Clock,
    ) -> None:
        """401: leads back to queued with no attempt used; the key is paused; errors each cycle."""
        harness = make_harness(api_key="wrong-key")
        insert_leads(sessions, range(3))
        result = harness.run()
        assert result.paused and result.errors and result.requeued == 3
        assert set(states(sessions).values()) == {"queued"}
        assert {lead(sessions, sf_id(i)).attempts for i in range(3)} == {0}
        [pause] = pauses(sessions)
        assert (pause.scope, pause.key, pause.http_status) == (
            "api_key",
            key_fingerprint("wrong-key"),
            401,
        )
        assert pause.paused_until == clock() + timedelta(seconds=10)
        assert [b.outcome for b in batches(sessions)] == ["paused"]
        posts = harness.posts()
        again = harness.run()
        assert again.paused and again.errors
        assert harness.posts() == posts  # paused: nothing sent
        clock.advance(seconds=11)
        harness.run()  # the pause ran out: one more try, another 401, a longer pause
        [pause] = pauses(sessions)
        assert pause.failures == 2
        assert pause.paused_until == clock() + timedelta(seconds=20)

    def test_402_pauses_the_key_and_logs_action_required(
        self,
        make_harness: Callable[..., Harness],
        simz_emulator_factory: SimzFactory,
        sessions: sessionmaker[Session],
    ) -> None:
        """402: leads back to queued; the key paused; the body's actionRequired is logged."""
        poor = simz_emulator_factory(credits=0)
        harness = make_harness(emulator=poor)
        insert_leads(sessions, range(2))
        with structlog.testing.capture_logs() as logs:
            result = harness.run()
        assert result.paused
        assert set(states(sessions).values()) == {"queued"}
        [pause] = pauses(sessions)
        assert (pause.scope, pause.http_status) == ("api_key", 402)
        paused_logs = [e for e in logs if e["event"] == "delivery paused"]
        assert paused_logs and "Add credits" in paused_logs[0]["action_required"]
        assert poor.received_counts() == {}

    def test_404_pauses_only_that_agent(
        self,
        make_harness: Callable[..., Harness],
        sessions: sessionmaker[Session],
    ) -> None:
        """404: that agent's leads wait and the agent is paused; other agents still deliver."""
        sync = make_sync(route={"field": "Country", "values": {"US": "agt_1", "XX": "agt_gone"}})
        harness = make_harness(sync=sync)
        gone = insert_leads(sessions, range(2), agent="agt_gone")
        ok = insert_leads(sessions, range(10, 12), agent="agt_1")
        result = harness.run()
        assert result.paused
        assert states(sessions) == {
            **dict.fromkeys(gone, "queued"),
            **dict.fromkeys(ok, "accepted"),
        }
        [pause] = pauses(sessions)
        fingerprint = key_fingerprint("test-key")
        assert (pause.scope, pause.key, pause.http_status) == (
            "agent",
            f"{fingerprint}/agt_gone",
            404,
        )
        assert {lead(sessions, i).attempts for i in gone} == {0}


class TestRetries:
    def test_429_waits_for_retry_after_seconds(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session], clock: Clock
    ) -> None:
        """429 with Retry-After: queued until then, one attempt used, the key waits; then sent."""
        harness = make_harness()
        ids = insert_leads(sessions, range(2))
        harness.emulator.inject("429", retry_after=30)
        result = harness.run()
        assert result.requeued == 2 and not result.errors
        first = lead(sessions, ids[0])
        assert (first.state, first.attempts) == ("queued", 1)
        assert first.next_attempt_at == clock() + timedelta(seconds=30)
        [pause] = pauses(sessions)
        assert (pause.scope, pause.http_status) == ("api_key", 429)
        assert [(b.outcome, b.http_status) for b in batches(sessions)] == [("retry", 429)]
        posts = harness.posts()
        harness.run()
        assert harness.posts() == posts
        clock.advance(seconds=31)
        harness.run()
        assert set(states(sessions).values()) == {"accepted"}
        assert pauses(sessions) == []  # a successful answer ends the pause
        assert harness.emulator.received_counts() == {i: 1 for i in ids}

    def test_429_with_http_date(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session], clock: Clock
    ) -> None:
        """A Retry-After HTTP date is honoured."""
        harness = make_harness()
        ids = insert_leads(sessions, range(1))
        harness.emulator.inject(
            "429", retry_after=format_datetime(clock() + timedelta(minutes=2), usegmt=True)
        )
        harness.run()
        assert lead(sessions, ids[0]).next_attempt_at == clock() + timedelta(minutes=2)

    def test_429_without_retry_after_backs_off_with_jitter(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session], clock: Clock
    ) -> None:
        """Without Retry-After the wait is the jittered backoff (draw 0.5 of 10 s)."""
        harness = make_harness()
        ids = insert_leads(sessions, range(1))
        harness.emulator.inject("429", retry_after=None)
        harness.run()
        assert lead(sessions, ids[0]).next_attempt_at == clock() + timedelta(seconds=5)

    @pytest.mark.parametrize(
        "value", ["99999999999999", "9" * 5000, "²"], ids=["14-digits", "5000-digits", "super2"]
    )
    def test_429_with_hostile_retry_after_stays_queued(
        self,
        make_harness: Callable[..., Harness],
        sessions: sessionmaker[Session],
        clock: Clock,
        value: str,
    ) -> None:
        """A 429 is "nothing queued" whatever its Retry-After: queued, never uncertain."""
        harness = make_harness()
        ids = insert_leads(sessions, range(2))
        harness.emulator.inject("429", retry_after=value)
        result = harness.run()
        assert result.requeued == 2 and result.uncertain == 0
        first = lead(sessions, ids[0])
        assert first.state == "queued"
        assert first.next_attempt_at is not None
        assert clock() <= first.next_attempt_at <= clock() + timedelta(hours=1)
        assert [b.outcome for b in batches(sessions)] == ["retry"]

    def test_503_requeues_with_backoff(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session], clock: Clock
    ) -> None:
        """503: back to queued after a backoff, one attempt used, no pause."""
        harness = make_harness()
        ids = insert_leads(sessions, range(3))
        harness.emulator.inject("503")
        result = harness.run()
        assert result.requeued == 3
        first = lead(sessions, ids[0])
        assert (first.state, first.attempts, first.error_code) == (
            "queued",
            1,
            "BILLING_CHECK_FAILED",
        )
        assert first.next_attempt_at == clock() + timedelta(seconds=5)
        assert pauses(sessions) == []
        assert [(b.outcome, b.http_status) for b in batches(sessions)] == [("retry", 503)]
        clock.advance(seconds=6)
        harness.run()
        assert set(states(sessions).values()) == {"accepted"}
        assert harness.emulator.received_counts() == {i: 1 for i in ids}

    def test_attempt_budget_spent_fails(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session], clock: Clock
    ) -> None:
        """A retryable answer on the last allowed attempt makes the lead failed."""
        harness = make_harness(max_attempts=2)
        ids = insert_leads(sessions, range(2))
        harness.emulator.inject("503", count=2)
        harness.run()
        clock.advance(minutes=5)
        result = harness.run()
        assert result.failed == 2
        assert set(states(sessions).values()) == {"failed"}
        assert lead(sessions, ids[0]).attempts == 2

    def test_connection_refused_requeues(
        self,
        make_harness: Callable[..., Harness],
        simz_emulator: SimzEmulator,
        sessions: sessionmaker[Session],
        clock: Clock,
    ) -> None:
        """Connection refused: nothing was sent, so back to queued with a backoff."""
        harness = make_harness()
        harness.config = simz_config_for(
            simz_emulator, base_url=f"http://127.0.0.1:{closed_port()}", backoff=BACKOFF
        )
        harness.client = SimzClient(harness.config)
        ids = insert_leads(sessions, range(2))
        result = harness.run()
        assert result.requeued == 2
        first = lead(sessions, ids[0])
        assert (first.state, first.attempts) == ("queued", 1)
        assert first.next_attempt_at == clock() + timedelta(seconds=5)
        [batch] = batches(sessions)
        assert (batch.outcome, batch.http_status) == ("retry", None)
        assert "ConnectError" in (batch.response_excerpt or "")


class TestUncertain:
    def test_500_is_uncertain(
        self,
        make_harness: Callable[..., Harness],
        sessions: sessionmaker[Session],
        clock: Clock,
    ) -> None:
        """Another 5xx leaves the batch uncertain, and the lead says why (not an older 503)."""
        harness = make_harness()
        ids = insert_leads(sessions, range(2))
        harness.emulator.inject("503")
        harness.run()
        clock.advance(hours=1)
        harness.emulator.inject("500")
        result = harness.run()
        assert result.uncertain == 2 and result.errors
        assert set(states(sessions).values()) == {"uncertain"}
        assert [(b.outcome, b.http_status) for b in batches(sessions)] == [
            ("retry", 503),
            ("uncertain", 500),
        ]
        uncertain = lead(sessions, ids[0])
        assert uncertain.error_code == "HTTP_500"
        assert "500" in (uncertain.error_message or "")
        assert "503" not in (uncertain.error_message or "")

    def test_read_timeout_is_uncertain(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """A read timeout after sending makes the leads uncertain (SimZ did get them)."""
        harness = make_harness(timeout={"connect": 5, "read": 0.3})
        ids = insert_leads(sessions, range(2))
        harness.emulator.inject("delay", seconds=1.5)
        result = harness.run()
        assert result.uncertain == 2
        assert set(states(sessions).values()) == {"uncertain"}
        [batch] = batches(sessions)
        assert batch.outcome == "uncertain" and batch.http_status is None
        assert "ReadTimeout" in (batch.response_excerpt or "")
        deadline = time.monotonic() + 10  # the emulator records the batch after its delay
        while not harness.emulator.received_counts() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert harness.emulator.received_counts() == {i: 1 for i in ids}

    def test_reset_connection_is_uncertain(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """A connection reset once the request was on its way makes the leads uncertain."""
        harness = make_harness()
        insert_leads(sessions, range(2))
        harness.emulator.inject("reset")
        result = harness.run()
        assert result.uncertain == 2
        assert set(states(sessions).values()) == {"uncertain"}

    def test_lost_response_never_resent(
        self,
        make_harness: Callable[..., Harness],
        sessions: sessionmaker[Session],
        clock: Clock,
    ) -> None:
        """A lost response leaves leads uncertain, and later cycles never send them again."""
        harness = make_harness()
        lost = insert_leads(sessions, range(3))
        harness.emulator.inject("lost_response")
        result = harness.run()
        assert result.uncertain == 3
        later = insert_leads(sessions, range(10, 12))
        for _ in range(3):
            clock.advance(hours=1)
            harness.run()
        assert states(sessions) == {
            **dict.fromkeys(lost, "uncertain"),
            **dict.fromkeys(later, "accepted"),
        }
        assert harness.emulator.received_counts() == {i: 1 for i in lost + later}

    def test_resend_uncertain_is_not_delivery_business(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """Delivery never moves uncertain leads back, even with resend_uncertain.

        The poll job does that, after fetching the records again from Salesforce
        (tests/integration/test_refetch.py); delivery has no Salesforce source.
        """
        harness = make_harness()
        ids = insert_leads(sessions, range(2))
        harness.emulator.inject("lost_response")
        harness.run()
        opted = make_harness(resend_uncertain=True)
        opted.run()
        assert set(states(sessions).values()) == {"uncertain"}
        assert harness.emulator.received_counts() == {i: 1 for i in ids}


def claim_directly(
    sessions: sessionmaker[Session], clock: Clock, limit: int, *, posted: bool = True
) -> outbox.Claim | None:
    """One committed claim of sync ``web``, agent ``agt_1``, as delivery makes it."""
    with sessions.begin() as session:
        return outbox.claim(
            session,
            sync_name="web",
            agent_id="agt_1",
            credential="abc",
            limit=limit,
            now=clock(),
            worker="w",
            posted=posted,
        )


class TestCrashAndStop:
    def test_recover_in_flight(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        """Leads left sending by a crash become uncertain; their batch row is interrupted."""
        ids = insert_leads(sessions, range(3))
        assert claim_directly(sessions, clock, 2) is not None
        assert recover_in_flight(sessions, now=clock) == 2
        assert states(sessions) == {ids[0]: "uncertain", ids[1]: "uncertain", ids[2]: "queued"}
        [batch] = batches(sessions)
        assert batch.outcome == "interrupted" and batch.finished_at == clock()
        assert transitions(sessions, ids[0])[-1] == ("sending", "uncertain", batch.id)
        assert recover_in_flight(sessions, now=clock) == 0

    def test_crash_during_a_split_half_leaves_only_that_half_uncertain(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """Killed while the first half of a split is in flight: the unsent half is requeued
        at recovery (SimZ had queued nothing), only the in-flight half becomes uncertain."""
        harness = make_harness()
        ids = insert_leads(sessions, range(4))
        harness.emulator.inject("400")

        class Killed(BaseException):
            """Stands in for SIGKILL: nothing after it runs."""

        class DyingClient(SimzClient):
            calls = 0

            def submit(self, agent_id: str, body: dict[str, Any], **kw: Any) -> Any:
                DyingClient.calls += 1
                if DyingClient.calls == 2:  # the first half's POST
                    super().submit(agent_id, body, **kw)
                    raise Killed
                return super().submit(agent_id, body, **kw)

        harness.client.close()
        harness.client = DyingClient(harness.config)
        with pytest.raises(Killed):
            harness.run()
        assert set(states(sessions).values()) == {"sending"}
        assert recover_in_flight(sessions, now=harness.clock) == 2
        assert states(sessions) == {
            ids[0]: "uncertain",
            ids[1]: "uncertain",
            ids[2]: "queued",
            ids[3]: "queued",
        }
        assert [b.outcome for b in batches(sessions)] == ["split", "interrupted"]
        harness.client = SimzClient(harness.config)
        harness.run()
        assert states(sessions)[ids[2]] == states(sessions)[ids[3]] == "accepted"
        assert harness.emulator.received_counts() == {i: 1 for i in ids}

    def test_stop_between_claim_and_post_abandons(
        self,
        make_harness: Callable[..., Harness],
        sessions: sessionmaker[Session],
    ) -> None:
        """Stop set after the claim commit: nothing sent, leads back to queued, batch abandoned."""
        harness = make_harness()
        ids = insert_leads(sessions, range(3))
        stop = threading.Event()

        class StoppingClient(SimzClient):
            def submit(self, agent_id: str, body: dict[str, Any], **kw: Any) -> Any:
                stop.set()  # SIGTERM arrives after the claim was committed
                return super().submit(agent_id, body, **kw)

        harness.client.close()
        harness.client = StoppingClient(harness.config)
        result = harness.run(stop=stop)
        assert result.requeued == 3 and result.batches == 0
        assert set(states(sessions).values()) == {"queued"}
        assert lead(sessions, ids[0]).attempts == 0
        assert [b.outcome for b in batches(sessions)] == ["abandoned"]
        assert harness.posts() == 0

    def test_failure_to_record_an_answer_leaves_leads_uncertain(
        self,
        make_harness: Callable[..., Harness],
        sessions: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """If the answer cannot be recorded, the sent leads become uncertain, never queued."""
        harness = make_harness()
        ids = insert_leads(sessions, range(2))

        def broken(*_args: Any, **_kwargs: Any) -> int:
            raise RuntimeError("database went away")

        # Either way of recording a plain success: statement by statement (SQLite) or
        # in one statement (PostgreSQL), whose first use is the success's record.
        monkeypatch.setattr(outbox.outcomes, "clear_pauses", broken)
        monkeypatch.setattr(outbox.outcomes, "move_along", broken_once(outbox.outcomes.move_along))
        with pytest.raises(RuntimeError):
            harness.run()
        assert set(states(sessions).values()) == {"uncertain"}
        assert [b.outcome for b in batches(sessions)] == ["uncertain"]
        assert harness.emulator.received_counts() == {i: 1 for i in ids}

    def test_stop_before_claim_claims_nothing(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """With stop already set, no batch is claimed."""
        harness = make_harness()
        insert_leads(sessions, range(3))
        stop = threading.Event()
        stop.set()
        result = harness.run(stop=stop)
        assert result.batches == 0
        assert count(sessions, Batch) == 0
        assert count(sessions, Lead) == 3


class TestClaimAhead:
    """The next batch is claimed while one is in flight, and sent only once released."""

    def test_next_batch_claimed_during_the_post_and_released_before_its_own(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """While batch 1 is in flight, batch 2 is claimed (not released); every batch is
        released (``posted_at``) before its POST; one POST at a time, in id order."""
        harness = make_harness()
        ids = insert_leads(sessions, range(25))
        seen: list[tuple[int, int, bool]] = []  # (posts so far, open batches, claimed-ahead)

        def open_batches() -> list[Batch]:
            return [b for b in batches(sessions) if b.outcome is None]

        class WatchingClient(SimzClient):
            def submit(self, agent_id: str, body: dict[str, Any], **kw: Any) -> Any:
                first = not seen
                deadline = time.monotonic() + 10
                while first and len(open_batches()) < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)  # batch 1 in flight: wait for batch 2's claim
                rows = open_batches()
                seen.append((len(seen), len(rows), any(b.posted_at is None for b in rows)))
                # The batch being posted is the oldest open one, and it was released.
                assert rows[0].posted_at is not None
                return super().submit(agent_id, body, **kw)

        harness.client.close()
        harness.client = WatchingClient(harness.config)
        result = harness.run()
        assert (result.batches, result.accepted) == (3, 25)
        assert seen[0] == (0, 2, True)
        rows = batches(sessions)
        assert [(b.outcome, b.lead_count) for b in rows] == [
            ("accepted", 10),
            ("accepted", 10),
            ("accepted", 5),
        ]
        assert all(b.posted_at is not None for b in rows)
        assert [r["salesforceId"] for r in harness.emulator.received()] == ids

    def test_a_pausing_answer_abandons_the_batch_claimed_ahead(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """A 429 on batch 1: batch 2, claimed meanwhile, goes back untouched and unsent."""
        harness = make_harness()
        ids = insert_leads(sessions, range(15))
        harness.emulator.inject("429", retry_after=30)
        result = harness.run()
        assert harness.posts() == 1
        rows = batches(sessions)
        assert [(b.outcome, b.posted_at is not None) for b in rows] == [
            ("retry", True),
            ("abandoned", False),
        ]
        assert set(states(sessions).values()) == {"queued"}
        assert [lead(sessions, i).attempts for i in ids] == [1] * 10 + [0] * 5
        assert lead(sessions, ids[10]).batch_id is None
        assert result.requeued == 15
        assert transitions(sessions, ids[10])[-1] == ("sending", "queued", rows[1].id)

    def test_after_a_split_the_batch_claimed_ahead_goes_out(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """A 400 on batch 1: its halves go out first, then the batch claimed ahead."""
        harness = make_harness()
        ids = insert_leads(sessions, range(14))
        harness.emulator.inject("400")
        result = harness.run()
        assert result.accepted == 14
        rows = batches(sessions)
        assert [(b.outcome, b.lead_count) for b in rows] == [
            ("split", 10),
            ("accepted", 4),  # claimed ahead while batch 1 was in flight
            ("accepted", 5),
            ("accepted", 5),
        ]
        assert all(b.posted_at is not None for b in rows)
        assert harness.emulator.received_counts() == {i: 1 for i in ids}
        received = [r["salesforceId"] for r in harness.emulator.received()]
        assert received == ids  # the halves, then the batch claimed ahead

    def test_failed_claim_ahead_still_records_the_batch_in_flight(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """The database fails while claiming ahead: the answer in flight is still recorded."""
        harness = make_harness()
        ids = insert_leads(sessions, range(15))
        calls = 0

        def fence(_session: Session) -> bool:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise RuntimeError("database went away")
            return True

        with pytest.raises(RuntimeError, match="database went away"):
            harness.run(fence=fence)
        assert [b.outcome for b in batches(sessions)] == ["accepted"]
        assert states(sessions) == {
            i: ("accepted" if n < 10 else "queued") for n, i in enumerate(ids)
        }
        assert harness.emulator.received_counts() == {i: 1 for i in ids[:10]}

    def test_recovery_requeues_a_batch_claimed_ahead(
        self, sessions: sessionmaker[Session], clock: Clock
    ) -> None:
        """After a crash: the released batch's leads are uncertain, the one claimed ahead
        (never released, so never sent) goes back to the queue and is closed abandoned."""
        ids = insert_leads(sessions, range(3))
        claim_directly(sessions, clock, 2)
        claim_directly(sessions, clock, 1, posted=False)
        assert recover_in_flight(sessions, now=clock) == 2
        assert states(sessions) == {ids[0]: "uncertain", ids[1]: "uncertain", ids[2]: "queued"}
        assert [b.outcome for b in batches(sessions)] == ["interrupted", "abandoned"]
        assert lead(sessions, ids[2]).batch_id is None
        assert transitions(sessions, ids[2])[-1] == ("sending", "queued", batches(sessions)[1].id)

    def test_mark_posted_refuses_a_closed_or_released_batch(
        self, sessions: sessionmaker[Session], clock: Clock
    ) -> None:
        insert_leads(sessions, range(2))
        claim = claim_directly(sessions, clock, 2, posted=False)
        assert claim is not None
        with sessions.begin() as session:
            outbox.mark_posted(session, claim.batch_id, clock())
        with pytest.raises(outbox.OutboxConflict), sessions.begin() as session:
            outbox.mark_posted(session, claim.batch_id, clock())


class TestObservability:
    def test_one_log_line_per_batch_without_personal_data(
        self, make_harness: Callable[..., Harness], sessions: sessionmaker[Session]
    ) -> None:
        """Each batch logs one summary line with ids and counts, no phones or names."""
        harness = make_harness()
        insert_leads(sessions, range(12))
        with structlog.testing.capture_logs() as logs:
            harness.run()
        lines = [e for e in logs if e["event"] == "batch sent"]
        assert len(lines) == 2
        line = lines[0]
        for name in ("sync", "agent", "batch", "simz_batch_id", "status", "outcome", "leads"):
            assert name in line
        assert line["credential"] == key_fingerprint("test-key")
        text = repr(logs)
        assert "+1415" not in text and "First1" not in text and "test-key" not in text
