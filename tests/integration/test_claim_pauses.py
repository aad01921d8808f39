"""The claim's one read of every pause that stops it, on SQLite and PostgreSQL.

:func:`syncd.adapters.outbox.claim_pauses` must find exactly what the two reads
it replaces find (:func:`syncd.adapters.operator_pauses.pauses_of` and
:func:`syncd.adapters.outbox.active_pauses`): the operator's pauses of the sync
or the agent, and SimZ's unexpired pauses of the API key or the agent under it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import operator_pauses, outbox

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
KEY = "key-1"


def _operator(session: Session, scope: str, name: str) -> None:
    operator_pauses.add(
        session,
        operator_pauses.Pause(scope, name, f"pause {name}", "ops", NOW - timedelta(hours=1)),
    )


def _simz(session: Session, scope: str, key: str, minutes: int) -> None:
    outbox.pause(
        session,
        scope=scope,
        key=key,
        reason=f"refused {key}",
        http_status=429,
        now=NOW - timedelta(hours=1),
        until=lambda _failures: NOW + timedelta(minutes=minutes),
    )


def _both(sessions: sessionmaker[Session], sync: str, agent: str) -> tuple[object, object]:
    with sessions.begin() as session:
        one = outbox.claim_pauses(session, sync, KEY, agent, NOW)
        operator = operator_pauses.pauses_of(session, sync, agent)
        simz = outbox.active_pauses(session, KEY, agent, NOW)
    return (sorted(one.operator, key=repr), sorted(one.simz, key=repr)), (
        sorted(operator, key=repr),
        sorted(simz, key=repr),
    )


def test_nothing_paused_finds_nothing(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        found = outbox.claim_pauses(session, "web", KEY, "agt_1", NOW)
    assert found == outbox.ClaimPauses([], [])


def test_finds_what_the_two_reads_find(sessions: sessionmaker[Session]) -> None:
    agent_key = outbox.agent_pause_key(KEY, "agt_1")
    with sessions.begin() as session:
        _operator(session, operator_pauses.OPERATOR_SYNC, "web")
        _operator(session, operator_pauses.OPERATOR_AGENT, "agt_1")
        _operator(session, operator_pauses.OPERATOR_SYNC, "other-sync")
        _operator(session, operator_pauses.OPERATOR_AGENT, "agt_2")
        _simz(session, outbox.SCOPE_API_KEY, KEY, 5)
        _simz(session, outbox.SCOPE_AGENT, agent_key, 10)
        _simz(session, outbox.SCOPE_AGENT, outbox.agent_pause_key(KEY, "agt_2"), 10)
        _simz(session, outbox.SCOPE_API_KEY, "key-2", 10)

    one, two = _both(sessions, "web", "agt_1")

    assert one == two
    operator, simz = one
    assert [(p.scope, p.name, p.paused_by) for p in operator] == [
        (operator_pauses.OPERATOR_AGENT, "agt_1", "ops"),
        (operator_pauses.OPERATOR_SYNC, "web", "ops"),
    ]
    assert {(p.scope, p.key, p.http_status, p.failures) for p in simz} == {
        (outbox.SCOPE_API_KEY, KEY, 429, 1),
        (outbox.SCOPE_AGENT, agent_key, 429, 1),
    }
    assert {p.scope: p.paused_until for p in simz} == {
        outbox.SCOPE_API_KEY: NOW + timedelta(minutes=5),
        outbox.SCOPE_AGENT: NOW + timedelta(minutes=10),
    }


def test_an_expired_simz_pause_does_not_stop_the_claim(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _simz(session, outbox.SCOPE_API_KEY, KEY, -1)
        _simz(session, outbox.SCOPE_AGENT, outbox.agent_pause_key(KEY, "agt_1"), 0)

    one, two = _both(sessions, "web", "agt_1")

    assert one == two == ([], [])
