"""The reconciliation sweep against the Salesforce emulator, on SQLite and PostgreSQL.

The sync polls records stamped an hour after its start; one record is then
made to match behind the watermark (older than the poll's lookback, no change
event), as a formula field's new value does, so no poll reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.canonical_source import CanonicalSource
from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import LeadTransition, OperatorAction
from syncd.adapters.salesforce import SalesforceSource
from syncd.config.models import SalesforceConfig, SyncConfig
from syncd.domain.reconcile import EmptyRange
from syncd.metrics import REGISTRY
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.reconcile import ReconcileResult, plan_reconcile, run_reconcile
from syncd.services.reconcile_job import scheduled_sweep
from tests.integration.test_poll import T0, Harness, make_sync
from tests.salesforce_fixtures import salesforce_config

POLLED = T0 + timedelta(minutes=5)
LATER = T0 + timedelta(hours=1)
#: Behind the watermark (LATER) by more than the lookback (10m): no poll reads it again.
BEHIND = T0 + timedelta(minutes=20)
NOW = T0 + timedelta(hours=2)


@dataclass
class Runtime:
    """What the sweep needs of the wired daemon: sessions, a clock, one Salesforce source."""

    session_factory: sessionmaker[Session]
    source_: SalesforceSource
    now: Callable[[], datetime] = lambda: NOW
    readers: dict[str, CanonicalSource] = field(default_factory=dict)

    def source(self, sync: str) -> SalesforceSource:
        return self.source_

    def reader(self, sync: SyncConfig, name: str | None = None) -> CanonicalSource:
        return CanonicalSource(self.source_, self.source_.describe_fields, sync)


@dataclass
class Org:
    harness: Harness
    runtime: Runtime
    salesforce: SalesforceConfig
    polled: list[str]

    def hide(self, count: int = 1, start: int = 500, stamp: datetime = BEHIND) -> list[str]:
        """Records that match behind the watermark, without a change event."""
        records = [
            {
                "sobject": "Lead",
                "LastName": f"Hidden {n}",
                "Company": "Co",
                "Phone": f"+1303555{n % 10000:04d}",
                "SystemModstamp": stamp.isoformat(),
            }
            for n in range(start, start + count)
        ]
        return self.harness.org.add_records(records, publish=False)

    def reconcile(self, sync: SyncConfig | None = None, **kwargs: Any) -> ReconcileResult:
        plan = plan_reconcile(self.runtime, sync or self.harness.sync, self.salesforce)
        return run_reconcile(self.runtime, plan, self.salesforce, **kwargs)


def make_org(emulator: SalesforceEmulator, engine: Engine, sync: SyncConfig, **sf: Any) -> Org:
    salesforce = salesforce_config(emulator, page_size=200, **sf)
    source = SalesforceSource(salesforce)
    harness = Harness(emulator, engine, make_session_factory(engine), source, sync)
    polled = harness.add(3, POLLED)
    harness.poll(POLLED + timedelta(minutes=1))
    polled += harness.add(2, LATER, start=10)
    harness.poll(NOW)
    return Org(harness, Runtime(harness.factory, source), salesforce, polled)


@pytest.fixture
def org(salesforce_emulator: SalesforceEmulator, engine: Engine) -> Iterator[Org]:
    made = make_org(salesforce_emulator, engine, make_sync())
    yield made
    made.harness.source.close()


def transitions(org: Org) -> int:
    with org.harness.factory() as session:
        return int(session.scalar(select(func.count()).select_from(LeadTransition)) or 0)


class TestSweep:
    def test_a_record_behind_the_watermark_is_missed_and_nothing_is_written(self, org: Org) -> None:
        """The poll never reads it; the sweep names it, counts the states, writes nothing."""
        [hidden] = org.hide()
        org.harness.poll(NOW + timedelta(minutes=1))
        assert hidden not in org.harness.leads()
        before = transitions(org)
        result = org.reconcile()
        assert result.status == "ok" and result.complete
        assert (result.window.start, result.window.end) == (T0, LATER - timedelta(minutes=10))
        assert result.missed == [hidden]
        assert result.states == {"queued": 3} and result.unmatched == []
        assert result.intake is None
        assert hidden not in org.harness.leads() and transitions(org) == before

    def test_no_longer_matched_is_confirmed_by_id(self, org: Org) -> None:
        """A deleted record's lead is reported; one whose record merely moved past the
        range (changed, not polled yet) is found by Id and is not."""
        gone, moved = org.polled[0], org.polled[1]
        org.harness.org.delete_record("Lead", gone)
        org.harness.org.update_record("Lead", moved, {"Company": "New"}, NOW.isoformat())
        result = org.reconcile()
        assert result.unmatched == [gone]
        assert result.states == {"queued": 1} and result.missed == []

    def test_where_is_applied(
        self, salesforce_emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        """Only records the sync's where matches are swept (and the others are not missed)."""
        org = make_org(salesforce_emulator, engine, make_sync(where="Company != 'Other'"))
        try:
            [hidden] = org.hide()
            org.harness.org.add_records(
                [{"sobject": "Lead", "LastName": "X", "Company": "Other",
                  "Phone": "+13035550999", "SystemModstamp": BEHIND.isoformat()}],
                publish=False,
            )  # fmt: skip
            assert org.reconcile().missed == [hidden]
        finally:
            org.harness.source.close()

    def test_bulk_above_the_threshold_finds_the_same(
        self, salesforce_emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        """Above bulk_query_above the Ids come from a Bulk API 2.0 job; same comparison."""
        org = make_org(salesforce_emulator, engine, make_sync(), bulk_query_above=2)
        try:
            hidden = org.hide(2)
            result = org.reconcile()
            assert result.bulk and result.status == "ok"
            assert sorted(result.missed) == sorted(hidden) and result.states == {"queued": 3}
            assert salesforce_emulator.bulk._jobs == {}
        finally:
            org.harness.source.close()

    def test_api_usage_above_the_limit_pauses_the_sweep(self, org: Org) -> None:
        org.hide()
        org.harness.org.set_api_usage(14_000, 15_000)
        result = org.reconcile()
        assert result.status == "paused" and "API usage" in (result.error or "")
        assert not result.complete

    def test_an_empty_range_is_refused(self, org: Org) -> None:
        with pytest.raises(EmptyRange):
            plan_reconcile(org.runtime, org.harness.sync, org.salesforce, since=NOW, until=T0)


class TestQueue:
    def test_queue_takes_the_missed_record_in_once(self, org: Org) -> None:
        """--queue: a queued lead and an audit row; a rerun finds none missed."""
        [hidden] = org.hide()
        result = org.reconcile(queue=True, who="op", reason="formula changed")
        assert result.intake is not None
        assert (result.intake.new, result.intake.queued) == (1, 1)
        assert org.harness.leads()[hidden].state == "queued"
        assert org.harness.transitions(hidden) == [(None, "queued")]
        with org.harness.factory() as session:
            [action] = session.scalars(select(OperatorAction)).all()
        assert (action.action, action.actor, action.reason) == (
            "reconcile",
            "op",
            "formula changed",
        )
        again = org.reconcile(queue=True)
        assert again.missed == [] and again.intake is None
        assert again.states == {"queued": 4}

    def test_dry_run_queue_writes_nothing(self, org: Org) -> None:
        [hidden] = org.hide()
        before = transitions(org)
        result = org.reconcile(queue=True, dry_run=True)
        assert result.intake is not None and result.intake.queued == 1
        assert hidden not in org.harness.leads() and transitions(org) == before
        with org.harness.factory() as session:
            assert session.scalars(select(OperatorAction)).all() == []

    def test_stopped_intake_keeps_whole_pages_and_a_rerun_finishes(self, org: Org) -> None:
        """Stopped after the intake's first page (200 Ids): 200 leads; the rerun adds the rest."""
        hidden = org.hide(450)
        stop = threading.Event()
        result = org.reconcile(queue=True, stop=stop, on_intake=lambda r: stop.set())
        assert result.intake is not None and result.intake.new == 200
        assert not result.complete
        leads = org.harness.leads()
        assert sum(1 for i in hidden if i in leads) == 200
        rest = org.reconcile(queue=True)
        assert len(rest.missed) == 250 and rest.intake is not None and rest.intake.new == 250
        leads = org.harness.leads()
        assert {leads[i].state for i in hidden} == {"queued"}

    def test_more_missed_than_the_guard_allows_are_held(
        self, salesforce_emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        org = make_org(salesforce_emulator, engine, make_sync(guard={"max_new_per_poll": 5}))
        try:
            hidden = org.hide(8)
            result = org.reconcile(queue=True)
            assert result.intake is not None and result.intake.held == 8
            assert {org.harness.leads()[i].state for i in hidden} == {"held"}
        finally:
            org.harness.source.close()


class TestScheduled:
    def test_the_scheduled_sweep_sets_its_metrics(
        self, salesforce_emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        """The window is reconcile.window back from the poll's start; the gauges say what
        the sweep found."""
        sync = make_sync(name="sched", reconcile={"every": "1h", "window": "45m"})
        org = make_org(salesforce_emulator, engine, sync)
        try:
            [hidden] = org.hide()
            org.hide(1, start=600, stamp=T0 + timedelta(minutes=2))  # before the window
            result = scheduled_sweep(org.runtime, sync, org.salesforce)
            assert result is not None and result.missed == [hidden]
            assert result.window.start == LATER - timedelta(minutes=55)
            labels = {"sync": "sched"}
            assert REGISTRY.get_sample_value("syncd_reconcile_missed", labels) == 1
            assert REGISTRY.get_sample_value(
                "syncd_reconcile_last_success_timestamp_seconds", labels
            ) == pytest.approx(NOW.timestamp())
            assert hidden not in org.harness.leads()
        finally:
            org.harness.source.close()

    def test_queue_true_takes_them_in(
        self, salesforce_emulator: SalesforceEmulator, engine: Engine
    ) -> None:
        sync = make_sync(name="schedq", reconcile={"queue": True})
        org = make_org(salesforce_emulator, engine, sync)
        try:
            [hidden] = org.hide()
            result = scheduled_sweep(org.runtime, sync, org.salesforce)
            assert result is not None and result.intake is not None
            assert org.harness.leads()[hidden].state == "queued"
        finally:
            org.harness.source.close()

    def test_high_api_usage_skips_the_sweep(self, org: Org) -> None:
        sync = make_sync(name="busy", reconcile={})
        org.hide()
        org.harness.org.set_api_usage(14_000, 15_000)
        org.harness.poll(NOW)  # the source reads the usage header
        before = REGISTRY.get_sample_value(
            "syncd_reconcile_runs_total", {"sync": "busy", "status": "paused"}
        )
        assert scheduled_sweep(org.runtime, sync, org.salesforce) is None
        after = REGISTRY.get_sample_value(
            "syncd_reconcile_runs_total", {"sync": "busy", "status": "paused"}
        )
        assert after == (before or 0) + 1
