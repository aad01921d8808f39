"""Operator pauses (``syncd pause``/``resume``) against real delivery, on SQLite and PostgreSQL.

A pause stops the sending of a sync or an agent at the next claim, SimZ's
answers never lift it, resume sends each waiting lead exactly once, and every
pause and resume is in the audit trail.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.orm import OperatorAction
from syncd.adapters.simz import SimzClient
from syncd.config.models import SimzConfig
from syncd.sandbox.simz import SimzEmulator
from syncd.services import pausing
from syncd.services.deliver import DeliveryResult, deliver_sync
from tests.integration.delivery_rows import T0, insert_leads, make_sync, states
from tests.simz_fixtures import simz_config_for

NOW = T0 + timedelta(minutes=1)


@pytest.fixture
def simz(simz_emulator: SimzEmulator) -> SimzConfig:
    return simz_config_for(simz_emulator, batch_size=10)


@pytest.fixture
def client(simz: SimzConfig) -> Iterator[SimzClient]:
    made = SimzClient(simz)
    yield made
    made.close()


def deliver(
    sessions: sessionmaker[Session], client: SimzClient, simz: SimzConfig, sync: str = "web"
) -> DeliveryResult:
    return deliver_sync(sessions, client, make_sync(sync), simz, now=lambda: NOW, worker="test")


def pause(sessions: sessionmaker[Session], scope: str, name: str) -> pausing.PauseOutcome:
    return pausing.pause(
        sessions, scope=scope, name=name, reason="campaign change", actor="ops", now=lambda: NOW
    )


def resume(sessions: sessionmaker[Session], scope: str, name: str) -> object:
    return pausing.resume(
        sessions, scope=scope, name=name, reason="done", actor="ops2", now=lambda: NOW
    )


class TestPauseSync:
    def test_paused_sync_sends_nothing_and_resume_sends_each_once(
        self,
        sessions: sessionmaker[Session],
        client: SimzClient,
        simz: SimzConfig,
        simz_emulator: SimzEmulator,
    ) -> None:
        """While the sync is paused no POST is made; after resume every lead goes once."""
        ids = insert_leads(sessions, range(15))
        ids += insert_leads(sessions, range(15, 20), agent="agt_2")
        pause(sessions, "sync", "web")
        result = deliver(sessions, client, simz)
        assert result.paused and result.batches == 0
        assert simz_emulator.received() == []
        assert set(states(sessions).values()) == {"queued"}

        assert resume(sessions, "sync", "web") is not None
        result = deliver(sessions, client, simz)
        assert not result.paused and result.accepted == 20
        assert simz_emulator.received_counts() == {i: 1 for i in ids}
        deliver(sessions, client, simz)
        assert simz_emulator.received_counts() == {i: 1 for i in ids}

    def test_other_sync_keeps_flowing(
        self,
        sessions: sessionmaker[Session],
        client: SimzClient,
        simz: SimzConfig,
        simz_emulator: SimzEmulator,
    ) -> None:
        """Pausing one sync leaves another sync to the same agent alone."""
        insert_leads(sessions, range(3))
        partner = insert_leads(sessions, range(3, 6), sync="partner")
        pause(sessions, "sync", "web")
        deliver(sessions, client, simz)
        deliver(sessions, client, simz, sync="partner")
        assert set(simz_emulator.received_counts()) == set(partner)


class TestPauseAgent:
    def test_paused_agent_waits_while_others_flow(
        self,
        sessions: sessionmaker[Session],
        client: SimzClient,
        simz: SimzConfig,
        simz_emulator: SimzEmulator,
    ) -> None:
        """An agent pause holds that agent's leads in every sync; other agents are sent."""
        held = insert_leads(sessions, range(5))
        held += insert_leads(sessions, range(5, 8), sync="partner")
        flowing = insert_leads(sessions, range(8, 12), agent="agt_2")
        pause(sessions, "agent", "agt_1")
        result = deliver(sessions, client, simz)
        deliver(sessions, client, simz, sync="partner")
        assert result.paused and result.accepted == len(flowing)
        assert simz_emulator.received_counts() == {i: 1 for i in flowing}
        assert {states(sessions)[i] for i in held} == {"queued"}
        # A successful SimZ answer (which clears SimZ-driven pauses) leaves it in force.
        assert [h.name for h in pausing.all_pauses(sessions)] == ["agt_1"]

        resume(sessions, "agent", "agt_1")
        deliver(sessions, client, simz)
        deliver(sessions, client, simz, sync="partner")
        assert simz_emulator.received_counts() == {i: 1 for i in held + flowing}


class TestAuditTrail:
    def test_pause_is_idempotent_and_both_actions_are_recorded(
        self, sessions: sessionmaker[Session]
    ) -> None:
        """A second pause keeps the first; pause and resume each write who and why."""
        first = pause(sessions, "sync", "web")
        again = pausing.pause(
            sessions, scope="sync", name="web", reason="other", actor="x", now=lambda: NOW
        )
        assert first.created and not again.created
        assert again.pause.reason == "campaign change" and again.pause.paused_by == "ops"
        assert resume(sessions, "sync", "web") is not None
        assert resume(sessions, "sync", "web") is None
        with sessions() as session:
            rows = session.execute(
                select(
                    OperatorAction.action,
                    OperatorAction.scope,
                    OperatorAction.name,
                    OperatorAction.actor,
                    OperatorAction.reason,
                ).order_by(OperatorAction.id)
            ).all()
        assert [tuple(r) for r in rows] == [
            ("pause", "sync", "web", "ops", "campaign change"),
            ("resume", "sync", "web", "ops2", "done"),
        ]

    def test_two_pauses_at_once_keep_one_and_neither_fails(
        self, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Both read "not paused" before either inserts: the second gets the first's pause.

        PostgreSQL only: SQLite's writers are serialised (BEGIN IMMEDIATE), so the
        second read waits for the first commit and sees its pause.
        """
        if sessions.kw["bind"].dialect.name == "sqlite":
            pytest.skip("SQLite serialises writers: two pauses cannot both read first")
        both_read = threading.Barrier(2, timeout=10)
        waited: set[str] = set()
        find = pausing.operator_pauses.find

        def find_then_wait(session: Session, scope: str, name: str) -> pausing.Pause | None:
            found = find(session, scope, name)
            me = threading.current_thread().name
            if me.startswith("pause-") and me not in waited:
                waited.add(me)
                both_read.wait()
            return found

        monkeypatch.setattr(pausing.operator_pauses, "find", find_then_wait)
        outcomes: dict[str, pausing.PauseOutcome] = {}
        errors: list[BaseException] = []

        def run(actor: str) -> None:
            try:
                outcomes[actor] = pausing.pause(
                    sessions, scope="sync", name="web", reason=actor, actor=actor, now=lambda: NOW
                )
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(a,), name=f"pause-{a}") for a in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert sorted(o.created for o in outcomes.values()) == [False, True]
        [winner] = [actor for actor, o in outcomes.items() if o.created]
        assert {o.pause.paused_by for o in outcomes.values()} == {winner}
        with sessions() as session:
            actions = session.scalars(select(OperatorAction.actor)).all()
        assert actions == [winner]

    @pytest.mark.parametrize(
        ("scope", "name", "reason", "actor"),
        [("sync", "web", " ", "ops"), ("team", "web", "why", "ops"), ("agent", "", "why", "ops")],
    )
    def test_bad_arguments_are_refused(
        self, sessions: sessionmaker[Session], scope: str, name: str, reason: str, actor: str
    ) -> None:
        """An empty reason or name, or an unknown scope, is a ValueError and stores nothing."""
        with pytest.raises(ValueError):
            pausing.pause(sessions, scope=scope, name=name, reason=reason, actor=actor)
        assert pausing.all_pauses(sessions) == []
