"""Unit tests for syncd.domain.page_plan: what a page of mapped records does to the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncd.config.models import SyncConfig
from syncd.domain.mapping import MappedLead
from syncd.domain.page_plan import (
    ExistingLead,
    LeadChange,
    NewLead,
    RecordChange,
    StaleRead,
    is_stale,
    plan_page,
)
from syncd.domain.rules import DO_NOT_CALL_NOTE
from syncd.domain.states import LeadState

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
END = T0 + timedelta(minutes=10)
SYNC = SyncConfig.model_validate(
    {"name": "web", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}}
)


def lead(
    sf_id: str,
    digest: str = "d1",
    *,
    cursor: datetime | None = T0 + timedelta(minutes=1),
    phone: str = "+14155550100",
    **fields: Any,
) -> MappedLead:
    """A mapped record ready to call, with the given Id, digest and cursor."""
    values: dict[str, Any] = {
        "salesforce_id": sf_id,
        "cursor": cursor,
        "state": LeadState.QUEUED,
        "agent_id": "agt_1",
        "payload": {"phoneNumber": phone, "salesforceId": sf_id, "digest": digest},
        "phone_e164": phone,
        "note": None,
        "do_not_call": False,
        "digest": digest,
    }
    values.update(fields)
    return MappedLead(**values)


def plan(
    mapped: list[MappedLead],
    existing: dict[str, ExistingLead] | None = None,
    recent: set[tuple[str, str]] | None = None,
    sync: SyncConfig = SYNC,
) -> Any:
    return plan_page(mapped, existing or {}, recent or set(), sync.intake_rules, T0, END)


class TestReRead:
    def test_unchanged_record_costs_nothing(self) -> None:
        """A record read again with the stored digest is counted, not written."""
        result = plan([lead("00Q1", "d1")], {"00Q1": ExistingLead(7, "accepted", "d1")})
        assert result.unchanged == 1
        assert (result.inserts, result.changes, result.recorded, result.decided) == ([], [], [], [])

    def test_unchanged_record_still_moves_the_watermark(self) -> None:
        """A re-read's cursor counts for the watermark like any other."""
        result = plan(
            [lead("00Q1", cursor=T0 + timedelta(minutes=3))],
            {"00Q1": ExistingLead(7, "queued", "d1")},
        )
        assert result.watermark == T0 + timedelta(minutes=3)


class TestNewRecord:
    def test_inserted_with_the_record_values(self) -> None:
        """A record read for the first time becomes a new lead carrying its values."""
        read = lead("00Q1", time_zone="Europe/Paris")
        result = plan([read])
        assert result.inserts == [
            NewLead(
                salesforce_id="00Q1",
                agent_id="agt_1",
                state="queued",
                payload=read.payload,
                phone_e164="+14155550100",
                record_cursor=T0 + timedelta(minutes=1),
                record_hash="d1",
                note=None,
                do_not_call=False,
                time_zone="Europe/Paris",
            )
        ]
        assert result.decided == [(read, LeadState.QUEUED, None, "new")]

    def test_missing_cursor_takes_the_window_start(self) -> None:
        """A record without a cursor is stored at the window's start and leaves the watermark."""
        result = plan([lead("00Q1", cursor=None)])
        assert result.inserts[0].record_cursor == T0
        assert result.watermark is None

    def test_recent_number_skips(self) -> None:
        """A number recently sent to the same agent makes the new lead skipped, with a note."""
        result = plan([lead("00Q1")], recent={("agt_1", "+14155550100")})
        assert result.inserts[0].state == "skipped"
        assert result.inserts[0].note == "duplicate phone within 1d"


class TestChangedNotYetSent:
    def test_changed_queued_lead_is_evaluated_again(self) -> None:
        """A changed record of a queued lead becomes a change with the new values."""
        read = lead("00Q1", "d2", phone="+14155550199")
        result = plan([read], {"00Q1": ExistingLead(7, "queued", "d1")})
        assert result.changes == [
            LeadChange(
                lead_id=7,
                from_state="queued",
                agent_id="agt_1",
                state="queued",
                payload=read.payload,
                phone_e164="+14155550199",
                record_cursor=T0 + timedelta(minutes=1),
                record_hash="d2",
                note=None,
                salesforce_id="00Q1",
            )
        ]
        assert result.decided == [(read, LeadState.QUEUED, None, "updated")]
        assert (result.inserts, result.recorded, result.unchanged) == ([], [], 0)

    def test_changed_queued_lead_can_become_skipped(self) -> None:
        """The rules apply again: DoNotCall now set skips the queued lead."""
        read = lead("00Q1", "d2", do_not_call=True)
        result = plan([read], {"00Q1": ExistingLead(7, "queued", "d1")})
        change = result.changes[0]
        assert (change.from_state, change.state, change.note) == (
            "queued",
            "skipped",
            DO_NOT_CALL_NOTE,
        )
        assert change.do_not_call is True

    def test_held_lead_stays_held(self) -> None:
        """A change never releases a held lead: ready to call, it stays held."""
        read = lead("00Q1", "d2")
        result = plan([read], {"00Q1": ExistingLead(7, "held", "d1")})
        change = result.changes[0]
        assert (change.from_state, change.state) == ("held", "held")
        assert change.payload == read.payload and change.record_hash == "d2"
        assert result.decided == [(read, LeadState.HELD, None, "updated")]

    def test_held_lead_can_become_skipped(self) -> None:
        """A held lead whose record now says do not call leaves held for skipped."""
        result = plan(
            [lead("00Q1", "d2", do_not_call=True)], {"00Q1": ExistingLead(7, "held", "d1")}
        )
        assert result.changes[0].state == "skipped"


class TestChangedAfterDelivery:
    @pytest.mark.parametrize("state", ["sending", "accepted", "uncertain"])
    def test_sent_lead_only_recorded_and_keeps_what_was_sent(self, state: str) -> None:
        """A lead that was (or may have been) sent keeps its payload, number and agent."""
        result = plan(
            [lead("00Q1", "d2", phone="+14155550199")], {"00Q1": ExistingLead(7, state, "d1")}
        )
        assert result.recorded == [
            RecordChange(
                7,
                state,
                T0 + timedelta(minutes=1),
                "d2",
                False,
                f"polled: record changed while {state}; stored, not sent again by the poll",
            )
        ]
        assert (result.inserts, result.changes, result.decided) == ([], [], [])

    @pytest.mark.parametrize("state", ["rejected", "failed"])
    def test_unsent_lead_recorded_with_the_new_payload(self, state: str) -> None:
        """A lead that never reached SimZ stores the new payload, number and agent."""
        read = lead("00Q1", "d2", phone="+14155550199")
        result = plan([read], {"00Q1": ExistingLead(7, state, "d1")})
        recorded = result.recorded[0]
        assert (recorded.payload, recorded.phone_e164, recorded.agent_id) == (
            read.payload,
            "+14155550199",
            "agt_1",
        )
        assert recorded.state == state and result.changes == []

    def test_unsent_lead_recorded_with_the_new_zone(self) -> None:
        """A failed lead's record whose zone field changed stores the new zone: a requeue
        must wait for calling hours in the zone the record names now."""
        read = lead("00Q1", "d2", time_zone="America/Los_Angeles")
        failed = plan([read], {"00Q1": ExistingLead(7, "failed", "d1")}).recorded[0]
        assert failed.time_zone == "America/Los_Angeles"
        sent = plan([read], {"00Q1": ExistingLead(7, "accepted", "d1")}).recorded[0]
        assert sent.time_zone is None  # what was sent is kept

    def test_do_not_call_is_noted_in_the_reason(self) -> None:
        """DoNotCall set on a sent lead's record is kept, and said in the audit note."""
        result = plan(
            [lead("00Q1", "d2", do_not_call=True)], {"00Q1": ExistingLead(7, "accepted", "d1")}
        )
        recorded = result.recorded[0]
        assert recorded.do_not_call is True
        assert recorded.reason.endswith(f"; {DO_NOT_CALL_NOTE}")

    def test_do_not_call_not_noted_when_the_sync_ignores_it(self) -> None:
        """A sync that opts out of DoNotCall records the flag without the note."""
        sync = SyncConfig.model_validate(
            {
                "name": "web",
                "agent": "agt_1",
                "mapping": {"phoneNumber": "Phone"},
                "rules": {"respect_do_not_call": False},
            }
        )
        result = plan(
            [lead("00Q1", "d2", do_not_call=True)],
            {"00Q1": ExistingLead(7, "accepted", "d1")},
            sync=sync,
        )
        assert result.recorded[0].do_not_call is True
        assert DO_NOT_CALL_NOTE not in result.recorded[0].reason


class TestWatermark:
    def test_largest_cursor_within_the_window(self) -> None:
        """The watermark is the page's largest cursor before the window's end."""
        result = plan([lead("00Q1", cursor=T0 + timedelta(minutes=4)), lead("00Q2", cursor=T0)])
        assert (result.watermark, result.beyond_window) == (T0 + timedelta(minutes=4), 0)

    def test_future_stamped_cursor_ignored_for_the_watermark(self) -> None:
        """A cursor at or after the window's end is counted, processed, not the watermark."""
        result = plan(
            [
                lead("00Q1", cursor=T0 + timedelta(minutes=2)),
                lead("00Q2", cursor=datetime(2099, 1, 1, tzinfo=UTC), phone="+14155550102"),
                lead("00Q3", cursor=END, phone="+14155550103"),
            ]
        )
        assert result.watermark == T0 + timedelta(minutes=2)
        assert result.beyond_window == 2
        assert [new.salesforce_id for new in result.inserts] == ["00Q1", "00Q2", "00Q3"]

    def test_only_future_cursors_leave_no_watermark(self) -> None:
        """A page of future-stamped records does not move the watermark at all."""
        result = plan([lead("00Q1", cursor=END + timedelta(days=1))])
        assert (result.watermark, result.beyond_window) == (None, 1)


class TestDuplicateIdInPage:
    def test_later_read_wins(self) -> None:
        """One Id twice in a page: one lead, with the later read's values."""
        first = lead("00Q1", "d1", cursor=T0 + timedelta(minutes=1))
        other = lead("00Q2", "d9", phone="+14155550102")
        later = lead("00Q1", "d2", cursor=T0 + timedelta(minutes=2), phone="+14155550111")
        result = plan([first, other, later])
        assert [(new.salesforce_id, new.record_hash) for new in result.inserts] == [
            ("00Q1", "d2"),
            ("00Q2", "d9"),
        ]
        assert result.inserts[0].phone_e164 == "+14155550111"
        assert result.watermark == T0 + timedelta(minutes=2)

    def test_later_read_equal_to_the_stored_one_is_a_re_read(self) -> None:
        """The later read decides: back to the stored digest, the record is unchanged."""
        result = plan(
            [lead("00Q1", "d2"), lead("00Q1", "d1")], {"00Q1": ExistingLead(7, "queued", "d1")}
        )
        assert (result.unchanged, result.changes) == (1, [])


class TestDoNotCallUnrecognised:
    def test_new_record_noted_and_skipped(self) -> None:
        """An unrecognised DoNotCall value is noted and holds the lead back."""
        read = lead("00Q1", do_not_call=True, do_not_call_unrecognised="Maybe")
        result = plan([read, lead("00Q2", phone="+14155550102")])
        assert result.unrecognised == ["00Q1"]
        assert result.inserts[0].state == "skipped"
        assert "'Maybe'" in (result.inserts[0].note or "")

    def test_changed_sent_record_noted(self) -> None:
        """A changed record of a sent lead is noted too, and the note names the value."""
        read = lead("00Q1", "d2", do_not_call=True, do_not_call_unrecognised="Maybe")
        result = plan([read], {"00Q1": ExistingLead(7, "accepted", "d1")})
        assert result.unrecognised == ["00Q1"]
        assert "'Maybe'" in result.recorded[0].reason

    def test_re_read_not_noted(self) -> None:
        """An unchanged record was noted when it was first read: not again."""
        read = lead("00Q1", "d1", do_not_call=True, do_not_call_unrecognised="Maybe")
        result = plan([read], {"00Q1": ExistingLead(7, "skipped", "d1")})
        assert (result.unrecognised, result.unchanged) == ([], 1)


class TestTheNewestReadWins:
    """docs/design.md#the-newest-read-wins: an older read never overwrites a newer one."""

    def test_a_read_older_than_the_stored_one_is_ignored_and_noted(self) -> None:
        """A DoNotCall-skipped lead is not revived by a Bulk snapshot taken before the opt-out."""
        stored = T0 + timedelta(minutes=5)
        read = lead("00Q1", "d-old", stamp=T0 + timedelta(minutes=2))
        result = plan([read], {"00Q1": ExistingLead(7, "skipped", "d-dnc", stored)})
        assert result.stale == [StaleRead(7, "skipped", T0 + timedelta(minutes=2), stored)]
        assert (result.changes, result.inserts, result.recorded) == ([], [], [])

    def test_a_read_of_the_same_stamp_or_newer_applies(self) -> None:
        stored = T0 + timedelta(minutes=5)
        for stamp in (stored, stored + timedelta(seconds=1)):
            read = lead("00Q1", "d2", stamp=stamp)
            result = plan([read], {"00Q1": ExistingLead(7, "skipped", "d1", stored)})
            assert [c.state for c in result.changes] == ["queued"]
            assert result.changes[0].record_stamp == stamp
            assert result.stale == []

    def test_an_unchanged_newer_read_moves_the_stamp_without_a_change(self) -> None:
        read = lead("00Q1", "d1", stamp=T0 + timedelta(minutes=9))
        result = plan([read], {"00Q1": ExistingLead(7, "queued", "d1", T0)})
        assert result.unchanged == 1
        assert result.restamped == [(7, T0 + timedelta(minutes=9))]
        assert result.changes == []

    def test_without_a_stamp_on_either_side_nothing_is_ordered(self) -> None:
        assert not is_stale(None, T0)
        assert not is_stale(T0, None)
        assert is_stale(T0, T0 + timedelta(microseconds=1))


class TestDiscardIsFinal:
    def test_a_changed_record_of_a_discarded_lead_is_stored_not_revived(self) -> None:
        read = lead("00Q1", "d2", stamp=T0 + timedelta(minutes=3))
        found = ExistingLead(7, "skipped", "d1", T0, discarded=True)
        result = plan([read], {"00Q1": found})
        assert result.changes == [] and result.inserts == []
        assert [(r.lead_id, r.state) for r in result.recorded] == [(7, "skipped")]
        assert "stays discarded" in result.recorded[0].reason
        assert result.revived() == []


class TestRevivedLeadsCount:
    def test_invalid_or_skipped_to_queued_is_revived_queued_to_queued_is_not(self) -> None:
        reads = [
            lead("00Q1", "d2", phone="+14155550101"),
            lead("00Q2", "d2", phone="+14155550102"),
            lead("00Q3", "d2", phone="+14155550103"),
        ]
        existing = {
            "00Q1": ExistingLead(1, "invalid", "d1"),
            "00Q2": ExistingLead(2, "skipped", "d1"),
            "00Q3": ExistingLead(3, "queued", "d1"),
        }
        result = plan(reads, existing)
        assert sorted(c.salesforce_id for c in result.revived()) == ["00Q1", "00Q2"]
