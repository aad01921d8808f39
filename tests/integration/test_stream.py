"""The stream service: the emulator's change events into a real database (SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from syncd.adapters import stream_store
from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import Lead, LeadTransition
from syncd.adapters.pubsub import Backoff, PubSubSubscriber
from syncd.adapters.salesforce import SalesforceSource
from syncd.config.models import SyncConfig
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.poll import PollResult, poll_sync
from syncd.services.stream import BUSY_LINGER, StreamBoard, StreamIntake, StreamStatus
from syncd.services.stream_poll import poll_range
from syncd.services.stream_stall import StallWatch
from tests.e2e.harness import lead_records, wait_until
from tests.salesforce_fixtures import salesforce_config

#: A SystemModstamp long before any poll window: such a record reaches syncd by an event only.
BACK_DATED = "2021-06-01T00:00:00Z"


def make_sync(**overrides: Any) -> SyncConfig:
    data: dict[str, Any] = {
        "name": "web",
        "start_at": "2020-01-01T00:00:00Z",
        "lookback": "1m",
        "lag": "0s",
        "agent": "agt_1",
        "source": {"mode": "stream"},
        "mapping": {"phoneNumber": "Phone", "lastName": "LastName"},
        "rules": {"duplicate_phone_window": "0s"},
    }
    data.update(overrides)
    return SyncConfig.model_validate(data)


class Stream:
    """A running intake for one sync, over the emulator and the test's database."""

    def __init__(self, emulator: SalesforceEmulator, engine: Engine, sync: SyncConfig) -> None:
        self.emulator = emulator
        self.sessions = make_session_factory(engine)
        self.sync = sync
        self.auth = SalesforceSource(salesforce_config(emulator))
        self.reader = SalesforceSource(salesforce_config(emulator))
        self.queued: list[str] = []
        self.board = StreamBoard([sync])
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.stall: StallWatch | None = None
        #: The batch window: (delivery.linger, source.max_linger); None: a fixed window.
        self.window: tuple[float, float | None] = (0.1, None)

    def build(self) -> StreamIntake:
        """A new intake (with its own subscriber) for this sync, not started."""
        subscriber = PubSubSubscriber(
            self.emulator.pubsub_address,
            self.sync.topic,
            lambda renew: self.auth.session(renew=renew),
            ca_bundle=str(self.emulator.ca_file),
            backoff=Backoff(0.05, 0.2),
        )

        def reconcile(start: datetime, end: datetime) -> PollResult:
            return poll_range(self.sessions, self.reader, self.sync, start, end)

        self.intake = StreamIntake(
            self.sessions,
            self.sync,
            subscriber,
            self.reader,
            reconcile=reconcile,
            board=self.board,
            on_queued=self.queued.append,
            stall=self.stall,
            linger=self.window[0],
            max_linger=self.window[1],
        )
        return self.intake

    def start(self) -> Stream:
        intake = self.build()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=intake.run, args=(self.stop,))
        self.thread.start()
        return self

    def halt(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(15)
            assert not self.thread.is_alive(), "the intake did not stop"

    def close(self) -> None:
        self.halt()
        self.auth.close()
        self.reader.close()

    def subscribed(self, count: int = 1) -> None:
        """``count`` subscriptions so far; after a LATEST one, its gap poll done too."""
        wait_until(
            lambda: (
                sum(1 for s in self.emulator.subscribe_log() if s["outcome"] == "subscribed")
                >= count
            ),
            f"{count} subscription(s)",
        )
        if self.emulator.subscribe_log()[-1]["preset"] == "LATEST":
            wait_until(lambda: self.status().reconciles >= 1, "the LATEST start's gap poll")

    def status(self) -> StreamStatus:
        return self.board.snapshot()[self.sync.name]

    def leads(self) -> dict[str, tuple[str, str | None]]:
        with self.sessions() as session:
            rows = session.execute(select(Lead.salesforce_id, Lead.state, Lead.note)).all()
        return {sf_id: (state, note) for sf_id, state, note in rows}

    def position(self) -> stream_store.StreamPosition | None:
        with self.sessions() as session:
            return stream_store.get_position(session, self.sync.name)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[SalesforceEmulator]:
    sf = SalesforceEmulator(cert_dir=tmp_path / "sf-certs", keepalive=0.2)
    sf.start()
    try:
        yield sf
    finally:
        sf.stop()


@pytest.fixture
def stream(emulator: SalesforceEmulator, engine: Engine) -> Iterator[Stream]:
    running = Stream(emulator, engine, make_sync()).start()
    running.subscribed()
    try:
        yield running
    finally:
        running.close()


class TestIntake:
    def test_created_record_becomes_a_queued_lead(
        self, emulator: SalesforceEmulator, stream: Stream
    ) -> None:
        """A CREATE is read through REST and queued; its replay id is stored after."""
        [record_id] = emulator.add_records(lead_records(1))
        wait_until(lambda: stream.leads().get(record_id, ("",))[0] == "queued", "a queued lead")
        wait_until(lambda: stream.queued == ["web"], "delivery woken once")
        position = stream.position()
        assert position is not None and position.replay_id and position.last_event_at
        soql = [q["soql"] for q in emulator.query_log()]
        assert any(f"Id IN ('{record_id}')" in text for text in soql)

    def test_do_not_call_is_skipped(self, emulator: SalesforceEmulator, stream: Stream) -> None:
        """The same rules as a poll: a DoNotCall record becomes skipped, never queued."""
        [record_id] = emulator.add_records(lead_records(1, DoNotCall=True))
        wait_until(lambda: record_id in stream.leads(), "the lead")
        assert stream.leads()[record_id][0] == "skipped"

    def test_where_is_applied(self, emulator: SalesforceEmulator, engine: Engine) -> None:
        """A record outside the sync's where reads nothing, so no lead is made."""
        running = Stream(emulator, engine, make_sync(where="Company = 'Acme'")).start()
        try:
            running.subscribed()
            [other] = emulator.add_records(lead_records(1, Company="Globex"))
            [kept] = emulator.add_records(lead_records(1, start=1))
            wait_until(lambda: kept in running.leads(), "the matching lead")
            assert other not in running.leads()
        finally:
            running.close()

    def test_delete_skips_a_lead_not_yet_sent(
        self, emulator: SalesforceEmulator, stream: Stream
    ) -> None:
        """A DELETE turns a queued lead skipped (never dialled); an UNDELETE queues it again."""
        [record_id] = emulator.add_records(lead_records(1))
        wait_until(lambda: stream.leads().get(record_id, ("",))[0] == "queued", "queued")
        emulator.delete_record("Lead", record_id)
        wait_until(lambda: stream.leads()[record_id][0] == "skipped", "skipped")
        assert stream.leads()[record_id][1] == "record deleted in Salesforce"
        with stream.sessions() as session:
            reasons = session.scalars(select(LeadTransition.reason)).all()
        assert "stream: record deleted in Salesforce" in reasons
        emulator.undelete_record("Lead", record_id)
        wait_until(lambda: stream.leads()[record_id][0] == "queued", "queued again")

    def test_delete_skips_a_held_lead(self, emulator: SalesforceEmulator, stream: Stream) -> None:
        """A held lead whose record is deleted is skipped: a later release cannot queue it."""
        [record_id] = emulator.add_records(lead_records(1))
        wait_until(lambda: stream.leads().get(record_id, ("",))[0] == "queued", "queued")
        with stream.sessions.begin() as session:
            session.execute(
                update(Lead).where(Lead.salesforce_id == record_id).values(state="held")
            )
        emulator.delete_record("Lead", record_id)
        wait_until(lambda: stream.leads()[record_id][0] == "skipped", "skipped")
        assert stream.leads()[record_id][1] == "record deleted in Salesforce"

    def test_gap_event_reads_the_record(self, emulator: SalesforceEmulator, engine: Engine) -> None:
        """A record known only through a gap event is read and queued."""
        # Before the stream, and back-dated: no event, no poll reads them.
        ids = emulator.add_records(lead_records(2, SystemModstamp=BACK_DATED))
        running = Stream(emulator, engine, make_sync()).start()
        try:
            running.subscribed()
            emulator.publish_gap("Lead", ids, "GAP_CREATE")
            wait_until(lambda: set(running.leads()) == set(ids), "both leads")
            assert running.board.snapshot()["web"].gaps == 1
        finally:
            running.close()

    def test_stream_and_poll_make_one_lead(
        self, emulator: SalesforceEmulator, stream: Stream
    ) -> None:
        """A record read by the stream and again by a poll is one lead, queued once."""
        [record_id] = emulator.add_records(lead_records(1))
        wait_until(lambda: record_id in stream.leads(), "the lead")
        # A clock two seconds ahead: the poll window ends at a whole second before now.
        ahead = lambda: datetime.now(UTC) + timedelta(seconds=2)  # noqa: E731
        result = poll_sync(stream.sessions, stream.reader, stream.sync, now=ahead)
        assert result.ok and result.fetched == 1 and result.new == 0
        with stream.sessions() as session:
            count = len(session.scalars(select(Lead.id)).all())
        assert count == 1


class TestApiUsage:
    def test_high_usage_lengthens_the_linger(
        self, emulator: SalesforceEmulator, stream: Stream
    ) -> None:
        """Above max_api_usage_percent the stream reads less often; below, as configured."""
        emulator.set_api_usage(14_000, 15_000)
        [first] = emulator.add_records(lead_records(1))
        wait_until(lambda: first in stream.leads(), "the lead")
        assert stream.intake._current_linger(0.1) == BUSY_LINGER
        emulator.set_api_usage(100, 15_000)
        [second] = emulator.add_records(lead_records(1, start=1))
        wait_until(lambda: second in stream.leads(), "the second lead")
        assert stream.intake._current_linger(0.1) == 0.1


class TestResume:
    def test_restart_resumes_from_the_stored_replay_id(
        self, emulator: SalesforceEmulator, stream: Stream
    ) -> None:
        """Records created while the intake is down arrive after it starts again."""
        [first] = emulator.add_records(lead_records(1))
        wait_until(lambda: first in stream.leads(), "the first lead")
        stream.halt()
        missed = emulator.add_records(lead_records(3, start=1))
        stream.start()
        wait_until(lambda: set(missed) <= set(stream.leads()), "the missed leads")
        assert emulator.subscribe_log()[-1]["preset"] == "CUSTOM"

    def test_expired_replay_reconciles_the_gap(
        self, emulator: SalesforceEmulator, stream: Stream
    ) -> None:
        """An expired replay id: LATEST, and a reconciliation poll brings the missed records."""
        [first] = emulator.add_records(lead_records(1))
        wait_until(lambda: first in stream.leads(), "the first lead")
        stream.halt()
        missed = emulator.add_records(lead_records(2, start=1))
        emulator.pubsub_fault("expire_replay")
        stream.start()
        wait_until(lambda: set(missed) <= set(stream.leads()), "the missed leads")
        position = stream.position()
        assert position is not None and position.replay_resets == 1
        assert stream.board.snapshot()["web"].replay_resets == 1
        [after] = emulator.add_records(lead_records(1, start=5))
        wait_until(lambda: after in stream.leads(), "a lead after the reset")
        states = stream.leads()
        assert len(states) == 4


class TestTopics:
    def test_platform_event_names_the_record(
        self, emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        """On a platform event topic, the event's RecordId__c is the record read."""
        sync = make_sync(source={"mode": "stream", "topic": "/event/Lead_Ready__e"})
        [record_id] = emulator.add_records(lead_records(1))  # its CDC event is not on this topic
        running = Stream(emulator, engine, sync).start()
        try:
            running.subscribed()
            emulator.publish_platform_event("/event/Lead_Ready__e", {"RecordId__c": record_id})
            wait_until(lambda: record_id in running.leads(), "the lead")
        finally:
            running.close()

    def test_all_changes_topic_reads_only_the_sync_object(
        self, emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        """On /data/ChangeEvents, events of other objects are received and left alone."""
        sync = make_sync(source={"mode": "stream", "topic": "/data/ChangeEvents"})
        running = Stream(emulator, engine, sync).start()
        try:
            running.subscribed()
            emulator.add_records(
                [{"sobject": "Contact", "LastName": "Other", "Phone": "+12025550199"}]
            )
            [lead_id] = emulator.add_records(lead_records(1))
            wait_until(lambda: lead_id in running.leads(), "the lead")
            assert set(running.leads()) == {lead_id}
            reads = [q["soql"] for q in emulator.query_log()]
            assert all("FROM Lead" in soql for soql in reads)
        finally:
            running.close()
