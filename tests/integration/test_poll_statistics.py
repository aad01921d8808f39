"""A poll that grows the leads table a lot refreshes PostgreSQL's planner statistics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from syncd.adapters.db import make_session_factory
from syncd.adapters.poll_store import refresh_statistics
from syncd.services import poll
from tests.integration.test_poll_properties import T0, FakeOrg, make_sync, stamp_text


def lead_tuples(engine: Engine) -> float | None:
    """pg_class's row estimate for ``leads`` (-1 until the table was first analyzed)."""
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relname = 'leads' AND n.nspname = current_schema()"
            )
        ).scalar()


class TestStatistics:
    def test_big_poll_analyzes_on_postgresql(
        self, engine: Engine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past the threshold of new leads, PostgreSQL gets ANALYZE; SQLite is left alone."""
        monkeypatch.setattr(poll, "ANALYZE_AFTER_NEW", 10)
        org = FakeOrg(page_size=4)
        for n in range(30):
            record_id = f"00Q{n:012d}AAA"
            org.records[record_id] = {
                "Id": record_id,
                "SystemModstamp": stamp_text(T0 + timedelta(seconds=n)),
                "Phone": f"+1415555{n:04d}",
                "Company": "Acme",
            }
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            assert lead_tuples(engine) == -1  # never analyzed yet
        result = poll.poll_sync(
            make_session_factory(engine), org, make_sync(), now=lambda: T0 + timedelta(hours=1)
        )
        assert result.new == 30 and result.status == "ok"
        if postgres:
            # ANALYZE ran at 12 and at 24 new leads: the estimate counts the latter.
            assert lead_tuples(engine) == 24
        with make_session_factory(engine).begin() as session:
            assert refresh_statistics(session) is postgres
