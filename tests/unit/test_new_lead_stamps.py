"""The new leads' datetimes on SQLite: the quick path stores exactly what SQLAlchemy would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from syncd.adapters.ledger.common import bind_processor
from syncd.adapters.ledger.new_leads import sqlite_datetime

COLUMN = bind_processor(sqlite.dialect(), "record_cursor")
STAMP = sqlite_datetime(COLUMN)


@given(st.datetimes(timezones=st.just(UTC)))
def test_utc_datetimes_are_stored_as_the_column_stores_them(value: datetime) -> None:
    assert STAMP(value) == COLUMN(value)


@given(st.datetimes(timezones=st.integers(-23, 23).map(lambda h: timezone(timedelta(hours=h)))))
def test_other_zones_go_through_the_column(value: datetime) -> None:
    assert STAMP(value) == COLUMN(value)


def test_examples() -> None:
    assert STAMP(datetime(2024, 1, 31, 12, 0, tzinfo=UTC)) == "2024-01-31 12:00:00.000000"
    assert STAMP(datetime(999, 1, 1, 0, 0, 0, 5, tzinfo=UTC)) == "0999-01-01 00:00:00.000005"
    assert STAMP(None) is None
