"""Never twice, never lost: random answers, faults, polls, crashes and restarts.

A hypothesis state machine drives the real delivery engine against the SimZ
emulator over HTTP, with a SQLite file. Whatever SimZ answers and wherever
the process dies, SimZ must never receive a Salesforce Id twice, and every
lead must end in exactly one state of docs/design.md#lead-states that agrees with what
SimZ actually received.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.migrate import upgrade
from syncd.adapters.orm import Lead, LeadTransition
from syncd.adapters.simz import SimzClient
from syncd.domain.states import LeadState
from syncd.sandbox.simz import SimzEmulator
from syncd.services.deliver import deliver_sync, recover_in_flight
from tests.integration.delivery_rows import T0, insert_leads, make_sync
from tests.simz_fixtures import simz_config_for

#: Salesforce numbers unique across examples: a delayed request of one example may still
#: be recorded by the emulator after the next example has reset it.
NUMBERS = itertools.count()

FAULTS = ["429", "503", "500", "400", "413", "lost_response", "garbage_200", "reset", "delay"]


class Crash(BaseException):
    """Stands in for kill -9: nothing after it runs."""


class CrashingClient(SimzClient):
    """Dies just before or just after one POST."""

    after_post = False

    def submit(self, agent_id: str, body: dict[str, Any], **kw: Any) -> Any:
        if self.after_post:
            super().submit(agent_id, body, **kw)
        raise Crash()


def machine_for(emulator: SimzEmulator, workdir: Path) -> type[RuleBasedStateMachine]:
    sync = make_sync()

    class Delivery(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            emulator.reset()
            self.url = f"sqlite:///{workdir}/{uuid.uuid4().hex}.db"
            self.engine = make_engine(self.url)
            upgrade(self.engine)
            self.sessions = make_session_factory(self.engine)
            self.config = simz_config_for(
                emulator,
                batch_size=3,
                max_attempts=3,
                timeout={"connect": 5, "read": 0.25},
                backoff={"initial": "1s", "max": "1m"},
            )
            self.client = SimzClient(self.config)
            self.now = T0 + timedelta(minutes=1)
            self.inserted = 0
            self.crashed = False

        @initialize()
        def start(self) -> None:
            recover_in_flight(self.sessions, now=lambda: self.now)

        # ---------------------------------------------------------------- world

        @rule(size=st.integers(1, 7), bad=st.sets(st.integers(0, 6), max_size=2))
        def poll(self, size: int, bad: set[int]) -> None:
            """New records arrive; some with a phone SimZ refuses per lead."""
            numbers = [next(NUMBERS) for _ in range(size)]
            phones = {numbers[i]: "0000" for i in bad if i < size}
            insert_leads(self.sessions, numbers, phones=phones, now=self.now)
            self.inserted += size

        @rule(kind=st.sampled_from(FAULTS), count=st.integers(1, 3))
        def fault(self, kind: str, count: int) -> None:
            params: dict[str, Any] = {}
            if kind == "429":
                params["retry_after"] = 2
            if kind == "delay":
                params["seconds"] = 0.4
            emulator.inject(kind, count=count, **params)

        @rule(on=st.booleans())
        def agent_exists(self, on: bool) -> None:
            (emulator.add_agent if on else emulator.remove_agent)("agt_1")

        @rule(credits=st.sampled_from([None, 0, 4]))
        def credits(self, credits: int | None) -> None:
            emulator.set_credits(credits)

        @rule(seconds=st.sampled_from([1, 30, 600, 3600]))
        def time_passes(self, seconds: int) -> None:
            self.now += timedelta(seconds=seconds)

        # ---------------------------------------------------------------- syncd

        @precondition(lambda self: not self.crashed)
        @rule()
        def deliver(self) -> None:
            deliver_sync(
                self.sessions, self.client, sync, self.config, now=lambda: self.now, worker="p"
            )

        @precondition(lambda self: not self.crashed)
        @rule(after_post=st.booleans())
        def crash_during_delivery(self, after_post: bool) -> None:
            """The process dies around a POST, leaving its batch in flight."""
            client = CrashingClient(self.config)
            client.after_post = after_post
            try:
                deliver_sync(
                    self.sessions, client, sync, self.config, now=lambda: self.now, worker="p"
                )
            except Crash:
                self.crashed = True
            finally:
                client.close()

        @rule()
        def restart(self) -> None:
            """A new process: fresh engine and client, in-flight leads recovered."""
            self.client.close()
            self.engine.dispose()
            self.engine = make_engine(self.url)
            upgrade(self.engine)
            self.sessions = make_session_factory(self.engine)
            self.client = SimzClient(self.config)
            recover_in_flight(self.sessions, now=lambda: self.now)
            self.crashed = False

        # ---------------------------------------------------------------- promises

        @invariant()
        def never_twice(self) -> None:
            twice = {sf: n for sf, n in emulator.received_counts().items() if n > 1}
            assert not twice, f"SimZ received these more than once: {twice}"

        def leads(self) -> dict[str, str]:
            with self.sessions() as session:
                return {
                    sf: state
                    for sf, state in session.execute(select(Lead.salesforce_id, Lead.state))
                }

        @invariant()
        def states_agree_with_simz(self) -> None:
            received = emulator.received_counts()
            accepted = emulator.received_counts(accepted_only=True)
            for sf, state in self.leads().items():
                assert state in {s.value for s in LeadState}
                if state in ("queued", "failed"):
                    assert sf not in received, f"{sf} is {state} but SimZ has it"
                if state == "accepted":
                    assert accepted.get(sf) == 1, f"{sf} accepted but SimZ did not take it"
                if sf in accepted:
                    assert state in ("accepted", "uncertain", "sending"), (sf, state)

        def teardown(self) -> None:
            try:
                if self.crashed:
                    self.restart()
                with self.sessions() as session:
                    rows = session.execute(select(Lead.id, Lead.state)).all()
                    trail = select(LeadTransition.lead_id, LeadTransition.to_state).order_by(
                        LeadTransition.id
                    )
                    last = {lead_id: state for lead_id, state in session.execute(trail)}
                assert len(rows) == self.inserted, "a lead went missing"
                for lead_id, state in rows:
                    assert state != "sending", "a lead was left in flight after recovery"
                    assert last[lead_id] == state, "the audit trail disagrees with the state"
            finally:
                self.client.close()
                self.engine.dispose()

    return Delivery


class TestDeliveryStateMachine:
    def test_never_twice_never_lost(self, simz_emulator: SimzEmulator, tmp_path: Path) -> None:
        """Random answers, faults, polls and crashes never duplicate or lose a lead."""
        run_state_machine_as_test(
            machine_for(simz_emulator, tmp_path),
            settings=settings(
                max_examples=25,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            ),
        )
