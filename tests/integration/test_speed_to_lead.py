"""Speed to lead against the emulators, on SQLite and PostgreSQL: a poll then a delivery
stamp every moment once, a re-read moves none, status and explain read them back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.orm import Lead
from syncd.adapters.salesforce import SalesforceSource
from syncd.adapters.simz import SimzClient
from syncd.config.models import SyncConfig
from syncd.entrypoints.cli_explain import render, story_json
from syncd.metrics import REGISTRY
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.sandbox.simz import SimzEmulator
from syncd.services.deliver import deliver_sync
from syncd.services.explain import explain
from syncd.services.operator.speed_status import speed_by_sync
from syncd.services.poll import poll_sync
from tests.salesforce_fixtures import salesforce_config
from tests.simz_fixtures import simz_config_for

T0 = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
CREATED = T0 + timedelta(seconds=10)
READ = T0 + timedelta(seconds=40)  # the poll (lag 15 s)
SENT = T0 + timedelta(seconds=41)  # the delivery
LATER = T0 + timedelta(minutes=5)


def make_sync(name: str) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": name,
            "start_at": T0.isoformat(),
            "lag": "15s",
            "agent": "agt_1",
            "mapping": {"phoneNumber": "Phone", "lastName": "LastName"},
        }
    )


def record(n: int, created: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "sobject": "Lead",
        "LastName": f"Person {n}",
        "Phone": f"+1202555{n:04d}",
        "CreatedDate": created.isoformat(),
        "SystemModstamp": created.isoformat(),
        **fields,
    }


class Pipeline:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        org: SalesforceEmulator,
        simz: SimzEmulator,
        name: str,
    ) -> None:
        self.sessions = sessions
        self.org = org
        self.sync = make_sync(name)
        self.source = SalesforceSource(salesforce_config(org))
        self.simz_config = simz_config_for(simz, batch_size=10)
        self.client = SimzClient(self.simz_config)

    def poll(self, at: datetime) -> None:
        result = poll_sync(self.sessions, self.source, self.sync, now=lambda: at)
        assert result.status == "ok", result.error

    def deliver(self, at: datetime) -> None:
        deliver_sync(
            self.sessions, self.client, self.sync, self.simz_config, now=lambda: at, worker="t"
        )

    def leads(self) -> dict[str, Lead]:
        with self.sessions() as session:
            found = session.scalars(select(Lead).where(Lead.sync_name == self.sync.name))
            return {lead.salesforce_id: lead for lead in found}

    def observed(self, stage: str) -> float:
        labels = {"sync": self.sync.name, "stage": stage}
        return REGISTRY.get_sample_value("syncd_speed_to_lead_seconds_count", labels) or 0.0

    def skew(self) -> float:
        labels = {"sync": self.sync.name}
        return REGISTRY.get_sample_value("syncd_speed_to_lead_clock_skew_total", labels) or 0.0


@pytest.fixture
def pipeline(
    request: pytest.FixtureRequest,
    sessions: sessionmaker[Session],
    salesforce_emulator: SalesforceEmulator,
    simz_emulator: SimzEmulator,
) -> Iterator[Pipeline]:
    # Metrics live for the whole process: each test (and backend) has its own sync name.
    name = f"speed{abs(hash(request.node.nodeid)) % 10_000_000}"
    made = Pipeline(sessions, salesforce_emulator, simz_emulator, name)
    yield made
    made.source.close()
    made.client.close()


def moments(lead: Lead) -> tuple[Any, ...]:
    return (lead.record_created_at, lead.read_at, lead.queued_at, lead.sent_at, lead.accepted_at)


def test_poll_then_delivery_stamps_every_moment_once(pipeline: Pipeline) -> None:
    """Created, read, queued, sent and accepted; a re-read of a changed record moves none."""
    ids = pipeline.org.add_records([record(n, CREATED) for n in range(3)])
    pipeline.poll(READ)
    assert pipeline.observed("read") == 3 and pipeline.observed("queued") == 3
    pipeline.deliver(SENT)
    leads = pipeline.leads()
    assert {lead.state for lead in leads.values()} == {"accepted"}
    for sf_id in ids:
        assert moments(leads[sf_id]) == (CREATED, READ, READ, SENT, SENT)
        assert leads[sf_id].first_call_at is None
    assert [pipeline.observed(s) for s in ("sent", "accepted", "total")] == [3, 3, 3]

    changed = CREATED + timedelta(minutes=2)
    pipeline.org.update_record("Lead", ids[0], {"LastName": "Renamed"}, changed)
    pipeline.poll(LATER)
    pipeline.deliver(LATER)
    again = pipeline.leads()
    assert again[ids[0]].record_hash != leads[ids[0]].record_hash  # the change was read
    assert {sf_id: moments(again[sf_id]) for sf_id in ids} == {
        sf_id: moments(leads[sf_id]) for sf_id in ids
    }
    assert pipeline.observed("read") == 3 and pipeline.observed("total") == 3


def test_a_lead_queued_later_keeps_its_read_and_first_queued(pipeline: Pipeline) -> None:
    """Invalid when read, queued when its record is fixed: read stays, queued is the fix."""
    [sf_id] = pipeline.org.add_records([record(1, CREATED, Phone="no number")])
    pipeline.poll(READ)
    lead = pipeline.leads()[sf_id]
    assert (lead.state, lead.read_at, lead.queued_at) == ("invalid", READ, None)
    fixed = CREATED + timedelta(minutes=1)
    pipeline.org.update_record("Lead", sf_id, {"Phone": "+12025550001"}, fixed)
    pipeline.poll(LATER)
    lead = pipeline.leads()[sf_id]
    assert (lead.state, lead.read_at, lead.queued_at) == ("queued", READ, LATER)
    renamed = CREATED + timedelta(minutes=2)
    pipeline.org.update_record("Lead", sf_id, {"LastName": "Renamed"}, renamed)
    pipeline.poll(LATER + timedelta(minutes=1))
    lead = pipeline.leads()[sf_id]
    assert lead.record_cursor == renamed  # read again, still queued: first queued stays
    assert (lead.state, lead.read_at, lead.queued_at) == ("queued", READ, LATER)


def test_clock_skew_is_clamped_and_counted(pipeline: Pipeline) -> None:
    """A CreatedDate after syncd's read (Salesforce's clock ahead): 0 s, and counted."""
    ahead = READ + timedelta(seconds=30)
    pipeline.org.add_records(
        [
            record(1, CREATED),
            record(2, CREATED, CreatedDate=ahead.isoformat()),
        ]
    )
    before = pipeline.skew()
    pipeline.poll(READ)
    assert pipeline.skew() == before + 1
    assert {lead.record_created_at for lead in pipeline.leads().values()} == {CREATED, ahead}


def test_status_percentiles_and_explain_timeline(
    pipeline: Pipeline, sessions: sessionmaker[Session]
) -> None:
    """p50/p95 per stage over the last hour, leads without moments left out; explain's
    timeline is the lead's own."""
    ids = pipeline.org.add_records([record(n, CREATED + timedelta(seconds=n)) for n in range(4)])
    pipeline.poll(READ)
    pipeline.deliver(SENT)
    with sessions.begin() as session:  # a lead stored before the moments were kept
        session.add(
            Lead(
                sync_name=pipeline.sync.name,
                salesforce_id="00Q000000000LEGACY",
                agent_id="agt_1",
                state="accepted",
                payload={},
                record_cursor=T0,
                record_hash="h" * 64,
                sent_at=SENT,
            )
        )
    with sessions() as session:
        summary = {s.stage: s for s in speed_by_sync(session, SENT)[pipeline.sync.name]}
    assert (summary["read"].leads, summary["read"].p50, summary["read"].p95) == (4, 28.0, 30.0)
    assert (summary["sent"].leads, summary["sent"].p50) == (4, 1.0)
    assert summary["total"].p95 == 31.0
    assert (summary["first_call"].leads, summary["first_call"].p50) == (0, None)
    with sessions() as session:
        assert pipeline.sync.name not in speed_by_sync(session, SENT + timedelta(hours=2))

    [story] = explain(sessions, ids[0])
    assert [(s.moment, s.at, s.seconds) for s in story.timeline] == [
        ("created", CREATED, None),
        ("read", READ, 30.0),
        ("queued", READ, 0.0),
        ("sent", SENT, 1.0),
        ("accepted", SENT, 0.0),
        ("first_call", None, None),
    ]
    assert story.total_seconds == 31.0
    lines = render([story])
    assert "    read       2026-02-02 09:00:40Z  +30.000s read" in lines
    assert "    first call -" in lines
    assert "    total      31.000s from created to accepted" in lines
    body = story_json(story)
    assert body["total_seconds"] == 31.0
    assert body["timeline"][3] == {
        "moment": "sent",
        "at": "2026-02-02T09:00:41.000Z",
        "stage": "sent",
        "seconds": 1.0,
        "clock_skew": False,
    }
