"""Events that name no record, headers out of range, LATEST starts, stalls: the stream goes on.

Each test drives the real subscriber against the Salesforce emulator's Pub/Sub
API and a real database. Records "changed silently" are put in the emulator's
store without an event (as a field's type conversion or an overflowing
transaction leaves them): only a reconciliation poll can find them.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from syncd.adapters.pubsub import ChangeEvent
from syncd.domain.record_ids import PLACEHOLDER_ID
from syncd.metrics import REGISTRY
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.stream import StreamIntake, StreamSupervisor, _Events
from syncd.services.stream_batch import Batch
from syncd.services.stream_stall import StallWatch
from tests.e2e.harness import lead_records, wait_until
from tests.integration.test_stream import Stream, make_sync
from tests.integration.test_stream import emulator as emulator

PLATFORM = "/event/Lead_Ready__e"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"sync": "web", **labels}) or 0.0


def dropped(reason: str) -> float:
    return sample("syncd_stream_dropped_events_total", reason=reason)


def silently_add(emulator: SalesforceEmulator, records: list[dict[str, Any]]) -> list[str]:
    """Records stored without a change event (only a poll can find them)."""
    with emulator.store.lock:
        return emulator.store.add(records)


def publish_header(emulator: SalesforceEmulator, change: str, **header: Any) -> None:
    emulator.bus.publish_header("Lead", emulator.store.fields("Lead"), change, header)


def started(emulator: SalesforceEmulator, engine: Engine, **sync: Any) -> Stream:
    running = Stream(emulator, engine, make_sync(**sync)).start()
    running.subscribed()
    return running


@pytest.fixture
def stream(emulator: SalesforceEmulator, engine: Engine) -> Iterator[Stream]:
    running = started(emulator, engine)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def platform(emulator: SalesforceEmulator, engine: Engine) -> Iterator[Stream]:
    running = started(emulator, engine, source={"mode": "stream", "topic": PLATFORM})
    try:
        yield running
    finally:
        running.close()


def advanced_past(running: Stream, before: bytes | None) -> bool:
    position = running.position()
    return position is not None and position.replay_id not in (None, before)


class TestIdsThatNameNoRecord:
    @pytest.mark.parametrize("value", ["n/a", "00Q' OR Id != '", PLACEHOLDER_ID])
    def test_platform_event_with_no_id_is_dropped(
        self, emulator: SalesforceEmulator, platform: Stream, value: str
    ) -> None:
        """A Flow's "n/a" is dropped with a count; the next event's record is read."""
        before = dropped("bad_id")
        [record_id] = emulator.add_records(lead_records(1))
        emulator.publish_platform_event(PLATFORM, {"RecordId__c": value})
        emulator.publish_platform_event(PLATFORM, {"RecordId__c": record_id})
        wait_until(lambda: record_id in platform.leads(), "the next event's lead")
        assert dropped("bad_id") == before + 1
        assert platform.status().dropped == 1 and platform.status().stalled is None
        assert sample("syncd_stream_stalled") == 0

    def test_wildcard_reconciles_from_its_commit_time(
        self, emulator: SalesforceEmulator, stream: Stream
    ) -> None:
        """``00Q*`` (a type conversion touched every Lead): a poll finds the changed records."""
        before = stream.position()
        ids = silently_add(emulator, lead_records(2, start=10))
        publish_header(emulator, "UPDATE", recordIds=["00Q*"])
        wait_until(lambda: set(ids) <= set(stream.leads()), "the converted records")
        wait_until(lambda: advanced_past(stream, before.replay_id if before else None), "stored")
        assert stream.status().reconciles == 2  # the LATEST start's, the wildcard's
        assert not any("00Q*" in q["soql"] for q in emulator.query_log())


class TestHeadersOutOfRange:
    @pytest.mark.parametrize("stamp", [2**62, float("nan"), 1e20])
    def test_commit_time_out_of_range_is_unknown(
        self, emulator: SalesforceEmulator, stream: Stream, stamp: float
    ) -> None:
        """A commitTimestamp no clock can hold: read as unknown, the record read all the same."""
        [record_id] = silently_add(emulator, lead_records(1, SystemModstamp="2021-06-01T00:00:00Z"))
        publish_header(emulator, "UPDATE", recordIds=[record_id], commitTimestamp=stamp)
        wait_until(lambda: record_id in stream.leads(), "the lead")
        wait_until(lambda: advanced_past(stream, None), "the replay id stored")
        assert stream.status().stalled is None and stream.status().reconnects == 0

    def test_platform_created_date_out_of_range(
        self, emulator: SalesforceEmulator, platform: Stream
    ) -> None:
        """A platform event's CreatedDate out of range; with no Id too, it is dropped."""
        before = dropped("bad_header")
        [record_id] = emulator.add_records(lead_records(1))
        emulator.publish_platform_event(PLATFORM, {"CreatedDate": float("nan")})
        emulator.publish_platform_event(PLATFORM, {"RecordId__c": record_id, "CreatedDate": 2**62})
        wait_until(lambda: record_id in platform.leads(), "the lead")
        assert dropped("bad_header") == before + 1
        assert platform.status().reconnects == 0


class TestGapOverflow:
    def test_overflow_reconciles_at_once(
        self, emulator: SalesforceEmulator, stream: Stream
    ) -> None:
        """GAP_OVERFLOW names the placeholder: a poll from its commit time reads the records."""
        before = dropped("bad_id")
        ids = silently_add(emulator, lead_records(3, start=20))
        emulator.publish_gap("Lead", [PLACEHOLDER_ID], "GAP_OVERFLOW")
        wait_until(lambda: set(ids) <= set(stream.leads()), "the overflowed records")
        assert stream.status().gaps == 1 and dropped("bad_id") == before
        assert not any(PLACEHOLDER_ID in q["soql"] for q in emulator.query_log())


class TestNoWindowAtLatest:
    def test_first_start_polls_since_it_started(
        self, emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        """Records changed just before the first subscribe (at LATEST) are polled."""
        ids = emulator.add_records(lead_records(2, start=30))
        running = started(emulator, engine)
        try:
            wait_until(lambda: set(ids) <= set(running.leads()), "the records before the start")
        finally:
            running.close()

    def test_resubscribe_at_latest_polls_the_gap(self, tmp_path: Path, engine: Engine) -> None:
        """No replay id stored yet, the stream drops: records of the outage are polled."""
        quiet = SalesforceEmulator(cert_dir=tmp_path / "quiet", keepalive=3600)
        quiet.start()
        running = started(quiet, engine)
        try:
            assert running.position() is None  # no keepalive, no event: nothing stored
            with quiet.bus.cond:
                quiet.pubsub.faults.unavailable = 10_000
            quiet.pubsub_fault("drop")
            wait_until(
                lambda: any(s["outcome"] == "unavailable" for s in quiet.subscribe_log()),
                "the outage",
            )
            ids = quiet.add_records(lead_records(2, start=40))
            with quiet.bus.cond:
                quiet.pubsub.faults.unavailable = 0
            running.subscribed(2)
            assert quiet.subscribe_log()[-1]["preset"] == "LATEST"
            wait_until(lambda: set(ids) <= set(running.leads()), "the outage's records")
        finally:
            running.close()
            quiet.stop()


def fail_once_on_forget(engine: Engine) -> list[str]:
    """The first write of a replay reset fails as a database error would."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        resets = statement.startswith("UPDATE stream_state") and "replay_resets" in statement
        if resets and not seen:
            seen.append(statement)
            raise OperationalError(statement, {}, Exception("database is locked"))

    event.listen(engine, "before_cursor_execute", before)
    return seen


class TestSupervisor:
    def test_database_error_on_refusal_leaves_one_subscriber(
        self, emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        """The refused-replay path fails once: the intake ends with its subscription, and
        the next intake's stream is the only one open; the gap is still polled."""
        first = started(emulator, engine)
        [seen] = emulator.add_records(lead_records(1))
        wait_until(lambda: seen in first.leads(), "a stored replay id")
        first.close()
        missed = emulator.add_records(lead_records(2, start=50))
        emulator.pubsub_fault("expire_replay")
        failed = fail_once_on_forget(engine)
        stop = threading.Event()
        shared = Stream(emulator, engine, make_sync())
        intakes: list[StreamIntake] = []

        def make(_sync: Any) -> StreamIntake:
            intakes.append(shared.build())
            return intakes[-1]

        supervisor = StreamSupervisor([shared.sync], make, stop)
        supervisor.start()
        try:
            wait_until(lambda: set(missed) <= set(shared.leads()), "the gap polled")
            assert failed and len(intakes) == 2
            wait_until(lambda: emulator.pubsub.open_streams() == 1, "one open stream")
            alive = [t for t in threading.enumerate() if t.name == "pubsub-web" and t.is_alive()]
            assert len(alive) == 1
        finally:
            stop.set()
            assert supervisor.join(15) == []
            shared.auth.close()
            shared.reader.close()


class TestStall:
    def test_failing_batch_shows_stalled(
        self, emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        """The same batch failing again and again: stalled, then advancing once it commits."""
        running = Stream(emulator, engine, make_sync())
        running.stall = StallWatch(after=600, failures=2)
        running.start().subscribed()
        try:
            emulator.inject("500", count=3)
            [record_id] = emulator.add_records(lead_records(1, start=60))
            wait_until(lambda: running.status().stalled is not None, "stalled")
            assert "failed" in (running.status().stalled or "")
            assert sample("syncd_stream_stalled") == 1
            wait_until(lambda: record_id in running.leads(), "the lead at last")
            wait_until(lambda: running.status().stalled is None, "advancing again")
            assert sample("syncd_stream_stalled") == 0
        finally:
            running.close()

    def test_replay_id_standing_still_shows_stalled(
        self, emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        """Keepalives arrive while one batch takes too long: stalled past the threshold."""
        running = Stream(emulator, engine, make_sync())
        running.stall = StallWatch(after=1.0, failures=100)
        running.start().subscribed()
        try:
            emulator.inject("delay", count=1, seconds=4)
            [record_id] = emulator.add_records(lead_records(1, start=70))
            wait_until(lambda: running.status().stalled is not None, "stalled")
            assert "no replay id stored" in (running.status().stalled or "")
            wait_until(lambda: record_id in running.leads(), "the lead at last")
            wait_until(lambda: running.status().stalled is None, "advancing again")
        finally:
            running.close()


class TestMemory:
    def test_batch_keeps_no_decoded_values(
        self, emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        """Once a batch has an event's Ids, the event (and its values) can go."""
        running = Stream(emulator, engine, make_sync())
        try:
            values = {"Phone": "x" * 1_000_000}
            events = [ChangeEvent(b"r", ("00Q8d000000AbCdEAA",), "CREATE", "Lead", None, values)]
            before = sys.getrefcount(values)
            batch, taken = running.build()._collect(_Events(events), threading.Event())
            assert isinstance(batch, Batch) and taken == 1 and list(batch.read)
            assert sys.getrefcount(values) == before - 1  # only the test holds them now
        finally:
            running.close()
