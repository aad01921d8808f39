"""What a claim and an answer's record send to the database, on each store.

On PostgreSQL the writes of a claim (its batch row, the move to ``sending`` with
the audit rows, the dial decisions) are one statement, and so are those of a
plain answer (the move, the pauses' end, the batch row's close, the release of
the batch claimed ahead): one round trip each (``ledger.moves.move_along``).
These tests count the statements and check that writes made together are still
all or nothing: a lead out of place or a release that cannot be made fails the
whole record, and the caller's rollback leaves nothing of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import ledger, outbox
from syncd.adapters.orm import DialDecision, Lead, LeadTransition, Pause
from syncd.domain import backoff
from syncd.domain.outcome import Limits, OutcomePlan, plan_outcome
from syncd.domain.responses import classify
from tests.integration.delivery_rows import T0, batches, count, insert_leads, states, transitions

WRITES = ("INSERT", "UPDATE", "DELETE", "WITH")
POLICY = backoff.BackoffPolicy(timedelta(seconds=10), timedelta(minutes=10))


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The statements sent on ``engine`` inside the block (an executemany counts once)."""
    sent: list[str] = []

    def listen(*args: Any) -> None:
        sent.append(" ".join(str(args[2]).split()))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def writes(sent: list[str]) -> list[str]:
    return [s for s in sent if s.upper().startswith(WRITES)]


def claim(sessions: sessionmaker[Session], limit: int, *, posted: bool = True) -> outbox.Claim:
    with sessions.begin() as session:
        found = outbox.claim(
            session,
            sync_name="web",
            agent_id="agt_1",
            credential="key",
            limit=limit,
            now=T0,
            worker="w",
            posted=posted,
        )
    assert found is not None
    return found


def success(found: outbox.Claim) -> OutcomePlan:
    """The plan of a 200 accepting every lead of ``found``."""
    body = {"success": True, "batchId": "b-1", "accepted": len(found.leads), "rejected": 0}
    return plan_outcome(
        classify(200, json.dumps(body).encode(), len(found.leads)),
        found.leads,
        agent_id=found.agent_id,
        credential="key",
        reply=None,
        limits=Limits(3, POLICY, 0.5),
        now=T0,
    )


def record(
    sessions: sessionmaker[Session], found: outbox.Claim, release: int | None = None
) -> outbox.Applied:
    with sessions.begin() as session:
        return outbox.apply_plan(
            session,
            success(found),
            batch_id=found.batch_id,
            credential="key",
            agent_id=found.agent_id,
            now=T0,
            release=release,
        )


def add_pause(sessions: sessionmaker[Session]) -> None:
    """An expired pause of the API key: a success ends it."""
    with sessions.begin() as session:
        session.add(
            Pause(
                scope=outbox.SCOPE_API_KEY,
                key="key",
                reason="401",
                http_status=401,
                failures=1,
                paused_until=T0 - timedelta(minutes=1),
                created_at=T0,
                updated_at=T0,
            )
        )


def test_a_claim_writes_in_one_statement_on_postgresql(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    ids = insert_leads(sessions, range(3))
    with statements(engine) as sent:
        found = claim(sessions, 3)
    postgres = engine.dialect.name == "postgresql"
    # SQLite: the batch row, the UPDATE, the audit rows and the dial decisions.
    assert len(writes(sent)) == (1 if postgres else 4)
    [batch] = batches(sessions)
    assert found.batch_id == batch.id and batch.lead_count == 3 and batch.posted_at == T0
    assert states(sessions) == {i: "sending" for i in ids}
    with sessions() as session:
        leads = session.scalars(select(Lead).order_by(Lead.id)).all()
        decided = session.scalars(select(DialDecision).order_by(DialDecision.id)).all()
    assert {lead.batch_id for lead in leads} == {batch.id}
    assert [d.lead_id for d in decided] == [lead.id for lead in leads]
    assert {d.batch_id for d in decided} == {batch.id}
    assert all(transitions(sessions, i)[-1] == ("queued", "sending", batch.id) for i in ids)


def test_a_plain_success_is_recorded_in_one_statement_on_postgresql(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    ids = insert_leads(sessions, range(4))
    first = claim(sessions, 2)
    ahead = claim(sessions, 2, posted=False)
    add_pause(sessions)
    with statements(engine) as sent:
        applied = record(sessions, first, release=ahead.batch_id)
    if engine.dialect.name == "postgresql":
        assert len(sent) == 1 and writes(sent) == sent
    else:  # the move (UPDATE, audit rows), the pauses, the close and the release
        assert len(writes(sent)) == 5
    assert applied.cleared == 1 and count(sessions, Pause) == 0
    assert states(sessions) == {ids[0]: "accepted", ids[1]: "accepted"} | {
        i: "sending" for i in ids[2:]
    }
    one, two = batches(sessions)
    assert (one.outcome, one.accepted, one.simz_batch_id, one.finished_at) == (
        "accepted",
        2,
        "b-1",
        T0,
    )
    assert (two.outcome, two.posted_at) == (None, T0)
    assert transitions(sessions, ids[0])[-1] == ("sending", "accepted", first.batch_id)


def test_a_release_that_cannot_be_made_fails_the_whole_record(
    sessions: sessionmaker[Session],
) -> None:
    """The batch claimed ahead was released already: nothing of the answer is kept."""
    ids = insert_leads(sessions, range(4))
    first = claim(sessions, 2)
    ahead = claim(sessions, 2, posted=False)
    with sessions.begin() as session:
        outbox.mark_posted(session, ahead.batch_id, T0)
    add_pause(sessions)
    with pytest.raises(outbox.OutboxConflict, match="not an open batch waiting"):
        record(sessions, first, release=ahead.batch_id)
    assert states(sessions) == {i: "sending" for i in ids}
    assert batches(sessions)[0].outcome is None
    assert count(sessions, Pause) == 1
    assert transitions(sessions, ids[0])[-1] == ("queued", "sending", first.batch_id)


def test_a_lead_out_of_place_fails_the_whole_record(sessions: sessionmaker[Session]) -> None:
    """A lead no longer ``sending``: the move fails and the writes along it are undone."""
    ids = insert_leads(sessions, range(4))
    first = claim(sessions, 2)
    ahead = claim(sessions, 2, posted=False)
    add_pause(sessions)
    with sessions.begin() as session:  # what the ledger forbids, done behind its back
        session.execute(update(Lead).where(Lead.salesforce_id == ids[1]).values(state="uncertain"))
    with pytest.raises(ledger.LedgerConflict, match="1 of 2 leads were not sending"):
        record(sessions, first, release=ahead.batch_id)
    assert states(sessions) == {ids[0]: "sending", ids[1]: "uncertain"} | {
        i: "sending" for i in ids[2:]
    }
    assert [(b.outcome, b.posted_at) for b in batches(sessions)] == [(None, T0), (None, None)]
    assert count(sessions, Pause) == 1
    with sessions() as session:
        audited = session.scalar(select(func.count()).where(LeadTransition.to_state == "accepted"))
    assert audited == 0
