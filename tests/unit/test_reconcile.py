"""The reconciliation sweep's pure half: its range, its query, and the comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from syncd.config import SyncConfig
from syncd.domain.reconcile import EmptyRange, Tally, no_longer_matched, sweep_range
from syncd.domain.soql import QuerySpec, build_sweep_query
from syncd.domain.window import PollWindow

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RESUME = T0 + timedelta(days=10, seconds=30, microseconds=500)


class TestRange:
    def test_defaults_run_from_start_at_to_where_the_poll_resumes(self) -> None:
        window = sweep_range(since=None, until=None, start_at=T0, resume_from=RESUME)
        assert window == PollWindow(T0, T0 + timedelta(days=10, seconds=30))

    def test_a_length_counts_back_from_the_end_but_not_before_start_at(self) -> None:
        week = sweep_range(
            since=None, until=None, start_at=T0, resume_from=RESUME, length=timedelta(days=7)
        )
        assert week.start == T0 + timedelta(days=3, seconds=30)
        month = sweep_range(
            since=None, until=None, start_at=T0, resume_from=RESUME, length=timedelta(days=30)
        )
        assert month.start == T0

    def test_explicit_bounds_win_and_are_whole_seconds(self) -> None:
        since = T0 - timedelta(days=1, microseconds=3)
        until = T0 + timedelta(hours=1, microseconds=9)
        window = sweep_range(since=since, until=until, start_at=T0, resume_from=RESUME)
        assert window == PollWindow(
            T0 - timedelta(days=1, seconds=1), T0 + timedelta(hours=1)
        )  # an explicit since may reach before start_at

    def test_an_empty_range_is_refused_with_both_ends(self) -> None:
        with pytest.raises(EmptyRange, match="nothing to reconcile: 2024-05-01T12:00:00"):
            sweep_range(since=T0, until=T0, start_at=T0, resume_from=RESUME)


class TestTally:
    def test_pages_count_missed_and_states(self) -> None:
        tally = Tally()
        assert tally.add_page(["a", "b", "c"], {"a": "queued", "c": "accepted"}) == ["b"]
        assert tally.add_page(["d", "e"], {"e": "accepted"}) == ["d"]
        assert tally.missed == ["b", "d"]
        assert dict(tally.states) == {"queued": 1, "accepted": 2}

    def test_a_record_returned_twice_counts_once(self) -> None:
        """A record changed during a REST sweep moves to a later page: still one record."""
        tally = Tally()
        tally.add_page(["a", "b"], {"a": "queued"})
        assert tally.add_page(["b", "a", ""], {"a": "queued"}) == []
        assert tally.missed == ["b"] and dict(tally.states) == {"queued": 1}

    def test_unlisted_leads_are_candidates_and_those_found_by_id_still_match(self) -> None:
        tally = Tally()
        tally.add_page(["a", "b"], {"a": "queued", "b": "accepted"})
        candidates = tally.unlisted(["a", "x", "y", "b"])
        assert candidates == ["x", "y"]
        assert no_longer_matched(candidates, {"y"}) == ["x"]
        assert no_longer_matched([], set()) == []


class TestQuery:
    def test_only_ids_and_the_cursor_with_the_sync_where(self) -> None:
        spec = QuerySpec("Lead", "SystemModstamp", ("Phone", "LastName"), "Status = 'Open'")
        soql = build_sweep_query(spec, PollWindow(T0, T0 + timedelta(days=1)))
        assert soql == (
            "SELECT Id, SystemModstamp FROM Lead WHERE SystemModstamp >= 2024-05-01T12:00:00Z "
            "AND SystemModstamp < 2024-05-02T12:00:00Z AND (Status = 'Open') "
            "ORDER BY SystemModstamp, Id"
        )

    def test_created_date_cursor(self) -> None:
        spec = QuerySpec("Contact", "CreatedDate", ("Phone",))
        soql = build_sweep_query(spec, PollWindow(T0, T0 + timedelta(days=1)))
        assert soql.startswith("SELECT Id, CreatedDate FROM Contact WHERE CreatedDate >= ")
        assert soql.endswith("ORDER BY CreatedDate, Id")


def sync(**extra: object) -> SyncConfig:
    return SyncConfig.model_validate(
        {"name": "web", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}, **extra}
    )


class TestConfig:
    def test_off_by_default_and_defaults_when_on(self) -> None:
        assert sync().reconcile is None
        on = sync(reconcile={}).reconcile
        assert on is not None
        assert (on.every, on.window, on.queue) == (timedelta(hours=24), timedelta(days=7), False)

    @pytest.mark.parametrize(
        ("settings", "words"),
        [
            ({"every": "30s"}, "at least 1m"),
            ({"window": "0s"}, "at least 1s"),
            ({"queue": "maybe"}, "queue"),
            ({"evry": "1h"}, "evry"),
        ],
    )
    def test_bad_settings_are_refused(self, settings: dict[str, object], words: str) -> None:
        with pytest.raises(ValidationError, match=words):
            sync(reconcile=settings)
