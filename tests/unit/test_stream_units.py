"""Pure parts of streaming: the Id query, event decoding, org ids, backoff, stream health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncd.adapters.pubsub import Backoff, PubSubError, decode_event, org_id_of
from syncd.config.models import SyncConfig
from syncd.domain.soql import build_ids_query
from syncd.services.stream import DISCONNECTED_ALLOWED, StreamBoard

ID1 = "00Q8d000000AbCdEAA"
ID2 = "00Q8d000000AbCe"


def make_sync(**overrides: Any) -> SyncConfig:
    data: dict[str, Any] = {
        "name": "web",
        "agent": "agt_1",
        "source": {"mode": "stream"},
        "mapping": {"phoneNumber": "Phone", "lastName": "LastName"},
    }
    data.update(overrides)
    return SyncConfig.model_validate(data)


class TestIdsQuery:
    def test_fields_ids_and_where(self) -> None:
        """The poll's fields, the Ids (deduplicated) and the sync's where, ANDed."""
        soql = build_ids_query(make_sync(where="LeadSource = 'Web'").query_spec, [ID1, ID2, ID1])
        assert soql == (
            "SELECT Phone, LastName, DoNotCall, Id, SystemModstamp, CreatedDate FROM Lead "
            f"WHERE Id IN ('{ID1}', '{ID2}') AND (LeadSource = 'Web') ORDER BY Id"
        )

    @pytest.mark.parametrize("bad", ["00Q' OR Id != '", "short", "00Q8d000000AbCdEAA1"])
    def test_refuses_what_is_not_an_id(self, bad: str) -> None:
        """Only 15- or 18-character alphanumeric Ids reach the SOQL."""
        with pytest.raises(ValueError, match="not a Salesforce Id"):
            build_ids_query(make_sync().query_spec, [bad])

    def test_refuses_no_ids(self) -> None:
        """An empty Id list is a bug, not a query of everything."""
        with pytest.raises(ValueError):
            build_ids_query(make_sync().query_spec, [])


class TestDecode:
    def test_change_event(self) -> None:
        """The header gives Ids, change type, entity and commit time."""
        values = {
            "ChangeEventHeader": {
                "entityName": "Lead",
                "recordIds": [ID1, ID2],
                "changeType": "GAP_UPDATE",
                "commitTimestamp": 1_700_000_000_000,
            }
        }
        event = decode_event(b"r1", values, "RecordId__c")
        assert event.record_ids == (ID1, ID2)
        assert event.change_type == "GAP_UPDATE"
        assert event.entity == "Lead"
        assert event.commit_at == datetime.fromtimestamp(1_700_000_000, UTC)

    def test_platform_event(self) -> None:
        """A platform event names its record in the configured field."""
        event = decode_event(b"r2", {"CreatedDate": 1, "RecordId__c": ID1}, "RecordId__c")
        assert event.record_ids == (ID1,) and event.change_type is None

    def test_platform_event_without_id(self) -> None:
        """A platform event without the field names no record."""
        assert decode_event(b"r3", {"CreatedDate": 1}, "RecordId__c").record_ids == ()


class TestOrgId:
    def test_eighteen_characters(self) -> None:
        """The org id is the session id's 15-character prefix with its case suffix."""
        assert org_id_of("00D8d000000SyNc!AQ4AQabc") == "00D8d000000SyNcEAK"

    def test_not_a_session_id(self) -> None:
        """A token without the org prefix is a clear error."""
        with pytest.raises(PubSubError):
            org_id_of("opaque-token")


class TestBackoff:
    def test_grows_to_the_maximum_with_jitter(self) -> None:
        """Delays double from the initial value, stay within half to all of the ceiling."""
        backoff = Backoff(1.0, 8.0, rng=lambda: 1.0)
        assert [backoff.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
        low = Backoff(1.0, 8.0, rng=lambda: 0.0)
        assert [low.next_delay() for _ in range(3)] == [0.5, 1.0, 2.0]
        backoff.reset()
        assert backoff.next_delay() == 1.0

    def test_many_failures_do_not_overflow(self) -> None:
        """Thousands of failures keep the delay at the maximum."""
        backoff = Backoff(1.0, 60.0, rng=lambda: 1.0, failures=5000)
        assert backoff.next_delay() == 60.0


class TestBoard:
    def test_disconnected_too_long_is_a_problem(self) -> None:
        """A stream that runs here and has been down too long is reported; others are fine."""
        now = datetime(2026, 1, 1, tzinfo=UTC)
        board = StreamBoard([make_sync()], lambda: now)
        assert board.problems() == {"web": None}
        board.update("web", running=True, connected=False, since=now - DISCONNECTED_ALLOWED)
        assert board.problems() == {"web": None}
        board.update("web", since=now - DISCONNECTED_ALLOWED - timedelta(seconds=1))
        assert "disconnected" in (board.problems()["web"] or "")
        board.update("web", running=False)
        assert board.problems() == {"web": None}

    def test_polled_syncs_are_not_listed(self) -> None:
        """Only streamed syncs have a stream check."""
        board = StreamBoard([make_sync(source={"mode": "poll"})])
        assert board.problems() == {}

    def test_details_for_readyz(self) -> None:
        """The details give connection, ages and counters per streamed sync."""
        now = datetime(2026, 1, 1, tzinfo=UTC)
        board = StreamBoard([make_sync()], lambda: now)
        board.update("web", running=True, connected=True, last_event_at=now - timedelta(seconds=2))
        board.update("web", replay_lag_seconds=0.25)
        board.bump("web", "gaps")
        details = board.details()["web"]
        assert details["connected"] is True
        assert details["last_event_age_seconds"] == 2.0
        assert details["replay_lag_seconds"] == 0.25
        assert (details["gaps"], details["reconnects"]) == (1, 0)
