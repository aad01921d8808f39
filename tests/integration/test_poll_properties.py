"""Property tests for polling: random records, late commits, updates and poll timings.

The property (docs/design.md#polling-salesforce, guarantees 1, 2 and 5): every record a poll
window returns ends up as exactly one lead, queued once (one transition),
carrying the data of the last version read; and every record whose final
cursor value is at most ``lag + lookback`` behind its commit is seen.
The fast variant uses an in-memory source that evaluates the window exactly
as the SOQL says; a second variant runs a few examples through the emulator.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import Lead, LeadTransition
from syncd.adapters.salesforce import SalesforceSource
from syncd.config.models import SyncConfig
from syncd.domain.soql import format_datetime, parse_datetime
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.poll import poll_sync
from tests.salesforce_fixtures import salesforce_config

T0 = datetime(2024, 6, 1, tzinfo=UTC)
LOOKBACK = timedelta(minutes=10)
LAG = timedelta(seconds=15)
_WINDOW = re.compile(r"(\w+) >= (\S+) AND \1 < (\S+)")
_names = itertools.count()


def make_sync() -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": f"prop-{next(_names)}",
            "start_at": T0.isoformat(),
            "lookback": "10m",
            "lag": "15s",
            "agent": "agt_1",
            "mapping": {"phoneNumber": "Phone", "customData": {"v": "Company"}},
            "rules": {"duplicate_phone_window": "0s"},
        }
    )


@dataclass
class FakeOrg:
    """Records by Id, queried exactly as the poll's SOQL window says, in small pages."""

    page_size: int = 3
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    returned: dict[str, dict[str, Any]] = field(default_factory=dict)
    size: int | None = None

    def last_query_size(self) -> int | None:
        return self.size

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        match = _WINDOW.search(soql)
        assert match is not None
        start, end = parse_datetime(match.group(2)), parse_datetime(match.group(3))
        rows = sorted(
            (
                dict(r)
                for r in self.records.values()
                if start <= parse_datetime(r["SystemModstamp"]) < end
            ),
            key=lambda r: (parse_datetime(r["SystemModstamp"]), r["Id"]),
        )
        self.size = len(rows)
        for offset in range(0, len(rows), self.page_size):
            page = rows[offset : offset + self.page_size]
            for row in page:
                self.returned[row["Id"]] = row
            yield page

    def api_usage(self) -> tuple[int, int] | None:
        return None


def stamp_text(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


# Steps: ("commit", n, delay_s), ("update", pick, delay_s), ("poll",); each after advance_s.
delays = st.one_of(
    st.integers(0, 30), st.integers(0, int((LOOKBACK + LAG).total_seconds())), st.integers(0, 1800)
)
step = st.one_of(
    st.tuples(st.just("commit"), st.integers(1, 6), delays),
    st.tuples(st.just("update"), st.integers(0, 10_000), delays),
    st.tuples(st.just("poll"), st.just(0), st.just(0)),
)
scenario = st.lists(st.tuples(st.integers(0, 400), step), min_size=1, max_size=25)


@dataclass
class Model:
    """The test's side: what the org holds and how late each final version was."""

    final_delay: dict[str, timedelta] = field(default_factory=dict)
    #: Each record's latest SystemModstamp: Salesforce stamps a record's versions in order
    #: (a save holds the record's lock until it commits), however late each commits.
    last_stamp: dict[str, datetime] = field(default_factory=dict)
    counter: int = 0


def play(
    steps: list[tuple[int, tuple[str, int, int]]],
    add: Any,
    update: Any,
    poll: Any,
    ids: Any,
) -> Model:
    model = Model()
    now = T0 + timedelta(seconds=1)
    for advance, (kind, number, delay_s) in steps:
        now += timedelta(seconds=advance, milliseconds=advance % 7 * 100)
        delay = timedelta(seconds=delay_s)
        stamp = max(T0, now - delay)
        if kind == "commit":
            for _ in range(number):
                model.counter += 1
                sf_id = add(model.counter, stamp)
                model.final_delay[sf_id] = now - stamp
                model.last_stamp[sf_id] = stamp
        elif kind == "update" and ids():
            existing = sorted(ids())
            sf_id = existing[number % len(existing)]
            model.counter += 1
            stamp = max(stamp, model.last_stamp[sf_id] + timedelta(milliseconds=1))
            update(sf_id, f"v{model.counter}", stamp)
            model.final_delay[sf_id] = now - stamp
            model.last_stamp[sf_id] = stamp
        elif kind == "poll":
            assert poll(now).status == "ok"
    assert poll(now + timedelta(hours=2)).status == "ok"  # a late final catch-up poll
    return model


def check(
    engine: Engine, sync: SyncConfig, returned: dict[str, dict[str, Any]], model: Model
) -> None:
    factory = make_session_factory(engine)
    with factory() as session:
        leads = {
            lead.salesforce_id: lead
            for lead in session.scalars(select(Lead).where(Lead.sync_name == sync.name))
        }
        transitions = dict(
            session.execute(
                select(Lead.salesforce_id, func.count(LeadTransition.id))
                .join(LeadTransition, LeadTransition.lead_id == Lead.id)
                .where(Lead.sync_name == sync.name)
                .group_by(Lead.salesforce_id)
            ).all()
        )
    assert set(leads) == set(returned)
    for sf_id, lead in leads.items():
        assert lead.state == "queued"
        assert transitions[sf_id] == 1  # queued exactly once
        assert lead.payload["customData"] == {"v": returned[sf_id]["Company"]}
    for sf_id, delay in model.final_delay.items():
        if delay <= LOOKBACK + LAG:
            assert sf_id in leads, f"{sf_id} committed {delay} late was never read"


class TestWindowDedupProperty:
    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(steps=scenario)
    def test_every_record_queued_once(
        self, engine: Engine, steps: list[tuple[int, tuple[str, int, int]]]
    ) -> None:
        """Random commits, late commits, updates and polls: each record read is queued once."""
        sync = make_sync()
        org = FakeOrg()
        factory = make_session_factory(engine)

        def add(n: int, stamp: datetime) -> str:
            sf_id = f"00Q{sync.name[-4:]:0>4}{n:011d}"
            org.records[sf_id] = {
                "Id": sf_id,
                "SystemModstamp": stamp_text(stamp),
                "Phone": f"+1202555{n % 10000:04d}",
                "Company": f"v{n}",
            }
            return sf_id

        def update(sf_id: str, value: str, stamp: datetime) -> None:
            org.records[sf_id] = {
                **org.records[sf_id],
                "Company": value,
                "SystemModstamp": stamp_text(stamp),
            }

        def poll(now: datetime) -> Any:
            return poll_sync(factory, org, sync, now=lambda: now)

        model = play(steps, add, update, poll, lambda: org.records.keys())
        check(engine, sync, org.returned, model)


class RecordingSource:
    """A real SalesforceSource that remembers the last version of each record it returned."""

    def __init__(self, source: SalesforceSource) -> None:
        self.source = source
        self.returned: dict[str, dict[str, Any]] = {}

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        for page in self.source.query_pages(soql):
            for row in page:
                self.returned[row["Id"]] = row
            yield page

    def api_usage(self) -> tuple[int, int] | None:
        return self.source.api_usage()

    def last_query_size(self) -> int | None:
        return self.source.last_query_size()


class TestAgainstEmulator:
    @settings(
        max_examples=8,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(steps=scenario)
    def test_every_record_queued_once(
        self,
        engine: Engine,
        salesforce_emulator: SalesforceEmulator,
        steps: list[tuple[int, tuple[str, int, int]]],
    ) -> None:
        """The same property through real HTTPS paging against the emulator."""
        sync = make_sync().model_copy(update={"where": f"LeadSource = '{next(_names)}'"})
        source = RecordingSource(SalesforceSource(salesforce_config(salesforce_emulator)))
        factory = make_session_factory(engine)
        mine: set[str] = set()

        def add(n: int, stamp: datetime) -> str:
            record = {
                "sobject": "Lead",
                "LastName": "P",
                "LeadSource": sync.where.split("'")[1] if sync.where else "",
                "Phone": f"+1202555{n % 10000:04d}",
                "Company": f"v{n}",
                "SystemModstamp": format_datetime(stamp),
            }
            sf_id = salesforce_emulator.add_records([record])[0]
            mine.add(sf_id)
            return sf_id

        def update(sf_id: str, value: str, stamp: datetime) -> None:
            salesforce_emulator.update_record("Lead", sf_id, {"Company": value}, stamp)

        def poll(now: datetime) -> Any:
            return poll_sync(factory, source, sync, now=lambda: now)

        model = play(steps, add, update, poll, lambda: mine)
        check(engine, sync, source.returned, model)
        source.source.close()
