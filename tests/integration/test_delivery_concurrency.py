"""Two delivery workers at once, each with its own engine and client, never share a lead.

On PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED``; on SQLite writers are
serialised by ``BEGIN IMMEDIATE``. Either way SimZ must receive every lead
exactly once and each lead must have been claimed exactly once.
"""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import func, select

from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.migrate import upgrade
from syncd.adapters.orm import Batch, LeadTransition
from syncd.adapters.simz import SimzClient
from syncd.sandbox.simz import SimzEmulator
from syncd.services.deliver import DeliveryResult, deliver_sync
from tests.integration.delivery_rows import insert_leads, make_sync, states
from tests.simz_fixtures import simz_config_for

LEADS = 400


class TestTwoWorkers:
    def test_no_lead_claimed_twice(self, db_url: str, simz_emulator: SimzEmulator) -> None:
        """Two workers draining one outbox send each lead once, in disjoint batches."""
        setup_engine = make_engine(db_url)
        upgrade(setup_engine)
        sessions = make_session_factory(setup_engine)
        ids = insert_leads(sessions, range(LEADS))
        config = simz_config_for(simz_emulator, batch_size=7)
        sync = make_sync()
        start = threading.Barrier(2)
        results: dict[str, DeliveryResult] = {}
        failures: list[BaseException] = []

        def work(name: str) -> None:
            engine = make_engine(db_url)
            client = SimzClient(config)
            try:
                start.wait(timeout=30)
                results[name] = deliver_sync(
                    make_session_factory(engine), client, sync, config, worker=name
                )
            except BaseException as exc:  # reported below, in the test's thread
                failures.append(exc)
            finally:
                client.close()
                engine.dispose()

        threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not failures, failures
        assert sum(r.accepted for r in results.values()) == LEADS

        assert simz_emulator.received_counts() == {i: 1 for i in ids}
        assert set(states(sessions).values()) == {"accepted"}
        with sessions() as session:
            claims = Counter(
                session.scalars(
                    select(LeadTransition.lead_id).where(LeadTransition.to_state == "sending")
                )
            )
            assert len(claims) == LEADS and set(claims.values()) == {1}
            per_worker = dict(
                session.execute(
                    select(Batch.worker, func.sum(Batch.lead_count)).group_by(Batch.worker)
                ).all()
            )
            assert sum(per_worker.values()) == LEADS
            assert set(per_worker) <= {"w1", "w2"}
        setup_engine.dispose()
