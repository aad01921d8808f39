"""Polls against a misbehaving org: future-stamped records, the two kinds of request limit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from syncd.adapters.salesforce import SalesforceSource
from syncd.domain.mapping import Mapper
from syncd.domain.page_plan import plan_page
from syncd.services.poll import CONCURRENT_LIMIT_PAUSE, poll_sync
from tests.integration.test_poll import T0, Harness, harness, lead_record, make_sync, phone

__all__ = ["harness"]

FUTURE = datetime(2099, 1, 1, tzinfo=UTC)


class FutureStampingSource:
    """A real source whose org also answers one record stamped in 2099, whatever the window."""

    def __init__(self, source: SalesforceSource, record: dict[str, Any]) -> None:
        self.source = source
        self.record = record

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        pages = list(self.source.query_pages(soql))
        if not pages:
            pages = [[]]
        pages[-1] = [*pages[-1], self.record]
        yield from pages

    def api_usage(self) -> tuple[int, int] | None:
        return self.source.api_usage()


class TestFutureStamp:
    def test_watermark_ignores_future_cursor(self, harness: Harness) -> None:
        """A 2099 record is queued but leaves the watermark; later records are still read."""
        harness.add(3, T0 + timedelta(minutes=1))
        future = {
            "attributes": {"type": "Lead"},
            "Id": "00Q000000000FUTURE",
            "LastName": "Future",
            "Company": "Co",
            "Phone": phone(900),
            "SystemModstamp": "2099-01-01T00:00:00.000+0000",
        }
        source = FutureStampingSource(harness.source, future)
        now = T0 + timedelta(minutes=5)
        with structlog.testing.capture_logs() as logs:
            first = poll_sync(harness.factory, source, harness.sync, now=lambda: now)
        assert (first.status, first.new) == ("ok", 4)
        assert harness.leads()["00Q000000000FUTURE"].state == "queued"
        assert harness.state().watermark == T0 + timedelta(minutes=1)
        warnings = [e for e in logs if "after the poll window" in e["event"]]
        assert len(warnings) == 1 and warnings[0]["count"] == 1
        assert "Future" not in repr(warnings) and phone(900) not in repr(warnings)

        later = harness.add(2, T0 + timedelta(minutes=6), start=50)
        second = harness.poll(T0 + timedelta(minutes=10))
        assert second.status == "ok"
        assert set(later) <= set(harness.leads())
        assert harness.state().watermark == T0 + timedelta(minutes=6)

    def test_plan_page(self) -> None:
        """Pure: a cursor at or after the window's end is counted, not taken as the watermark."""
        sync = make_sync()
        mapper = Mapper(sync.mapping_spec)
        records = [
            {**lead_record(1, T0 + timedelta(seconds=5), Phone=phone(1)), "Id": "00Q1"},
            {**lead_record(2, FUTURE, Phone=phone(2)), "Id": "00Q2"},
            {**lead_record(3, T0 + timedelta(minutes=1), Phone=phone(3)), "Id": "00Q3"},
        ]
        mapped = [mapper.map(r) for r in records]
        end = T0 + timedelta(minutes=1)
        plan = plan_page(mapped, {}, set(), sync.intake_rules, T0, end)
        assert plan.watermark == T0 + timedelta(seconds=5)
        assert plan.beyond_window == 2
        assert len(plan.inserts) == 3


class TestLimitKinds:
    def test_concurrent_limit_pauses_briefly(self, harness: Harness) -> None:
        """The concurrent-request limit pauses for seconds, not the daily-limit pause."""
        harness.add(10, T0 + timedelta(minutes=1))
        harness.source.login()
        harness.org.inject("REQUEST_LIMIT_EXCEEDED", limit="concurrent")
        now = T0 + timedelta(minutes=5)
        result = harness.poll(now, limit_pause=timedelta(minutes=15))
        assert result.status == "paused"
        state = harness.state()
        assert state.paused_until == now + CONCURRENT_LIMIT_PAUSE
        assert timedelta(minutes=1) >= CONCURRENT_LIMIT_PAUSE
        assert "concurrent" in (state.pause_reason or "")
        after = harness.poll(now + CONCURRENT_LIMIT_PAUSE + timedelta(seconds=1))
        assert (after.status, after.new) == ("ok", 10)

    def test_daily_limit_pauses_until_usage_falls(self, harness: Harness) -> None:
        """The daily limit pauses for limit_pause; then /limits is asked before any query."""
        harness.add(10, T0 + timedelta(minutes=1))
        harness.source.login()
        harness.org.set_api_usage(15000, 15000)
        harness.org.inject("REQUEST_LIMIT_EXCEEDED")
        now = T0 + timedelta(minutes=5)
        result = harness.poll(now, limit_pause=timedelta(minutes=15))
        assert result.status == "paused"
        assert harness.state().paused_until == now + timedelta(minutes=15)
        queries = len(harness.org.query_log())
        harness.org.set_api_usage(15000, 15000)
        still = harness.poll(now + timedelta(minutes=16), limit_pause=timedelta(minutes=15))
        assert still.status == "paused" and "Remaining 0" in (still.error or "")
        assert harness.state().paused_until == now + timedelta(minutes=31)
        assert len(harness.org.query_log()) == queries  # no query while the limit holds
        harness.org.set_api_usage(20, 15000)
        done = harness.poll(now + timedelta(minutes=32))
        assert (done.status, done.new) == ("ok", 10)
