"""ledger.move on each store: all or nothing, one audit row per lead moved."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select

from syncd.adapters import ledger
from syncd.adapters.db import make_session_factory
from syncd.adapters.orm import Lead, LeadTransition
from syncd.domain.page_plan import NewLead

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def new_lead(n: int, state: str = "queued") -> NewLead:
    return NewLead(
        salesforce_id=f"00Q{n:015d}",
        agent_id="agt_1",
        state=state,
        payload={"phoneNumber": f"+1415555{n:04d}"},
        phone_e164=f"+1415555{n:04d}",
        record_cursor=NOW,
        record_hash=f"{n:064x}",
        note=None,
    )


def test_a_move_writes_one_audit_row_per_lead(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with factory.begin() as session:
        ledger.insert_new(session, "s", [new_lead(n) for n in range(3)], NOW)
    with factory.begin() as session:
        ids = list(session.scalars(select(Lead.id).order_by(Lead.id)))
        moved = ledger.move(
            session, ids[:2], source="queued", target="skipped", reason="why", now=NOW
        )
    assert moved == 2
    with factory() as session:
        states = dict(session.execute(select(Lead.id, Lead.state)).all())
        rows = session.execute(
            select(LeadTransition.lead_id, LeadTransition.to_state, LeadTransition.reason).where(
                LeadTransition.from_state == "queued"
            )
        ).all()
    assert states == {ids[0]: "skipped", ids[1]: "skipped", ids[2]: "queued"}
    assert sorted(rows) == [(ids[0], "skipped", "why"), (ids[1], "skipped", "why")]


def test_a_lead_not_in_the_source_state_fails_the_whole_move(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with factory.begin() as session:
        ledger.insert_new(session, "s", [new_lead(0), new_lead(1, "invalid")], NOW)
    with factory() as session:
        ids = list(session.scalars(select(Lead.id).order_by(Lead.id)))
        with pytest.raises(ledger.LedgerConflict, match="1 of 2 leads were not queued"):
            ledger.move(session, ids, source="queued", target="skipped", reason="why", now=NOW)
        session.rollback()
    with factory() as session:
        assert session.scalars(select(Lead.state).order_by(Lead.id)).all() == [
            "queued",
            "invalid",
        ]
        assert (
            session.scalar(select(LeadTransition.id).where(LeadTransition.from_state.is_not(None)))
            is None
        )
