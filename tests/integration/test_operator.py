"""The operator use cases (status, leads, requeue) on a real SQLite file and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import ledger
from syncd.adapters.operator_queries import lead_filter
from syncd.adapters.orm import Lead, LeadTransition
from syncd.adapters.salesforce import SalesforceSource
from syncd.adapters.simz import key_fingerprint
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services import operator as ops
from tests.integration.operator_rows import (
    T0,
    add_batch,
    add_lead,
    add_pause,
    add_poll_run,
    add_sync_state,
    make_config,
    sf_id,
)
from tests.salesforce_fixtures import salesforce_config


@pytest.fixture
def org(salesforce_emulator: SalesforceEmulator) -> SalesforceEmulator:
    """Salesforce with the records of the leads the requeue tests write (distinct numbers)."""
    salesforce_emulator.add_records(
        [
            {
                "sobject": "Lead",
                "Id": sf_id(n),
                "LastName": f"Person {n}",
                "Company": "Acme",
                "Phone": f"+1202555{n:04d}",
                "Country": "US",
            }
            for n in range(1, 7)
        ]
    )
    return salesforce_emulator


def requeue(org: SalesforceEmulator, sessions: sessionmaker[Session], **kwargs: Any) -> Any:
    """ops.requeue with the configured syncs and a source on the emulator."""
    config = make_config()
    source = SalesforceSource(salesforce_config(org))
    try:
        return ops.requeue(
            sessions,
            sources=lambda _name: source,
            syncs={sync.name: sync for sync in config.syncs},
            **kwargs,
        )
    finally:
        source.close()


#: Fingerprint of the API key in :func:`make_config`, as delivery names its pauses.
FP = key_fingerprint("literal-test-key")


def states_of(sessions: sessionmaker[Session]) -> dict[tuple[str, str], str]:
    """(sync, Salesforce Id) -> state of every lead."""
    with sessions() as session:
        return {(x.sync_name, x.salesforce_id): x.state for x in session.scalars(select(Lead))}


class TestStatus:
    def test_counts_every_state_per_sync_with_zeros(self, sessions: sessionmaker[Session]) -> None:
        """Lead counts cover all 9 states per configured sync, zeros included."""
        with sessions.begin() as s:
            add_lead(s, "web", sf_id(1), "queued")
            add_lead(s, "web", sf_id(2), "queued")
            add_lead(s, "web", sf_id(3), "uncertain")
            add_lead(s, "partner", sf_id(1), "accepted", agent="agt_us")
        report = ops.status(sessions, make_config(), now=lambda: T0)
        by_name = {sync.name: sync for sync in report.syncs}
        assert [s.name for s in report.syncs] == ["web", "partner"]
        assert by_name["web"].states == {
            "queued": 2,
            "sending": 0,
            "accepted": 0,
            "rejected": 0,
            "uncertain": 1,
            "invalid": 0,
            "skipped": 0,
            "failed": 0,
            "held": 0,
        }
        assert by_name["partner"].states["accepted"] == 1
        assert report.uncertain_total == 1
        assert report.hint is not None and "syncd leads --state uncertain" in report.hint

    def test_backlog_splits_due_and_waiting_per_agent(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """Queued leads are split into due now and waiting for next_attempt_at, per agent."""
        with sessions.begin() as s:
            add_lead(s, "web", sf_id(1), "queued")
            add_lead(s, "web", sf_id(2), "queued", next_attempt_at=T0 - timedelta(seconds=1))
            add_lead(s, "web", sf_id(3), "queued", next_attempt_at=T0 + timedelta(minutes=5))
            add_lead(s, "web", sf_id(4), "sending")
            add_lead(s, "partner", sf_id(5), "queued", agent="agt_x")
        report = ops.status(sessions, make_config(), now=lambda: T0)
        web = report.syncs[0].agents
        assert [(a.agent, a.queued, a.due, a.waiting, a.sending) for a in web] == [
            ("agt_1", 3, 2, 1, 1)
        ]
        partner = {a.agent: (a.queued, a.due) for a in report.syncs[1].agents}
        assert partner == {"agt_us": (0, 0), "agt_x": (1, 1)}

    def test_last_poll_last_batch_and_pauses(self, sessions: sessionmaker[Session]) -> None:
        """The latest poll run, the latest batch per agent, sync and delivery pauses are shown."""
        with sessions.begin() as s:
            add_poll_run(s, "web", status="ok", started_at=T0 - timedelta(minutes=2), fetched=5)
            add_poll_run(s, "web", status="error", started_at=T0, error="boom")
            add_batch(s, "web", "agt_1", simz_batch_id="old", created_at=T0 - timedelta(hours=1))
            add_batch(s, "web", "agt_1", http_status=503, outcome="retry", simz_batch_id=None)
            add_sync_state(
                s, "web", paused_until=T0 + timedelta(minutes=5), pause_reason="REQUEST_LIMIT"
            )
            add_pause(s, "agent", f"{FP}/agt_1", until=T0 + timedelta(hours=1), reason="404")
            add_pause(s, "agent", "otherkey/agt_us", until=T0 + timedelta(hours=1))
            add_pause(s, "api_key", "fp9999", until=T0 - timedelta(hours=1), reason="402")
        report = ops.status(sessions, make_config(), now=lambda: T0)
        web = report.syncs[0]
        assert web.last_poll is not None and web.last_poll.status == "error"
        assert web.last_poll.error == "boom"
        assert web.last_successful_poll_at == T0 - timedelta(minutes=2) + timedelta(seconds=2)
        assert web.watermark == T0
        assert web.paused and web.pause_reason == "REQUEST_LIMIT"
        agent = web.agents[0]
        assert agent.last_batch is not None
        assert (agent.last_batch.http_status, agent.last_batch.outcome) == (503, "retry")
        assert agent.paused
        assert [(p.scope, p.key, p.active) for p in report.pauses] == [
            ("agent", f"{FP}/agt_1", True),
            ("agent", "otherkey/agt_us", True),
            ("api_key", "fp9999", False),
        ]
        assert not report.syncs[1].paused
        # A pause of another API key does not stop this configuration's agent.
        assert [a.paused for a in report.syncs[1].agents] == [False, False]

    def test_api_key_pause_pauses_every_agent(self, sessions: sessionmaker[Session]) -> None:
        """An active pause of the configured API key marks every agent paused."""
        with sessions.begin() as s:
            add_pause(s, "api_key", FP, until=T0 + timedelta(minutes=1), reason="401")
        report = ops.status(sessions, make_config(), now=lambda: T0)
        assert [a.paused for sync in report.syncs for a in sync.agents] == [True, True, True]

    def test_sync_only_in_database_is_listed_and_marked(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """A sync with leads but no longer in the configuration is listed as not configured."""
        with sessions.begin() as s:
            add_lead(s, "retired", sf_id(1), "failed", agent="agt_old")
        report = ops.status(sessions, make_config(), now=lambda: T0)
        retired = report.syncs[-1]
        assert (retired.name, retired.configured, retired.enabled) == ("retired", False, None)
        assert retired.states["failed"] == 1
        assert [a.agent for a in retired.agents] == []  # nothing queued, no batch

    def test_json_shape_is_stable(self, sessions: sessionmaker[Session]) -> None:
        """to_dict gives the documented keys with ISO UTC 'Z' times and survives json.dumps."""
        with sessions.begin() as s:
            batch = add_batch(s, "web", "agt_1")
            add_lead(s, "web", sf_id(1), "accepted", batch=batch)
            add_sync_state(s, "web", last_poll_ok_at=T0)
        body = json.loads(json.dumps(ops.status(sessions, make_config(), now=lambda: T0).to_dict()))
        assert set(body) == {
            "version",
            "generated_at",
            "syncs",
            "pauses",
            "uncertain_total",
            "hint",
            "replicas",
            "operator_pauses",
            "replicas_left_out",
            "orgs",
            "calls",
        }
        assert body["calls"] is None  # no webhooks configured, none stored
        assert body["version"] == 1 and body["generated_at"] == "2024-05-01T12:00:00.000Z"
        web = body["syncs"][0]
        assert set(web) == {
            "name", "configured", "enabled", "start_at", "configured_start_at", "watermark",
            "last_poll", "last_successful_poll_at", "last_error", "paused", "paused_until",
            "pause_reason", "states", "agents", "leader", "delivery_paused",
            "waiting_for_calling_hours", "writeback", "stream", "speed_to_lead",
        }  # fmt: skip
        assert web["writeback"] is None  # no write-back configured, no rows
        assert [s["stage"] for s in web["speed_to_lead"]] == [
            "read", "queued", "sent", "accepted", "first_call", "total",
        ]  # fmt: skip
        assert set(web["speed_to_lead"][0]) == {"stage", "leads", "p50", "p95"}
        assert web["stream"] is None  # a polled sync with no stream state
        assert web["configured_start_at"] == "now"
        assert body["syncs"][1]["configured_start_at"] == "2024-01-01T00:00:00.000Z"
        assert web["agents"][0]["last_batch"]["simz_batch_id"] == "simz-b-1"
        assert set(web["agents"][0]) == {
            "agent", "configured", "queued", "due", "waiting", "sending", "paused", "last_batch",
        }  # fmt: skip


class TestListLeads:
    def test_filters_by_state_sync_ids_and_time(self, sessions: sessionmaker[Session]) -> None:
        """Each filter narrows the list, and they combine."""
        with sessions.begin() as s:
            add_lead(s, "web", sf_id(1), "uncertain", updated_at=T0 - timedelta(hours=2))
            add_lead(s, "web", sf_id(2), "accepted", updated_at=T0 - timedelta(hours=1))
            add_lead(s, "partner", sf_id(1), "uncertain", agent="agt_us", updated_at=T0)
        ids = lambda views: sorted((v.sync, v.salesforce_id) for v in views)  # noqa: E731
        assert ids(ops.list_leads(sessions, state="uncertain")) == [
            ("partner", sf_id(1)),
            ("web", sf_id(1)),
        ]
        assert ids(ops.list_leads(sessions, sync="web")) == [("web", sf_id(1)), ("web", sf_id(2))]
        assert ids(ops.list_leads(sessions, salesforce_ids=[sf_id(2)])) == [("web", sf_id(2))]
        assert ids(ops.list_leads(sessions, since=T0 - timedelta(minutes=90))) == [
            ("partner", sf_id(1)),
            ("web", sf_id(2)),
        ]
        assert ids(ops.list_leads(sessions, until=T0 - timedelta(minutes=90))) == [
            ("web", sf_id(1))
        ]
        assert ids(ops.list_leads(sessions, state=["uncertain"], sync="web")) == [("web", sf_id(1))]

    def test_newest_first_and_limit(self, sessions: sessionmaker[Session]) -> None:
        """Leads come most recently changed first, at most `limit` of them."""
        with sessions.begin() as s:
            for n in range(5):
                add_lead(s, "web", sf_id(n), "queued", updated_at=T0 + timedelta(minutes=n))
        found = ops.list_leads(sessions, limit=2)
        assert [v.salesforce_id for v in found] == [sf_id(4), sf_id(3)]

    def test_history_and_no_payload_by_default(self, sessions: sessionmaker[Session]) -> None:
        """--history gives the transition trail in order; the payload is absent unless asked."""
        with sessions.begin() as s:
            batch = add_batch(s, "web", "agt_1", outcome="uncertain", http_status=500)
            add_lead(s, "web", sf_id(1), "uncertain", batch=batch)
        plain = ops.list_leads(sessions, salesforce_ids=[sf_id(1)])
        assert plain[0].history is None and plain[0].payload is None
        full = ops.list_leads(sessions, salesforce_ids=[sf_id(1)], history=True, payload=True)
        trail = full[0].history
        assert trail is not None
        assert [(t.from_state, t.to_state) for t in trail] == [
            (None, "queued"),
            ("queued", "sending"),
            ("sending", "uncertain"),
        ]
        assert trail[2].batch_id == batch.id
        assert full[0].payload is not None and full[0].payload["firstName"] == "Ada"

    def test_rejects_unknown_state(self, sessions: sessionmaker[Session]) -> None:
        """An unknown state name is an error, not an empty list."""
        with pytest.raises(ValueError):
            ops.list_leads(sessions, state="lost")


class TestRequeue:
    @staticmethod
    def seed(sessions: sessionmaker[Session]) -> None:
        with sessions.begin() as s:
            add_lead(s, "web", sf_id(1), "uncertain", attempts=3, error_code="HTTP_500")
            add_lead(s, "web", sf_id(2), "failed", attempts=10, next_attempt_at=T0)
            add_lead(s, "web", sf_id(3), "rejected", error_code="INVALID", error_message="bad")
            add_lead(s, "web", sf_id(4), "accepted")
            add_lead(s, "web", sf_id(5), "queued")
            add_lead(s, "partner", sf_id(1), "uncertain", agent="agt_us")
            add_lead(s, "partner", sf_id(6), "failed", agent="agt_us")

    def test_bare_requeue_is_refused(
        self, sessions: sessionmaker[Session], org: SalesforceEmulator
    ) -> None:
        """Without any selector nothing moves and a ValueError says why."""
        self.seed(sessions)
        with pytest.raises(ValueError, match="selector"):
            requeue(org, sessions, actor="alice")
        with pytest.raises(ValueError, match="selector"):
            ops.preview_requeue(sessions)

    def test_by_state_moves_only_that_state(
        self, sessions: sessionmaker[Session], org: SalesforceEmulator
    ) -> None:
        """--state uncertain moves the uncertain leads of every sync and nothing else."""
        self.seed(sessions)
        result = requeue(org, sessions, states=["uncertain"], actor="alice", now=lambda: T0)
        assert result.total == 2
        after = ops.list_leads(sessions)
        moved = {(v.sync, v.salesforce_id) for v in after if v.state == "queued"}
        assert moved == {("web", sf_id(1)), ("partner", sf_id(1)), ("web", sf_id(5))}
        assert {v.state for v in after if v.salesforce_id == sf_id(2)} == {"failed"}

    def test_by_sync_moves_every_requeueable_state_of_that_sync(
        self, sessions: sessionmaker[Session], org: SalesforceEmulator
    ) -> None:
        """--sync alone moves that sync's uncertain, failed and rejected leads, not accepted."""
        self.seed(sessions)
        result = requeue(org, sessions, sync="web", actor="alice")
        assert sorted((c.state, c.leads) for c in result.moved) == [
            ("failed", 1),
            ("rejected", 1),
            ("uncertain", 1),
        ]
        web = {v.salesforce_id: v for v in ops.list_leads(sessions, sync="web")}
        assert web[sf_id(4)].state == "accepted"
        assert all(web[sf_id(n)].state == "queued" for n in (1, 2, 3, 5))
        partner = ops.list_leads(sessions, sync="partner")
        assert sorted(v.state for v in partner) == ["failed", "uncertain"]

    def test_by_ids_and_fields_reset(
        self, sessions: sessionmaker[Session], org: SalesforceEmulator
    ) -> None:
        """--id moves exactly the named leads and resets attempts, retry time and errors."""
        self.seed(sessions)
        result = requeue(org, sessions, sync="web", salesforce_ids=[sf_id(2), sf_id(3)], actor="a")
        assert result.total == 2
        leads = {v.salesforce_id: v for v in ops.list_leads(sessions, sync="web")}
        for n in (2, 3):
            lead = leads[sf_id(n)]
            assert (lead.state, lead.attempts, lead.next_attempt_at) == ("queued", 0, None)
            assert (lead.error_code, lead.error_message) == (None, None)
        assert leads[sf_id(1)].state == "uncertain"

    def test_accepted_id_refuses_everything(
        self, sessions: sessionmaker[Session], org: SalesforceEmulator
    ) -> None:
        """An explicit Id list naming an accepted lead moves nothing at all."""
        self.seed(sessions)
        before = states_of(sessions)
        with pytest.raises(ops.RequeueRefused) as caught:
            requeue(org, sessions, salesforce_ids=[sf_id(1), sf_id(4)], actor="alice")
        assert any("accepted" in p and sf_id(4) in p for p in caught.value.problems)
        assert states_of(sessions) == before

    def test_unknown_or_unselected_id_refuses(
        self, sessions: sessionmaker[Session], org: SalesforceEmulator
    ) -> None:
        """An unknown Id, or one outside the chosen states, refuses the whole list."""
        self.seed(sessions)
        before = states_of(sessions)
        preview = ops.preview_requeue(
            sessions, states=["uncertain"], salesforce_ids=[sf_id(1), sf_id(2), "nope"]
        )
        assert len(preview.problems) == 2
        assert any("nope" in p for p in preview.problems)
        assert any(sf_id(2) in p and "failed" in p for p in preview.problems)
        with pytest.raises(ops.RequeueRefused):
            requeue(
                org, sessions, states=["uncertain"], salesforce_ids=[sf_id(1), "nope"], actor="a"
            )
        assert states_of(sessions) == before

    def test_non_requeueable_state_selector_rejected(
        self, sessions: sessionmaker[Session], org: SalesforceEmulator
    ) -> None:
        """Asking to requeue accepted leads by state is a ValueError."""
        with pytest.raises(ValueError, match="accepted"):
            requeue(org, sessions, states=["accepted"], actor="alice")

    def test_transitions_written_with_reason_and_actor(
        self, sessions: sessionmaker[Session], org: SalesforceEmulator
    ) -> None:
        """Each moved lead gets one uncertain->queued transition naming the reason and who."""
        self.seed(sessions)
        requeue(
            org,
            sessions,
            sync="web",
            states=["uncertain"],
            reason="SimZ confirmed batch lost",
            actor="alice",
            now=lambda: T0 + timedelta(hours=1),
        )
        with sessions() as s:
            rows = s.execute(
                select(Lead.salesforce_id, LeadTransition)
                .join(LeadTransition, LeadTransition.lead_id == Lead.id)
                .where(LeadTransition.to_state == "queued", LeadTransition.from_state.is_not(None))
            ).all()
        assert len(rows) == 1
        sf, row = rows[0]
        assert sf == sf_id(1)
        assert (row.from_state, row.at) == ("uncertain", T0 + timedelta(hours=1))
        assert (
            row.reason
            == "SimZ confirmed batch lost (by alice); record fetched again from Salesforce"
        )

    def test_preview_counts_by_sync_and_state(
        self, sessions: sessionmaker[Session], org: SalesforceEmulator
    ) -> None:
        """The preview counts what would move, per sync and state, without moving it."""
        self.seed(sessions)
        before = states_of(sessions)
        preview = ops.preview_requeue(sessions, states=["uncertain", "failed"])
        assert [(c.sync, c.state, c.leads) for c in preview.counts] == [
            ("partner", "uncertain", 1),
            ("partner", "failed", 1),
            ("web", "uncertain", 1),
            ("web", "failed", 1),
        ]
        assert (preview.total, preview.uncertain, preview.problems) == (4, 2, [])
        assert states_of(sessions) == before

    def test_lead_changed_meanwhile_is_not_moved(
        self, sessions: sessionmaker[Session], org: SalesforceEmulator
    ) -> None:
        """The UPDATE repeats the state condition: a lead no longer in the state stays put."""
        self.seed(sessions)
        with sessions.begin() as s:
            # The lead is failed (as if it changed since a preview that saw it uncertain).
            moved = ledger.move_where(
                s,
                lead_filter(salesforce_ids=[sf_id(2)]),
                source="uncertain",
                target="queued",
                reason="x",
                now=T0,
            )
        assert moved == {}
        assert states_of(sessions)[("web", sf_id(2))] == "failed"
        with sessions() as s:
            trail = s.scalars(select(LeadTransition).where(LeadTransition.reason == "x")).all()
        assert trail == []
