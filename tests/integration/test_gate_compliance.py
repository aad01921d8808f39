"""The send gate's checks of numbers and consent, and the record of every dial decision.

On a real SQLite file and on PostgreSQL: the suppression list read at the
send, consent that lapsed between intake and send, frequency caps counted
across two agents and two syncs (waiting, or skipped with ``over_cap: skip``),
a check that fails failing the whole claim, and one ``dial_decisions`` row per
lead moved to ``sending`` (with ``rules_versions`` kept when delivery starts).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import number_locks, outbox
from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.migrate import upgrade
from syncd.adapters.orm import DialDecision, Lead, LeadTransition, RulesVersion, Suppression
from syncd.adapters.simz import SimzClient
from syncd.config.models import SyncConfig
from syncd.domain.gate import GateRules
from syncd.sandbox.simz import SimzEmulator
from syncd.services.call_window import calling_rules
from syncd.services.deliver import deliver_sync, effective_rules, gate_rules
from tests.conftest import needs_postgres
from tests.integration.delivery_rows import T0, insert_leads, lead, make_sync, phone, sf_id, states
from tests.simz_fixtures import simz_config_for

SHARED = "+12025550177"
KEYS = {
    "do_not_call",
    "consent",
    "suppression",
    "frequency",
    "duplicate_window_seconds",
    "calling_hours",
}


def claim(
    sessions: sessionmaker[Session],
    sync: SyncConfig,
    agent: str = "agt_1",
    now: datetime = T0,
) -> outbox.Claim | None:
    with sessions.begin() as session:
        return outbox.claim(
            session,
            sync_name=sync.name,
            agent_id=agent,
            credential="k",
            limit=10,
            now=now,
            worker="test",
            rules=gate_rules(sync),
            calling_rules=calling_rules(sync.calling_hours),
        )


def claimed_ids(found: outbox.Claim | None) -> list[str]:
    return [] if found is None else [lead.salesforce_id for lead in found.leads]


def suppress(sessions: sessionmaker[Session], number: str, reason: str) -> None:
    with sessions.begin() as session:
        session.add(
            Suppression(
                phone_e164=number,
                source="operator",
                reason=reason,
                added_by="ops@example.com",
                seen_at=T0,
                added_at=T0,
            )
        )


def set_consent(sessions: sessionmaker[Session], salesforce_id: str, value: str | None) -> None:
    with sessions.begin() as session:
        session.execute(
            update(Lead).where(Lead.salesforce_id == salesforce_id).values(consent=value)
        )


def decisions(sessions: sessionmaker[Session]) -> list[DialDecision]:
    with sessions() as session:
        return list(session.scalars(select(DialDecision).order_by(DialDecision.id)))


def audit(sessions: sessionmaker[Session], salesforce_id: str) -> list[tuple[Any, ...]]:
    """(to_state, reason) of one lead's transitions and notes, oldest first."""
    with sessions() as session:
        lead_id = session.scalar(select(Lead.id).where(Lead.salesforce_id == salesforce_id))
        rows = session.execute(
            select(LeadTransition.to_state, LeadTransition.reason)
            .where(LeadTransition.lead_id == lead_id)
            .order_by(LeadTransition.id)
        )
        return [tuple(row) for row in rows]


class TestSuppression:
    def test_a_listed_number_is_skipped_at_the_send(self, sessions: sessionmaker[Session]) -> None:
        """Queued before the opt-out arrived: the gate reads the list and holds it back."""
        first, second = insert_leads(sessions, [1, 2])
        suppress(sessions, phone(1), "asked not to be called")
        sync = make_sync()
        assert claimed_ids(claim(sessions, sync)) == [second]
        skipped = lead(sessions, first)
        assert skipped.state == "skipped"
        note = "send gate: number is on the suppression list (operator: asked not to be called)"
        assert skipped.note == note
        assert audit(sessions, first)[-1] == ("skipped", note)
        assert [d.lead_id for d in decisions(sessions)] == [lead(sessions, second).id]

    def test_every_agent_and_sync_reads_the_one_list(self, sessions: sessionmaker[Session]) -> None:
        [web] = insert_leads(sessions, [1], phones={1: SHARED})
        [b2b] = insert_leads(sessions, [2], sync="b2b", agent="agt_2", phones={2: SHARED})
        suppress(sessions, SHARED, "complaint")
        assert claim(sessions, make_sync()) is None
        assert claim(sessions, make_sync("b2b", agent="agt_2"), "agt_2") is None
        assert states(sessions) == {web: "skipped", b2b: "skipped"}

    def test_a_failing_check_fails_the_claim(self, sessions: sessionmaker[Session]) -> None:
        """Fail closed: the list cannot be read, so nothing is claimed, skipped or sent."""
        [only] = insert_leads(sessions, [1])
        with sessions.begin() as session:
            session.execute(text("DROP TABLE suppressions"))
        with pytest.raises(Exception, match="suppressions"):
            claim(sessions, make_sync())
        assert states(sessions) == {only: "queued"}
        assert decisions(sessions) == []


class TestConsent:
    RULE = {"consent": {"field": "Consent_At__c", "kind": "datetime", "max_age": "30d"}}

    def test_consent_lapsed_between_intake_and_send_is_caught(
        self, sessions: sessionmaker[Session]
    ) -> None:
        lapsing, fresh, missing = insert_leads(sessions, [1, 2, 3])
        set_consent(sessions, lapsing, (T0 - timedelta(days=29)).isoformat())
        set_consent(sessions, fresh, (T0 - timedelta(days=1)).isoformat())
        sync = make_sync(rules=self.RULE)
        later = T0 + timedelta(days=2)  # 31 days after the first consent was given
        assert claimed_ids(claim(sessions, sync, now=later)) == [fresh]
        note = lead(sessions, lapsing).note
        assert note is not None and note.startswith("send gate: consent lapsed: Consent_At__c")
        assert lead(sessions, missing).note == "send gate: no consent: Consent_At__c is empty"
        [decision] = decisions(sessions)
        assert decision.inputs["consent"] == {
            "rule": "Consent_At__c (datetime, lapsing after 30d)",
            "value": (T0 - timedelta(days=1)).isoformat(),
            "age_seconds": 3 * 86400.0,
        }


def two_syncs(cap: dict[str, Any]) -> tuple[SyncConfig, SyncConfig]:
    rules = {"duplicate_phone_window": "0s", "max_sends_per_number": [cap]}
    return make_sync(rules=rules), make_sync("b2b", agent="agt_2", rules=rules)


class TestFrequencyCaps:
    def test_a_cap_counts_every_agent_and_sync_and_waits(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """Two calls a day: the web sync's and the b2b sync's; the third waits for its window."""
        web, b2b = two_syncs({"count": 2, "per": "24h"})
        [first] = insert_leads(sessions, [1], phones={1: SHARED})
        [second, third] = insert_leads(
            sessions, [2, 3], sync="b2b", agent="agt_2", phones={2: SHARED, 3: SHARED}
        )
        assert claimed_ids(claim(sessions, web, now=T0)) == [first]
        later = T0 + timedelta(hours=1)
        # The second is claimed; the third, same claim, would be the third call of the day.
        assert claimed_ids(claim(sessions, b2b, "agt_2", now=later)) == [second]
        waiting = lead(sessions, third)
        assert (waiting.state, waiting.attempts) == ("queued", 0)
        assert waiting.next_attempt_at == T0 + timedelta(hours=24)
        reason = audit(sessions, third)[-1][1]
        assert reason.startswith("send gate: frequency cap 2 per 1d")
        assert claim(sessions, b2b, "agt_2", now=T0 + timedelta(hours=23)) is None
        due = T0 + timedelta(hours=24, seconds=1)
        assert claimed_ids(claim(sessions, b2b, "agt_2", now=due)) == [third]
        counted = [d.inputs["frequency"][0]["sent"] for d in decisions(sessions)]
        assert counted == [0, 1, 1]

    def test_over_cap_skip(self, sessions: sessionmaker[Session]) -> None:
        web, b2b = two_syncs({"count": 1, "per": "7d"})
        b2b = b2b.model_copy(update={"rules": b2b.rules.model_copy(update={"over_cap": "skip"})})
        [first] = insert_leads(sessions, [1], phones={1: SHARED})
        [second] = insert_leads(sessions, [2], sync="b2b", agent="agt_2", phones={2: SHARED})
        assert claimed_ids(claim(sessions, web)) == [first]
        assert claim(sessions, b2b, "agt_2", now=T0 + timedelta(days=6)) is None
        skipped = lead(sessions, second)
        assert skipped.state == "skipped"
        assert skipped.note == (
            "send gate: frequency cap 1 per 7d (rules.max_sends_per_number) reached (1 sends)"
        )

    def test_only_sends_that_may_have_reached_simz_count(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """A rejected or failed lead of the number was not a call: it does not count."""
        web, b2b = two_syncs({"count": 1, "per": "24h"})
        [earlier] = insert_leads(sessions, [1], phones={1: SHARED})
        [later] = insert_leads(sessions, [2], sync="b2b", agent="agt_2", phones={2: SHARED})
        found = claim(sessions, web)
        assert found is not None
        with sessions.begin() as session:
            outbox.reject(
                session,
                [(found.leads[0].id, "E", "refused")],
                reason="rejected",
                batch_id=found.batch_id,
                now=T0,
            )
        assert claimed_ids(claim(sessions, b2b, "agt_2")) == [later]
        assert lead(sessions, earlier).state == "rejected"


class TestDialDecisions:
    def test_one_row_per_lead_sent_with_exactly_the_keys(
        self, sessions: sessionmaker[Session]
    ) -> None:
        ids = insert_leads(sessions, [1, 2, 3])
        sync = make_sync(
            rules={"max_sends_per_number": [{"count": 3, "per": "24h"}]},
            calling_hours={"window": "00:00-23:59", "timezone": "America/New_York"},
        )
        found = claim(sessions, sync)
        assert found is not None and len(found.leads) == 3
        rows = decisions(sessions)
        assert [row.lead_id for row in rows] == [lead(sessions, i).id for i in ids]
        version = gate_rules(sync).version
        for row, salesforce_id in zip(rows, ids, strict=True):
            assert (row.sync_name, row.agent_id, row.batch_id) == ("web", "agt_1", found.batch_id)
            assert row.phone_e164 == lead(sessions, salesforce_id).phone_e164
            assert row.decided_at == T0
            assert row.rules_version == version and len(version) == 16
            assert set(row.inputs) == KEYS
            assert row.inputs["suppression"] == {"checked": True, "listed": False}
            assert row.inputs["duplicate_window_seconds"] == 86400
            assert row.inputs["frequency"] == [
                {"cap": "3 per 1d (rules.max_sends_per_number)", "count": 3,
                 "per_seconds": 86400, "sent": 0}
            ]  # fmt: skip
            assert row.inputs["consent"] is None
            assert row.inputs["calling_hours"]["zone_source"] == "fixed"

    def test_delivery_keeps_its_rules_once(
        self, sessions: sessionmaker[Session], simz_emulator: SimzEmulator
    ) -> None:
        """Two passes with the same rules: one rules_versions row, named by every decision."""
        insert_leads(sessions, [1, 2])
        sync = make_sync(rules={"max_sends_per_number": [{"count": 5, "per": "7d"}]})
        config = simz_config_for(simz_emulator)
        client = SimzClient(config)
        try:
            first = deliver_sync(sessions, client, sync, config, now=lambda: T0, worker="t")
            insert_leads(sessions, [3])
            second = deliver_sync(sessions, client, sync, config, now=lambda: T0, worker="t")
        finally:
            client.close()
        assert (first.accepted, second.accepted) == (2, 1)
        with sessions() as session:
            [kept] = session.scalars(select(RulesVersion)).all()
        assert (kept.version, kept.sync_name) == (gate_rules(sync).version, "web")
        assert kept.rules == effective_rules(sync)
        assert {row.rules_version for row in decisions(sessions)} == {kept.version}
        assert len(decisions(sessions)) == 3

    def test_no_row_for_a_lead_held_back(self, sessions: sessionmaker[Session]) -> None:
        insert_leads(sessions, [1])
        with sessions.begin() as session:
            session.execute(update(Lead).values(do_not_call=True))
        assert claim(sessions, make_sync()) is None
        assert decisions(sessions) == []


@needs_postgres
def test_the_gate_locks_numbers_even_without_the_duplicate_rule(postgres_url: str) -> None:
    """The suppression list is always on: a number whose lock is busy stays queued untouched."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    try:
        sessions = make_session_factory(engine)
        held, free = insert_leads(sessions, [1, 2])
        holder = sessions()
        holder.begin()
        number_locks.lock_phones(holder, [phone(1)])
        with sessions.begin() as session:
            found = outbox.claim(
                session,
                sync_name="web",
                agent_id="agt_1",
                credential="k",
                limit=10,
                now=T0,
                worker="test",
                rules=GateRules(),
            )
        assert claimed_ids(found) == [free]
        assert lead(sessions, held).state == "queued"
        assert len(audit(sessions, held)) == 1
        holder.rollback()
        holder.close()
        assert sf_id(1) == held
    finally:
        engine.dispose()
