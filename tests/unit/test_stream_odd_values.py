"""Pure parts of the stream's defences: Ids that name no record, headers out of range,
the stall watch, and the stored state ``syncd status`` shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.adapters.pubsub import UNDECODABLE, decode_event
from syncd.domain.record_ids import PLACEHOLDER_ID, is_record_id, sort_ids
from syncd.services.stream_board import STORED_WITHIN, stored_state
from syncd.services.stream_stall import StallWatch

ID = "00Q8d000000AbCdEAA"


class TestRecordIds:
    def test_sorts_what_ids_name(self) -> None:
        """Records, wildcards, placeholders and the rest, each in its first order, no repeats."""
        found = sort_ids([ID, "00Q*", PLACEHOLDER_ID, "n/a", ID, 7, "00Q8d000000AbCe"])
        assert found.records == (ID, "00Q8d000000AbCe")
        assert found.wildcards == ("00Q*",)
        assert found.placeholders == 1
        assert found.invalid == ("n/a", "7")

    @pytest.mark.parametrize(
        "value", ["", "00Q' OR Id != '", "0" * 15, PLACEHOLDER_ID, "*", "00Q8d000000AbCdEAA1"]
    )
    def test_not_a_record(self, value: str) -> None:
        """Only 15- or 18-character alphanumeric Ids, and not the placeholder, name a record."""
        assert not is_record_id(value)

    def test_long_bad_values_are_cut_for_the_log(self) -> None:
        """A Flow may write anything: the log line shows at most 40 characters of it."""
        [shown] = sort_ids(["x" * 500]).invalid
        assert len(shown) == 40


def header(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "entityName": "Lead",
        "recordIds": [ID],
        "changeType": "UPDATE",
        "commitTimestamp": 1_700_000_000_000,
    }
    base.update(values)
    return {"ChangeEventHeader": base}


class TestDecodeNeverRaises:
    @pytest.mark.parametrize("stamp", [2**62, float("nan"), float("inf"), 1e20, -1, True, "x"])
    def test_commit_time_out_of_range_is_absent(self, stamp: object) -> None:
        """A commit time no clock holds is read as unknown and named as a flaw."""
        event = decode_event(b"r", header(commitTimestamp=stamp), "RecordId__c")
        assert event.commit_at is None and event.record_ids == (ID,)
        assert event.flaws and "commitTimestamp" in event.flaws[0]

    def test_platform_created_date_out_of_range(self) -> None:
        """The same for a platform event's CreatedDate; its Id is still read."""
        event = decode_event(b"r", {"CreatedDate": 2**62, "RecordId__c": ID}, "RecordId__c")
        assert event.record_ids == (ID,) and event.commit_at is None and event.flaws

    @pytest.mark.parametrize(
        "values",
        [
            header(recordIds="00Q8d000000AbCdEAA"),
            header(recordIds=[1, 2]),
            header(changeType=3),
            {"RecordId__c": 42},
        ],
    )
    def test_unreadable_fields_are_absent(self, values: dict[str, object]) -> None:
        """A field of the wrong type is absent and named; nothing raises."""
        event = decode_event(b"r", values, "RecordId__c")
        assert event.flaws

    def test_not_a_record_at_all(self) -> None:
        """A payload that is no record is undecodable."""
        assert decode_event(b"r", [1, 2], "RecordId__c").flaws == (UNDECODABLE,)

    def test_values_only_when_asked(self) -> None:
        """The decoded values are dropped unless kept on purpose."""
        assert decode_event(b"r", header(), "RecordId__c", keep_values=False).values == {}
        assert decode_event(b"r", header(), "RecordId__c").values["ChangeEventHeader"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestStallWatch:
    def test_received_and_not_stored(self) -> None:
        """Something arrived and no replay id was stored past the threshold: stalled."""
        clock = FakeClock()
        watch = StallWatch(after=10, failures=3, clock=clock)
        assert watch.reason() is None
        watch.received()
        clock.now = 10
        assert watch.reason() is None
        clock.now = 11
        assert "no replay id stored" in (watch.reason() or "")
        watch.progressed(outstanding=True)  # progress restarts the clock
        assert watch.reason() is None
        clock.now = 22
        assert watch.reason() is not None
        watch.progressed(outstanding=False)
        clock.now = 1000
        assert watch.reason() is None

    def test_same_batch_failing(self) -> None:
        """A batch failing ``failures`` times in a row is stalled at once; a commit clears it."""
        watch = StallWatch(after=1000, failures=3, clock=FakeClock())
        watch.failed()
        watch.failed()
        assert watch.reason() is None
        watch.failed()
        assert "failed 3 times" in (watch.reason() or "")
        watch.progressed(outstanding=False)
        assert watch.reason() is None


class TestStoredState:
    def test_states(self) -> None:
        """Advancing while stored recently under a leader; stalled past that; else not running."""
        now = datetime(2026, 1, 1, tzinfo=UTC)
        old = now - STORED_WITHIN - timedelta(seconds=1)
        assert stored_state(now, None, now) == "not running"
        assert stored_state(now - timedelta(minutes=1), old, now) == "advancing"
        assert stored_state(old, old, now) == "stalled"
        assert stored_state(None, now - timedelta(minutes=1), now) == "advancing"
        assert stored_state(old, now, now) == "advancing"  # a new leader gets its time
