"""Unit tests for syncd.domain.soql: the poll query and Salesforce datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from syncd.config.models import SyncConfig
from syncd.domain.soql import (
    build_count_query,
    build_poll_query,
    format_datetime,
    parse_datetime,
    query_fields,
)
from syncd.domain.window import PollWindow

WINDOW = PollWindow(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))


def sync(**overrides: Any) -> SyncConfig:
    base: dict[str, Any] = {
        "name": "s",
        "agent": "agt_1",
        "mapping": {
            "phoneNumber": "Phone",
            "firstName": "FirstName",
            "email": "Email",
            "campaignType": {"const": "x"},
            "customData": {"o": "Owner.Email", "p": "phone", "id": "ID"},
        },
    }
    base.update(overrides)
    return SyncConfig.model_validate(base)


class TestQuery:
    def test_shape(self) -> None:
        """The query selects mapped and rule fields, Id and the cursor, ordered by cursor, Id."""
        soql = build_poll_query(sync().query_spec, WINDOW)
        assert soql == (
            "SELECT Phone, FirstName, Email, Owner.Email, DoNotCall, Id, SystemModstamp, "
            "CreatedDate FROM Lead WHERE SystemModstamp >= 2024-01-01T00:00:00Z "
            "AND SystemModstamp < 2024-01-02T03:04:05Z ORDER BY SystemModstamp, Id"
        )

    def test_user_where_parenthesised(self) -> None:
        """The user's condition is ANDed in parentheses, so its OR cannot widen the window."""
        soql = build_poll_query(sync(where="A = 1 OR B = 2").query_spec, WINDOW)
        assert "< 2024-01-02T03:04:05Z AND (A = 1 OR B = 2) ORDER BY" in soql

    def test_count_query_has_the_same_condition(self) -> None:
        """The COUNT() query reads the poll query's window and the user's condition."""
        soql = build_count_query(sync(where="A = 1 OR B = 2").query_spec, WINDOW)
        assert soql == (
            "SELECT COUNT() FROM Lead WHERE SystemModstamp >= 2024-01-01T00:00:00Z "
            "AND SystemModstamp < 2024-01-02T03:04:05Z AND (A = 1 OR B = 2)"
        )

    def test_created_date_read_once(self) -> None:
        """CreatedDate is read by every query, once, even when mapped or the cursor."""
        mapped = sync(mapping={"phoneNumber": "Phone", "customData": {"c": "createddate"}})
        fields = query_fields(mapped.query_spec)
        assert [f.lower() for f in fields].count("createddate") == 1
        assert fields[-1] == "CreatedDate"
        by_created = query_fields(sync(cursor_field="CreatedDate").query_spec)
        assert by_created[-2:] == ["CreatedDate", "SystemModstamp"]

    def test_never_limit(self) -> None:
        """The query pages with nextRecordsUrl, never with LIMIT."""
        assert "LIMIT" not in build_poll_query(sync().query_spec, WINDOW).upper()

    def test_fields_deduplicated_case_insensitively(self) -> None:
        """A field named twice in different cases is selected once."""
        fields = query_fields(sync().query_spec)
        assert [f.lower() for f in fields].count("phone") == 1
        assert [f.lower() for f in fields].count("id") == 1

    def test_route_and_custom_cursor(self) -> None:
        """The routing field and a configured cursor are selected; DoNotCall only if respected."""
        cfg = sync(
            agent=None,
            route={"field": "Country", "values": {"US": "a"}},
            cursor_field="LastModifiedDate",
            rules={"respect_do_not_call": False},
        )
        fields = query_fields(cfg.query_spec)
        assert "Country" in fields and "DoNotCall" not in fields
        # Every read carries SystemModstamp too, whatever the cursor: the ledger orders reads by it.
        # And CreatedDate, where speed to lead starts.
        assert fields[-3:] == ["LastModifiedDate", "SystemModstamp", "CreatedDate"]
        assert "ORDER BY LastModifiedDate, Id" in build_poll_query(cfg.query_spec, WINDOW)


class TestDatetimes:
    def test_format_utc(self) -> None:
        """Datetimes in other zones are written in UTC with a Z."""
        value = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
        assert format_datetime(value) == "2024-01-01T10:00:00Z"

    def test_format_naive_refused(self) -> None:
        """A naive datetime is refused rather than guessed."""
        with pytest.raises(ValueError):
            format_datetime(datetime(2024, 1, 1))

    @pytest.mark.parametrize(
        "text",
        [
            "2024-01-01T10:00:00.123+0000",
            "2024-01-01T10:00:00.123Z",
            "2024-01-01T12:00:00.123+02:00",
        ],
    )
    def test_parse(self, text: str) -> None:
        """Salesforce's JSON datetime forms read as the same aware UTC instant."""
        assert parse_datetime(text) == datetime(2024, 1, 1, 10, 0, 0, 123000, tzinfo=UTC)
