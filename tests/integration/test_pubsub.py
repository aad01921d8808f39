"""The Pub/Sub subscriber against the Salesforce emulator's gRPC port, over real TLS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from syncd.adapters.pubsub import (
    MAX_REQUESTED,
    Backoff,
    ChangeEvent,
    PubSubSubscriber,
    org_id_of,
)
from syncd.adapters.salesforce import SalesforceSource
from syncd.pubsub import pubsub_api_pb2 as pb
from syncd.pubsub import pubsub_api_pb2_grpc as pb_grpc
from syncd.sandbox.salesforce import ORG_ID, SalesforceEmulator
from tests.e2e.harness import lead_records, wait_until
from tests.salesforce_fixtures import salesforce_config

TOPIC = "/data/LeadChangeEvent"


@dataclass
class Listener:
    """Collects what the subscriber reports; releases events at once unless told not to."""

    subscriber: PubSubSubscriber | None = None
    auto_release: bool = True
    stored: bytes | None = None
    events: list[ChangeEvent] = field(default_factory=list)
    keepalives: list[bytes] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    connections: list[tuple[bool, str | None]] = field(default_factory=list)
    latest_starts: int = 0

    def resume_from(self) -> bytes | None:
        return self.stored

    def on_events(self, events: list[ChangeEvent]) -> None:
        self.events.extend(events)
        self.stored = events[-1].replay_id
        if self.auto_release and self.subscriber is not None:
            self.subscriber.release(len(events))

    def on_keepalive(self, latest_replay_id: bytes) -> None:
        self.keepalives.append(latest_replay_id)

    def on_latest(self) -> None:
        self.latest_starts += 1

    def on_replay_refused(self, reason: str) -> None:
        self.refused.append(reason)
        self.stored = None

    def on_connection(self, connected: bool, reason: str | None) -> None:
        self.connections.append((connected, reason))

    def ids(self, change: str | None = None) -> list[str]:
        return [
            record_id
            for event in self.events
            if change is None or event.change_type == change
            for record_id in event.record_ids
        ]


class Running:
    """A subscriber running in a thread, stopped at the end of the test."""

    def __init__(self, emulator: SalesforceEmulator, **options: object) -> None:
        self.source = SalesforceSource(salesforce_config(emulator))
        self.renewals = 0

        def session(renew: bool) -> tuple[str, str]:
            if renew:
                self.renewals += 1
            return self.source.session(renew=renew)

        self.subscriber = PubSubSubscriber(
            emulator.pubsub_address,
            str(options.pop("topic", TOPIC)),
            session,
            ca_bundle=str(emulator.ca_file),
            backoff=Backoff(0.05, 0.2),
            **options,  # type: ignore[arg-type]
        )
        self.listener = Listener(self.subscriber)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.subscriber.run, args=(self.listener, self.stop))

    def start(self, stored: bytes | None = None) -> Running:
        self.listener.stored = stored
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.source.close()
        assert not self.thread.is_alive(), "the subscriber did not stop"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[SalesforceEmulator]:
    """An emulator whose idle streams send a keepalive every 0.3 s."""
    sf = SalesforceEmulator(cert_dir=tmp_path / "sf-certs", keepalive=0.3)
    sf.start()
    try:
        yield sf
    finally:
        sf.stop()


def subscribed(emulator: SalesforceEmulator, count: int = 1) -> None:
    wait_until(
        lambda: sum(1 for s in emulator.subscribe_log() if s["outcome"] == "subscribed") >= count,
        f"{count} subscription(s)",
    )


@pytest.fixture
def running(emulator: SalesforceEmulator) -> Iterator[Running]:
    run = Running(emulator, keep_values=True).start()
    subscribed(emulator)
    yield run
    run.close()


class TestEvents:
    def test_create_arrives_decoded(self, emulator: SalesforceEmulator, running: Running) -> None:
        """A record created while subscribed arrives as a CREATE with its Id and header."""
        [record_id] = emulator.add_records(lead_records(1))
        wait_until(lambda: running.listener.ids("CREATE") == [record_id], "the CREATE event")
        event = running.listener.events[0]
        assert event.entity == "Lead"
        assert event.commit_at is not None
        header = event.values["ChangeEventHeader"]
        assert header["recordIds"] == [record_id]
        assert event.values["Phone"] == "+1 202 555 0100"
        assert event.values["Name"]["FirstName"] == "Ada0"

    def test_update_delete_undelete(self, emulator: SalesforceEmulator, running: Running) -> None:
        """Updates carry changed fields; deletes and undeletes publish their own types."""
        [record_id] = emulator.add_records(lead_records(1))
        emulator.update_record("Lead", record_id, {"Company": "Globex"})
        emulator.delete_record("Lead", record_id)
        emulator.undelete_record("Lead", record_id)
        wait_until(lambda: len(running.listener.events) == 4, "four events")
        kinds = [event.change_type for event in running.listener.events]
        assert kinds == ["CREATE", "UPDATE", "DELETE", "UNDELETE"]
        update = running.listener.events[1].values
        assert "Company" in update["ChangeEventHeader"]["changedFields"]
        assert update["Company"] == "Globex"

    def test_gap_event(self, emulator: SalesforceEmulator, running: Running) -> None:
        """A gap event carries only the header, with every Id of the transaction."""
        ids = emulator.add_records(lead_records(2))
        emulator.publish_gap("Lead", ids, "GAP_UPDATE")
        wait_until(lambda: running.listener.ids("GAP_UPDATE") == ids, "the gap event")
        gap = next(e for e in running.listener.events if e.change_type == "GAP_UPDATE")
        assert gap.values["Phone"] is None

    def test_values_are_dropped_by_default(self, emulator: SalesforceEmulator) -> None:
        """Without keep_values only the header is kept: syncd reads records whole."""
        run = Running(emulator).start()
        try:
            subscribed(emulator)
            [record_id] = emulator.add_records(lead_records(1))
            wait_until(lambda: run.listener.ids() == [record_id], "the event")
            assert run.listener.events[0].values == {}
            assert run.listener.latest_starts == 1
        finally:
            run.close()

    def test_keepalive(self, emulator: SalesforceEmulator, running: Running) -> None:
        """An idle stream gets keepalives carrying the latest replay id."""
        wait_until(lambda: len(running.listener.keepalives) >= 2, "two keepalives")


class TestResume:
    def test_custom_replay_resumes_after_the_stored_id(self, emulator: SalesforceEmulator) -> None:
        """Subscribing with a stored replay id delivers exactly the events after it."""
        first = Running(emulator).start()
        subscribed(emulator)
        ids = emulator.add_records(lead_records(3))
        wait_until(lambda: len(first.listener.events) == 3, "three events")
        stored = first.listener.events[0].replay_id
        first.close()
        second = Running(emulator).start(stored)
        try:
            wait_until(lambda: second.listener.ids() == ids[1:], "the two later events")
            assert emulator.subscribe_log()[-1]["preset"] == "CUSTOM"
        finally:
            second.close()

    def test_expired_replay_is_reported_then_latest(self, emulator: SalesforceEmulator) -> None:
        """A replay id past retention is reported; the stream goes on from LATEST."""
        first = Running(emulator).start()
        subscribed(emulator)
        emulator.add_records(lead_records(1))
        wait_until(lambda: first.listener.events, "an event")
        stored = first.listener.events[0].replay_id
        first.close()
        emulator.pubsub_fault("expire_replay")
        second = Running(emulator).start(stored)
        try:
            wait_until(lambda: second.listener.refused, "the refusal")
            subscribed(emulator, 2)
            assert emulator.subscribe_log()[-1]["preset"] == "LATEST"
            [new_id] = emulator.add_records(lead_records(1, start=5))
            wait_until(lambda: second.listener.ids() == [new_id], "the new event")
        finally:
            second.close()

    def test_corrupted_replay_is_reported(self, emulator: SalesforceEmulator) -> None:
        """A replay id the server cannot read is reported, not retried forever."""
        run = Running(emulator).start(b"not-a-replay-id")
        try:
            wait_until(lambda: run.listener.refused, "the refusal")
            assert "INVALID_ARGUMENT" in run.listener.refused[0]
            subscribed(emulator)
        finally:
            run.close()


class TestFaults:
    def test_unauthenticated_logs_in_again(
        self, emulator: SalesforceEmulator, running: Running
    ) -> None:
        """UNAUTHENTICATED mid-stream: a new login, a new stream, and events go on."""
        emulator.pubsub_fault("UNAUTHENTICATED")
        wait_until(lambda: running.renewals >= 1, "a new login")
        subscribed(emulator, 2)
        [record_id] = emulator.add_records(lead_records(1))
        wait_until(lambda: record_id in running.listener.ids(), "the event after the login")

    def test_dropped_stream_resumes_from_the_stored_id(
        self, emulator: SalesforceEmulator, running: Running
    ) -> None:
        """A dropped stream resubscribes from the listener's replay id; nothing is lost."""
        emulator.add_records(lead_records(1))
        wait_until(lambda: running.listener.events, "the first event")
        emulator.pubsub_fault("drop")
        subscribed(emulator, 2)
        [later] = emulator.add_records(lead_records(1, start=1))
        wait_until(lambda: later in running.listener.ids(), "the later event")
        assert emulator.subscribe_log()[-1]["preset"] == "CUSTOM"
        assert running.subscriber.reconnects >= 1

    def test_flow_control(self, emulator: SalesforceEmulator) -> None:
        """Unreleased events stop the server at the requested number; a release lets more in."""
        run = Running(emulator)
        run.listener.auto_release = False
        run.start()
        try:
            subscribed(emulator)
            emulator.add_records(lead_records(MAX_REQUESTED + 20))
            wait_until(lambda: len(run.listener.events) == MAX_REQUESTED, "the first 100")
            run.listener.keepalives.clear()
            wait_until(lambda: len(run.listener.keepalives) >= 2, "keepalives while held")
            assert len(run.listener.events) == MAX_REQUESTED
            run.subscriber.release(MAX_REQUESTED)
            wait_until(lambda: len(run.listener.events) == MAX_REQUESTED + 20, "the rest")
        finally:
            run.close()

    def test_silent_stream_is_reopened(self, tmp_path: Path) -> None:
        """No keepalive within keepalive_timeout: the stream is cancelled and opened again."""
        sf = SalesforceEmulator(cert_dir=tmp_path / "quiet", keepalive=3600)
        sf.start()
        run = Running(sf, keepalive_timeout=0.5).start()
        try:
            subscribed(sf, 3)
        finally:
            run.close()
            sf.stop()


class TestListenerFailure:
    def test_failing_listener_is_retried(self, emulator: SalesforceEmulator) -> None:
        """A listener that fails (its database, say) costs a retry, not the subscriber thread."""
        run = Running(emulator)
        calls: list[int] = []
        plain = run.listener.resume_from

        def flaky() -> bytes | None:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("database unreachable")
            return plain()

        run.listener.resume_from = flaky  # type: ignore[method-assign]
        run.start()
        try:
            subscribed(emulator)
            assert len(calls) >= 2
            assert run.thread.is_alive()
        finally:
            run.close()


class TestAuthentication:
    def _call(self, emulator: SalesforceEmulator, metadata: tuple[tuple[str, str], ...]) -> None:
        channel = grpc.secure_channel(
            emulator.pubsub_address,
            grpc.ssl_channel_credentials(emulator.ca_file.read_bytes()),
        )
        try:
            pb_grpc.PubSubStub(channel).GetTopic(
                pb.TopicRequest(topic_name=TOPIC), metadata=metadata, timeout=10
            )
        finally:
            channel.close()

    def test_unknown_session_refused(self, emulator: SalesforceEmulator) -> None:
        """A token the org never issued gets UNAUTHENTICATED."""
        with pytest.raises(grpc.RpcError) as caught:
            self._call(
                emulator,
                (("accesstoken", "x!y"), ("instanceurl", emulator.url), ("tenantid", ORG_ID)),
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]

    def test_session_and_tenant_accepted(self, emulator: SalesforceEmulator) -> None:
        """A fresh login's session with the org's tenant id is accepted."""
        source = SalesforceSource(salesforce_config(emulator))
        session_id, instance = source.session()
        assert org_id_of(session_id)[:15] == ORG_ID[:15]
        assert len(org_id_of(session_id)) == 18
        self._call(
            emulator,
            (("accesstoken", session_id), ("instanceurl", instance), ("tenantid", ORG_ID)),
        )
        source.close()
