"""``explain`` and ``audit export`` read back rows written straight into a real database.

One number, two syncs, two agents: a lead sent twice (a 429, then accepted),
each send with its dial decision; the same record in another sync, sent once
before decisions were recorded (no decision row) and left uncertain; another
number's decision that must stay out; the number on the suppression list; and
operators' actions about the number, about the record, and about something else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.orm import (
    Batch,
    DialDecision,
    Lead,
    LeadTransition,
    OperatorAction,
    RulesVersion,
    Suppression,
)
from syncd.services.audit_export import (
    DECISION_ROW,
    NO_DECISION,
    SEND_ROW,
    csv_table,
    export_number,
)
from syncd.services.explain import BATCH, DECISION, OPERATOR_ACTION, TRANSITION, explain
from tests.integration.operator_rows import sf_id

T0 = datetime(2026, 1, 5, 13, 0, tzinfo=UTC)
NUMBER = "+12025550123"
OTHER = "+12025550199"
RECORD = sf_id(1)
INPUTS: dict[str, Any] = {
    "do_not_call": False,
    "consent": {
        "rule": "ConsentDate__c (date, lapsing after 365d)",
        "value": "2025-11-26",
        "age_seconds": 40 * 86400.0,
    },
    "suppression": {"checked": True, "listed": False},
    "frequency": [
        {
            "cap": "3 per 24h (rules.max_sends_per_number)",
            "count": 3,
            "per_seconds": 86400,
            "sent": 0,
        }
    ],
    "duplicate_window_seconds": 86400,
    "calling_hours": {
        "rule": "08:00-21:00 mon-sun",
        "zones": ["America/New_York"],
        "zone_source": "phone",
        "local_time": "2026-01-05T08:00:00-05:00",
    },
}


def _lead(session: Session, sync: str, record: str, agent: str, state: str, phone: str) -> Lead:
    lead = Lead(
        sync_name=sync,
        salesforce_id=record,
        agent_id=agent,
        state=state,
        payload={"phoneNumber": phone, "salesforceId": record},
        phone_e164=phone,
        record_cursor=T0,
        record_hash="h" * 64,
        created_at=T0,
        updated_at=T0,
    )
    session.add(lead)
    session.flush()
    return lead


def _batch(session: Session, sync: str, agent: str, at: datetime, **answer: Any) -> Batch:
    batch = Batch(
        sync_name=sync,
        agent_id=agent,
        api_key_id="fp1234",
        lead_count=1,
        created_at=at,
        posted_at=at,
        finished_at=at + timedelta(seconds=1),
        **answer,
    )
    session.add(batch)
    session.flush()
    return batch


def _moves(session: Session, lead: Lead, *steps: tuple[str | None, str, Batch | None, int]) -> None:
    for source, target, batch, minute in steps:
        session.add(
            LeadTransition(
                lead_id=lead.id,
                from_state=source,
                to_state=target,
                reason=f"{source or 'new'} to {target}",
                batch_id=batch.id if batch else None,
                at=T0 + timedelta(minutes=minute),
            )
        )


def _decide(session: Session, lead: Lead, batch: Batch, minute: int, inputs: Any) -> None:
    session.add(
        DialDecision(
            lead_id=lead.id,
            sync_name=lead.sync_name,
            agent_id=batch.agent_id,
            phone_e164=lead.phone_e164,
            batch_id=batch.id,
            decided_at=T0 + timedelta(minutes=minute),
            rules_version="3f2a9c1e0b7d4a55",
            inputs=inputs,
        )
    )


def _action(session: Session, scope: str, name: str, detail: str | None, minute: int) -> None:
    session.add(
        OperatorAction(
            at=T0 + timedelta(minutes=minute),
            actor="ana",
            action="resolve" if scope == "sync" else "suppress",
            scope=scope,
            name=name,
            reason=f"about {name}",
            detail=detail,
        )
    )


@pytest.fixture
def history(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions.begin() as session:
        web = _lead(session, "web", RECORD, "agt_1", "accepted", NUMBER)
        retry = _batch(
            session, "web", "agt_1", T0 + timedelta(minutes=1), http_status=429, outcome="retry"
        )
        sent = _batch(
            session, "web", "agt_1", T0 + timedelta(minutes=5), http_status=200,
            outcome="accepted", simz_batch_id="simz-7", accepted=1, rejected=0,
        )  # fmt: skip
        web.batch_id, web.simz_batch_id = sent.id, "simz-7"
        _moves(
            session, web, (None, "queued", None, 0), ("queued", "sending", retry, 1),
            ("sending", "queued", retry, 2), ("queued", "sending", sent, 5),
            ("sending", "accepted", sent, 6),
        )  # fmt: skip
        _decide(session, web, retry, 1, INPUTS)
        _decide(session, web, sent, 5, {"do_not_call": False})
        partner = _lead(session, "partner", RECORD, "agt_us", "uncertain", NUMBER)
        lost = _batch(session, "partner", "agt_us", T0 - timedelta(days=1), outcome="uncertain")
        partner.batch_id = lost.id
        _moves(session, partner, (None, "queued", None, -1441), ("queued", "sending", lost, -1440))
        _moves(session, partner, ("sending", "uncertain", lost, -1439))
        other = _lead(session, "web", sf_id(2), "agt_1", "sending", OTHER)
        elsewhere = _batch(session, "web", "agt_1", T0 + timedelta(minutes=9))
        _moves(session, other, (None, "queued", None, 8), ("queued", "sending", elsewhere, 9))
        _decide(session, other, elsewhere, 9, INPUTS)
        session.add(
            RulesVersion(
                version="3f2a9c1e0b7d4a55",
                sync_name="web",
                rules={"consent": {"field": "ConsentDate__c"}},
                first_seen_at=T0,
            )
        )
        session.add(
            Suppression(
                phone_e164=NUMBER, source="operator", reason="asked on the call",
                added_by="ana", record_id=RECORD, sync_name="web",
                seen_at=T0 + timedelta(hours=1), added_at=T0 + timedelta(hours=1),
            )
        )  # fmt: skip
        _action(session, "number", NUMBER, None, 60)
        _action(session, "number", OTHER, None, 61)
        _action(session, "sync", "web", f"uncertain -> accepted: {RECORD}", 7)
        _action(session, "sync", "web", f"uncertain -> accepted: {sf_id(2)}", 8)
        return {"web": web.id, "partner": partner.id, "other": other.id}


class TestExplain:
    def test_a_record_in_two_syncs_gives_both_leads(
        self, sessions: sessionmaker[Session], history: dict[str, int]
    ) -> None:
        stories = explain(sessions, RECORD)
        assert [(s.sync, s.id) for s in stories] == [
            ("partner", history["partner"]),
            ("web", history["web"]),
        ]
        assert all(s.number_ending == "0123" for s in stories)

    def test_the_timeline_is_oldest_first_decision_before_the_move(
        self, sessions: sessionmaker[Session], history: dict[str, int]
    ) -> None:
        (web,) = explain(sessions, str(history["web"]))
        kinds = [(e.kind, e.text.split(":")[0]) for e in web.events]
        assert kinds[:4] == [
            (TRANSITION, "new -> queued"),
            (DECISION, "dial decision"),
            (TRANSITION, "queued -> sending"),
            (BATCH, kinds[3][1]),
        ]
        times = [e.at for e in web.events]
        assert times == sorted(times)
        decision = web.events[1]
        assert "consent ConsentDate__c = 2025-11-26, 40 days old, within 365d" in decision.lines
        assert decision.data["inputs"] == INPUTS
        second = [e for e in web.events if e.kind == DECISION][1]
        assert second.lines[0] == "DoNotCall not set"
        assert "consent not recorded" in second.lines
        batches = [e.text for e in web.events if e.kind == BATCH]
        assert len(batches) == 2
        assert "SimZ answered HTTP 429: retry" in batches[0]
        assert "SimZ answered HTTP 200: accepted (SimZ batch id simz-7; 1 accepted" in batches[1]

    def test_operator_actions_about_the_record_and_number_only(
        self, sessions: sessionmaker[Session], history: dict[str, int]
    ) -> None:
        (web,) = explain(sessions, str(history["web"]))
        actions = [e for e in web.events if e.kind == OPERATOR_ACTION]
        assert [a.data["scope"] for a in actions] == ["sync", "number"]
        assert RECORD in actions[0].text
        assert NUMBER not in actions[1].text and "ending 0123" in actions[1].text

    def test_a_lead_without_decisions_still_tells_its_trail(
        self, sessions: sessionmaker[Session], history: dict[str, int]
    ) -> None:
        (partner,) = explain(sessions, str(history["partner"]))
        kinds = [e.kind for e in partner.events]
        assert kinds == [TRANSITION, TRANSITION, BATCH, TRANSITION, OPERATOR_ACTION]
        assert partner.events[3].text.startswith("sending -> uncertain")

    @pytest.mark.parametrize("ident", ["00Q000000000000XYZ", "999999", "9" * 30, "%", ""])
    def test_unknown_ids_match_nothing(
        self, sessions: sessionmaker[Session], history: dict[str, int], ident: str
    ) -> None:
        assert explain(sessions, ident) == []


class TestAuditExport:
    def test_every_decision_and_send_of_the_number_and_nothing_else(
        self, sessions: sessionmaker[Session], history: dict[str, int]
    ) -> None:
        pack = export_number(sessions, NUMBER, now=T0)
        got = [(r.kind, r.sync, r.agent, r.lead_id, r.outcome, r.simz_batch_id) for r in pack.rows]
        assert got == [
            (SEND_ROW, "partner", "agt_us", history["partner"], "uncertain", None),
            (DECISION_ROW, "web", "agt_1", history["web"], "queued", None),
            (DECISION_ROW, "web", "agt_1", history["web"], "accepted", "simz-7"),
        ]
        assert {r.record_id for r in pack.rows} == {RECORD}
        assert pack.rows[0].explanation == [NO_DECISION]
        assert pack.rows[1].inputs == INPUTS
        assert [(v.version, v.rules) for v in pack.rules_versions] == [
            ("3f2a9c1e0b7d4a55", {"consent": {"field": "ConsentDate__c"}})
        ]
        assert pack.suppression is not None and pack.suppression.reason == "asked on the call"
        assert [a.reason for a in pack.operator_actions] == [f"about {NUMBER}"]

    def test_a_number_never_sent_gives_an_empty_pack(
        self, sessions: sessionmaker[Session], history: dict[str, int]
    ) -> None:
        pack = export_number(sessions, "+12025550100")
        assert pack.rows == [] and pack.suppression is None and pack.rules_versions == []

    def test_csv_flattens_every_input_and_adds_the_list_entry_and_actions(
        self, sessions: sessionmaker[Session], history: dict[str, int]
    ) -> None:
        headers, rows = csv_table(export_number(sessions, NUMBER, now=T0))
        assert headers[:3] == ["kind", "decided_at", "sync"]
        assert {"consent.value", "frequency.0.sent", "calling_hours.zones"} <= set(headers)
        assert all(len(row) == len(headers) for row in rows)
        column = dict(zip(headers, rows[1], strict=True))
        assert column["consent.value"] == "2025-11-26"
        assert column["decided_at"] == "2026-01-05T13:01:00.000Z"
        assert "number not on the suppression list" in column["explanation"]
        assert [row[0] for row in rows[3:]] == ["suppression", "operator_action"]
