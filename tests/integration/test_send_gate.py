"""Calling safety from Salesforce to the send gate, on SQLite and PostgreSQL.

Real parts throughout: the Salesforce emulator over HTTPS, the SimZ emulator
over HTTP, a real database; the poll, delivery, requeue and resend services as
the daemon and the CLI call them. Each class reproduces one way a person could
be called against the rules (DoNotCall after a requeue, the duplicate-phone
window bypassed by waiting, DoNotCall values read as callable) and shows it no
longer happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import outbox
from syncd.adapters.orm import Lead, LeadTransition
from syncd.adapters.salesforce import SalesforceSource
from syncd.adapters.simz import SimzClient
from syncd.config.models import SimzConfig, SyncConfig
from syncd.domain.gate import GateRules, Verdict
from syncd.domain.states import LeadState
from syncd.metrics import DO_NOT_CALL_UNRECOGNISED
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.sandbox.simz import SimzEmulator
from syncd.services import operator as ops
from syncd.services.deliver import DeliveryResult, deliver_sync
from syncd.services.poll import PollResult, poll_sync
from syncd.services.refetch import RecheckResult, resend_uncertain
from tests.clock import Clock
from tests.salesforce_fixtures import salesforce_config
from tests.simz_fixtures import simz_config_for

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make_sync(name: str = "web", **overrides: Any) -> SyncConfig:
    data: dict[str, Any] = {
        "name": name,
        "start_at": T0.isoformat(),
        "lookback": "10m",
        "lag": "0s",
        "agent": "agt_1",
        "mapping": {"phoneNumber": "Phone", "lastName": "LastName"},
        "rules": {"duplicate_phone_window": "24h"},
    }
    data.update(overrides)
    return SyncConfig.model_validate(data)


class Pipeline:
    """Poll, deliver, requeue and resend of one or more syncs, on a settable clock."""

    def __init__(
        self,
        org: SalesforceEmulator,
        simz: SimzEmulator,
        sessions: sessionmaker[Session],
        syncs: list[SyncConfig],
        **simz_overrides: Any,
    ) -> None:
        self.org = org
        self.simz = simz
        self.sessions = sessions
        self.syncs = {sync.name: sync for sync in syncs}
        self.clock = Clock(T0)
        settings: dict[str, Any] = {
            "batch_size": 10,
            "max_attempts": 2,
            "backoff": {"initial": "1s", "max": "1s"},
            **simz_overrides,
        }
        self.simz_config: SimzConfig = simz_config_for(simz, **settings)
        self.client = SimzClient(self.simz_config)
        self.source = SalesforceSource(salesforce_config(org, page_size=200))

    def close(self) -> None:
        self.client.close()
        self.source.close()

    def sync(self, name: str = "web") -> SyncConfig:
        return self.syncs[name]

    def add(self, **fields: Any) -> str:
        self.clock.advance(seconds=1)
        record = {"sobject": "Lead", "LastName": "Tester", "Company": "Acme", **fields}
        [sf_id] = self.org.add_records([{**record, "SystemModstamp": self.clock().isoformat()}])
        return sf_id

    def change(self, sf_id: str, **fields: Any) -> None:
        self.clock.advance(seconds=1)
        self.org.update_record("Lead", sf_id, fields, system_modstamp=self.clock())

    def poll(self, name: str = "web") -> PollResult:
        self.clock.advance(seconds=30)
        result = poll_sync(self.sessions, self.source, self.sync(name), now=self.clock)
        assert result.status == "ok", result.error
        return result

    def deliver(self, name: str = "web") -> DeliveryResult:
        return deliver_sync(
            self.sessions,
            self.client,
            self.sync(name),
            self.simz_config,
            now=self.clock,
            rng=lambda: 0.5,
            worker="test",
        )

    def requeue(self, *states: str) -> ops.RequeueResult:
        return ops.requeue(
            self.sessions,
            sources=lambda _name: self.source,
            syncs=self.syncs,
            states=list(states),
            actor="alice",
            now=self.clock,
        )

    def resend(self, name: str = "web") -> RecheckResult:
        return resend_uncertain(self.sessions, self.source, self.sync(name), now=self.clock)

    def lead(self, sf_id: str, sync: str = "web") -> Lead:
        with self.sessions() as session:
            found = session.scalar(
                select(Lead).where(Lead.salesforce_id == sf_id, Lead.sync_name == sync)
            )
            assert found is not None
            return found

    def trail(self, sf_id: str, sync: str = "web") -> list[tuple[str | None, str, str]]:
        lead_id = self.lead(sf_id, sync).id
        with self.sessions() as session:
            rows = session.execute(
                select(LeadTransition.from_state, LeadTransition.to_state, LeadTransition.reason)
                .where(LeadTransition.lead_id == lead_id)
                .order_by(LeadTransition.id)
            )
            return [(a, b, c) for a, b, c in rows]

    def accepted(self) -> dict[str, int]:
        return self.simz.received_counts(accepted_only=True)


@pytest.fixture
def pipeline(
    salesforce_emulator: SalesforceEmulator,
    simz_emulator: SimzEmulator,
    sessions: sessionmaker[Session],
) -> Iterator[Pipeline]:
    made = Pipeline(salesforce_emulator, simz_emulator, sessions, [make_sync()])
    yield made
    made.close()


def _fail_it(pipeline: Pipeline, sf_id: str) -> None:
    """SimZ answers 503 until the lead's attempt budget (2) is spent."""
    pipeline.simz.inject("503", count=2)
    pipeline.deliver()
    pipeline.clock.advance(seconds=5)
    pipeline.deliver()
    assert pipeline.lead(sf_id).state == "failed"


class TestDoNotCallAfterRequeue:
    """Defect: a failed/rejected/uncertain lead whose record became DoNotCall was sent again."""

    def test_failed_then_do_not_call_is_skipped_by_requeue(self, pipeline: Pipeline) -> None:
        sf_id = pipeline.add(Phone="+12025550101")
        pipeline.poll()
        _fail_it(pipeline, sf_id)
        pipeline.change(sf_id, DoNotCall=True)
        pipeline.poll()
        assert pipeline.lead(sf_id).do_not_call is True  # the poll kept the change
        result = pipeline.requeue("failed")
        assert result.total == 0
        assert [(h.salesforce_id, h.state) for h in result.held] == [(sf_id, "skipped")]
        pipeline.deliver()
        assert pipeline.accepted() == {}
        lead = pipeline.lead(sf_id)
        assert (lead.state, lead.note) == ("skipped", "DoNotCall is set on the record")
        assert pipeline.trail(sf_id)[-1][:2] == ("failed", "skipped")

    def test_rejected_then_do_not_call_is_skipped_by_requeue(self, pipeline: Pipeline) -> None:
        sf_id = pipeline.add(Phone="+12025550102")
        pipeline.poll()
        pipeline.simz.inject("400")
        pipeline.deliver()
        assert pipeline.lead(sf_id).state == "rejected"
        pipeline.change(sf_id, DoNotCall=True)
        pipeline.poll()
        result = pipeline.requeue("rejected")
        assert (result.total, len(result.held)) == (0, 1)
        pipeline.deliver()
        assert pipeline.accepted() == {}
        assert pipeline.lead(sf_id).state == "skipped"

    def test_requeue_sends_the_current_record(self, pipeline: Pipeline) -> None:
        """A failed lead requeued goes out with the record as it is now, not its old payload."""
        sf_id = pipeline.add(Phone="+12025550103", LastName="Old")
        pipeline.poll()
        _fail_it(pipeline, sf_id)
        pipeline.change(sf_id, LastName="New")  # no poll in between: requeue fetches it
        assert pipeline.requeue("failed").total == 1
        pipeline.deliver()
        assert pipeline.accepted() == {sf_id: 1}
        [received] = [r for r in pipeline.simz.received() if r["accepted"]]
        assert received["lead"]["lastName"] == "New"

    def test_resend_uncertain_skips_a_do_not_call_the_poll_has_not_seen(
        self, pipeline: Pipeline
    ) -> None:
        """resend_uncertain re-fetches: a change no poll has read yet still counts."""
        sf_id = pipeline.add(Phone="+12025550104")
        keep = pipeline.add(Phone="+12025550105")
        pipeline.poll()
        pipeline.simz.inject("lost_response")
        pipeline.deliver()
        assert {pipeline.lead(sf_id).state, pipeline.lead(keep).state} == {"uncertain"}
        pipeline.change(sf_id, DoNotCall=True)  # no poll in between
        assert pipeline.lead(sf_id).do_not_call is False
        result = pipeline.resend()
        assert (result.count(LeadState.QUEUED), result.count(LeadState.SKIPPED)) == (1, 1)
        pipeline.deliver()
        assert pipeline.lead(sf_id).state == "skipped"
        assert pipeline.lead(keep).state == "accepted"
        assert pipeline.simz.received_counts() == {sf_id: 1, keep: 2}

    def test_resend_uncertain_never_acts_on_a_fetch_older_than_the_stored_read(
        self, pipeline: Pipeline
    ) -> None:
        """A fetched record stamped before the read already stored is not the newest truth:
        the lead is left as it is (changed meanwhile), never sent on the older data."""
        sf_id = pipeline.add(Phone="+12025550106")
        pipeline.poll()
        pipeline.simz.inject("lost_response")
        pipeline.deliver()
        assert pipeline.lead(sf_id).state == "uncertain"
        received = pipeline.accepted()  # SimZ took it; the answer was lost
        pipeline.org.update_record(
            "Lead", sf_id, {"LastName": "Older"}, system_modstamp=T0 - timedelta(hours=1)
        )
        result = pipeline.resend()
        assert (result.count(LeadState.QUEUED), result.changed_meanwhile) == (0, 1)
        pipeline.deliver()
        assert pipeline.lead(sf_id).state == "uncertain"
        assert pipeline.accepted() == received
        assert pipeline.simz.received_counts() == {sf_id: 1}

    def test_delivery_alone_never_resends_uncertain(
        self,
        salesforce_emulator: SalesforceEmulator,
        simz_emulator: SimzEmulator,
        sessions: sessionmaker[Session],
    ) -> None:
        """With resend_uncertain on, only the poll job's re-fetch requeues uncertain leads."""
        opted = Pipeline(
            salesforce_emulator, simz_emulator, sessions, [make_sync()], resend_uncertain=True
        )
        try:
            sf_id = opted.add(Phone="+12025550106")
            opted.poll()
            opted.simz.inject("lost_response")
            opted.deliver()
            opted.deliver()
            assert opted.lead(sf_id).state == "uncertain"
            assert opted.simz.received_counts() == {sf_id: 1}
        finally:
            opted.close()


class TestDuplicateWindowAcrossWaiting:
    """Defect: a lead waiting in the queue longer than the window stopped holding its number."""

    def test_intake_skips_a_second_record_while_the_first_waits(self, pipeline: Pipeline) -> None:
        first = pipeline.add(Phone="+1 202 555 0111")
        pipeline.poll()
        pipeline.clock.advance(hours=30)  # e.g. a long 402 outage: nothing delivered
        second = pipeline.add(Phone="(202) 555-0111")
        pipeline.poll()
        assert pipeline.lead(first).state == "queued"
        lead = pipeline.lead(second)
        assert lead.state == "skipped"
        assert lead.note == "duplicate phone within 1d"

    def test_gate_sends_one_of_two_queued_with_one_number(self, pipeline: Pipeline) -> None:
        """Both queued (as a version without the fix left them): one batch carries only one."""
        first = pipeline.add(Phone="+1 202 555 0112")
        second = pipeline.add(Phone="202.555.0112")
        pipeline.poll()
        with pipeline.sessions.begin() as session:  # as the old intake queued them
            session.execute(update(Lead).values(state="queued", note=None))
        result = pipeline.deliver()
        assert result.accepted == 1
        assert pipeline.accepted() == {first: 1}
        lead = pipeline.lead(second)
        assert lead.state == "skipped"
        assert lead.note is not None and "queued ahead of it" in lead.note
        assert pipeline.trail(second)[-1][:2] == ("queued", "skipped")

    def test_gate_skips_when_the_number_is_in_flight_or_accepted(self, pipeline: Pipeline) -> None:
        first = pipeline.add(Phone="+12025550113")
        pipeline.poll()
        pipeline.deliver()
        assert pipeline.accepted() == {first: 1}
        pipeline.clock.advance(hours=2)
        second = pipeline.add(Phone="+12025550113", LastName="Other")
        pipeline.poll()
        with pipeline.sessions.begin() as session:  # as if queued before the first was sent
            session.execute(
                update(Lead).where(Lead.salesforce_id == second).values(state="queued", note=None)
            )
        pipeline.deliver()
        assert pipeline.accepted() == {first: 1}
        assert "was accepted" in (pipeline.lead(second).note or "")


class TestDoNotCallFailsClosed:
    """Defect: text DoNotCall values other than true/1/yes were read as callable."""

    @pytest.fixture
    def pipeline(
        self,
        salesforce_emulator: SalesforceEmulator,
        simz_emulator: SimzEmulator,
        sessions: sessionmaker[Session],
    ) -> Iterator[Pipeline]:
        """A sync whose DoNotCall field is a text field (a picklist, say)."""
        sync = make_sync(
            rules={"do_not_call_field": "Call_Status__c", "duplicate_phone_window": "24h"}
        )
        made = Pipeline(salesforce_emulator, simz_emulator, sessions, [sync])
        yield made
        made.close()

    @pytest.mark.parametrize("value", ["Y", "on", "Do Not Call", "1.0", "TRUE", "x"])
    def test_unrecognised_values_skip(self, pipeline: Pipeline, value: str) -> None:
        sf_id = pipeline.add(Phone="+12025550121", Call_Status__c=value)
        before = DO_NOT_CALL_UNRECOGNISED.labels(sync="web")._value.get()
        pipeline.poll()
        pipeline.deliver()
        assert pipeline.accepted() == {}
        lead = pipeline.lead(sf_id)
        assert lead.state == "skipped"
        assert lead.do_not_call is True
        after = DO_NOT_CALL_UNRECOGNISED.labels(sync="web")._value.get()
        if value.lower() == "true":
            assert lead.note == "DoNotCall is set on the record"
            assert after == before
        else:
            assert lead.note is not None and repr(value) in lead.note
            assert after == before + 1

    @pytest.mark.parametrize("value", ["false", " No ", "n", "0", ""])
    def test_callable_values_send(self, pipeline: Pipeline, value: str) -> None:
        sf_id = pipeline.add(Phone="+12025550122", Call_Status__c=value)
        pipeline.poll()
        pipeline.deliver()
        assert pipeline.accepted() == {sf_id: 1}


class TestGateAtClaim:
    """The claim re-checks DoNotCall as stored and defers a lead a rule says to wait for."""

    def test_do_not_call_stored_after_queueing_is_skipped_at_claim(
        self, pipeline: Pipeline
    ) -> None:
        sf_id = pipeline.add(Phone="+12025550131")
        pipeline.poll()
        with pipeline.sessions.begin() as session:  # the flag as a later poll stored it
            session.execute(update(Lead).values(do_not_call=True))
        pipeline.deliver()
        assert pipeline.accepted() == {}
        lead = pipeline.lead(sf_id)
        assert lead.state == "skipped"
        assert lead.note is not None and "DoNotCall" in lead.note

    def test_a_wait_verdict_leaves_the_lead_queued_until_then(self, pipeline: Pipeline) -> None:
        sf_id = pipeline.add(Phone="+12025550132")
        pipeline.poll()
        later = pipeline.clock() + timedelta(hours=3)

        def not_now(_candidate: Any, _now: datetime) -> Verdict:
            return Verdict.wait("test_hours", "outside the test's hours", later)

        rules = GateRules(extra=(not_now,))
        with pipeline.sessions.begin() as session:
            claim = outbox.claim(
                session,
                sync_name="web",
                agent_id="agt_1",
                credential="abc",
                limit=10,
                now=pipeline.clock(),
                worker="test",
                rules=rules,
            )
        assert claim is None
        lead = pipeline.lead(sf_id)
        assert (lead.state, lead.next_attempt_at) == ("queued", later)
        assert pipeline.trail(sf_id)[-1] == ("queued", "queued", "outside the test's hours")
