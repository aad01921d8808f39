"""Write-back when things go wrong: broken fields, whole-call backoff, resync and audit rows.

Real databases and the Salesforce emulator over HTTPS (a stub target where the
emulator cannot answer a whole call with a 4xx).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import writeback_store as store
from syncd.adapters.orm import OperatorAction
from syncd.adapters.salesforce import SalesforceQueryError, SalesforceSource
from syncd.metrics import REGISTRY
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.operator import writeback_retry as ops
from syncd.services.writeback import MAX_REFUSED_CALLS, Writer
from tests.clock import Clock
from tests.integration.test_writeback import (
    T0,
    accept,
    add_leads,
    claim_all,
    make_sync,
    sf_leads,
    writebacks,
    writer,
)
from tests.integration.test_writeback import emulator as emulator
from tests.integration.test_writeback import sessions as sessions
from tests.salesforce_fixtures import salesforce_config


@pytest.fixture
def source(emulator: SalesforceEmulator) -> Iterator[SalesforceSource]:
    found = SalesforceSource(salesforce_config(emulator))
    yield found
    found.close()


def broken_gauge(sync: str = "web") -> float | None:
    return REGISTRY.get_sample_value("syncd_writeback_broken", {"sync": sync})


def queue_accepted(
    sessions: sessionmaker[Session], emulator: SalesforceEmulator, count: int, start: int = 0
) -> list[str]:
    sf = sf_leads(emulator, count, start)
    ids = add_leads(sessions, sf)
    accept(sessions, claim_all(sessions), list(ids.values()))
    return sf


def actions(sessions: sessionmaker[Session]) -> list[tuple[str, str, str, str, str | None]]:
    with sessions() as session:
        rows = session.execute(
            select(
                OperatorAction.action,
                OperatorAction.actor,
                OperatorAction.name,
                OperatorAction.reason,
                OperatorAction.detail,
            ).order_by(OperatorAction.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


class TestBrokenFields:
    def test_a_field_made_read_only_marks_the_sync_broken_until_a_clean_call(
        self,
        sessions: sessionmaker[Session],
        emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        queue_accepted(sessions, emulator, 2)
        emulator.declare_field("Lead.SimZ_Status__c:picklist:40:readonly")
        clock = Clock(T0)
        sender = writer(sessions, source, clock)
        result = sender.run()
        assert (result.calls, result.failed) == (1, 2)
        assert result.status == "failed"
        assert "INVALID_FIELD_FOR_INSERT_UPDATE" in (result.error or "")
        assert broken_gauge() == 1
        with sessions() as session:
            [(count, error)] = store.field_errors(session).values()
        assert count == 2 and error.startswith("INVALID_FIELD_FOR_INSERT_UPDATE")

        # The field is back and the rows are retried: the next call clears it.
        emulator.declare_field("Lead.SimZ_Status__c:picklist:40")
        ops.retry_writebacks(sessions, "web", actor="ops", now=clock)
        again = sender.run()
        assert (again.done, again.status) == (2, "ok")
        assert broken_gauge() == 0
        with sessions() as session:
            assert store.field_errors(session) == {}


class TestCallBackoff:
    def test_an_outage_backs_the_writer_off_exponentially(
        self,
        sessions: sessionmaker[Session],
        emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        """New rows keep coming, yet calls go out at 10 s, 20 s, 40 s... not every pass."""
        emulator.inject("503", count=100_000, only="/composite")
        clock = Clock(T0)
        sender = writer(sessions, source, clock)
        calls = 0
        for second in range(0, 75):
            clock.at = T0 + timedelta(seconds=second)
            queue_accepted(sessions, emulator, 1, start=second)
            calls += sender.run().calls
        # rng 1.0: the waits are exactly 10 s, 20 s, 40 s (calls at 0, 10, 30, 70).
        assert calls == 4
        assert sender.run().status == "backoff"
        emulator.clear_faults()
        clock.at = T0 + timedelta(minutes=10)
        result = sender.run()
        assert result.status == "ok" and result.done == 75
        assert sender.call_failures == 0 and sender.resume_at is None

    def test_a_refused_whole_call_fails_its_rows_after_a_bounded_number_of_tries(
        self, sessions: sessionmaker[Session], emulator: SalesforceEmulator
    ) -> None:
        class Refusing:
            calls = 0

            def update_collection(self, body: dict[str, Any]) -> Any:
                self.calls += 1
                raise SalesforceQueryError("INVALID_TYPE: sObject type 'Lead' is not supported")

            def describe_fields(self, sobject: str) -> list[dict[str, Any]]:
                return [{"name": "SimZ_Error__c", "length": 40}]

            def api_usage(self) -> tuple[int, int] | None:
                return None

        queue_accepted(sessions, emulator, 3)
        target = Refusing()
        clock = Clock(T0)
        sender = Writer(
            sessions, target, make_sync(), max_api_usage_percent=80, now=clock, rng=lambda: 1.0
        )
        for _ in range(MAX_REFUSED_CALLS + 3):
            clock.advance(hours=1)
            sender.run()
        assert target.calls == MAX_REFUSED_CALLS
        rows = writebacks(sessions).values()
        assert {row.status for row in rows} == {"failed"}
        assert all("INVALID_TYPE" in (row.last_error or "") for row in rows)


class TestOperatorCommands:
    def test_retry_writes_an_audit_row(
        self,
        sessions: sessionmaker[Session],
        emulator: SalesforceEmulator,
        source: SalesforceSource,
    ) -> None:
        sf = queue_accepted(sessions, emulator, 1)
        emulator.delete_record("Lead", sf[0])
        writer(sessions, source, Clock(T0)).run()
        assert ops.retry_writebacks(sessions, "web", actor="ana", reason="restored") == 1
        assert actions(sessions) == [
            ("writeback-retry", "ana", "web", "restored", "1 failed write-back(s) back to pending")
        ]

    def test_resync_queues_leads_sent_before_write_back_was_on(
        self, sessions: sessionmaker[Session], emulator: SalesforceEmulator
    ) -> None:
        sf = sf_leads(emulator, 3)
        ids = add_leads(sessions, sf)
        # Accepted while write-back was off: no row queued.
        off = sessionmaker(bind=sessions.kw["bind"])
        accept(off, claim_all(off), list(ids.values()))
        assert writebacks(sessions) == {}
        seen: list[tuple[int, int]] = []
        candidates = ops.resync_candidates(sessions, "web", None)
        assert sorted(candidates) == sorted(ids.values())
        queued = ops.resync_writebacks(
            sessions, "web", candidates, actor="ana", progress=lambda d, t: seen.append((d, t))
        )
        assert queued == 3 and seen == [(3, 3)]
        assert {(r.state, r.status) for r in writebacks(sessions).values()} == {
            ("accepted", "pending")
        }
        assert ops.resync_candidates(sessions, "web", None) == []
        # --since: every lead that changed state since then, queued or not.
        assert len(ops.resync_candidates(sessions, "web", T0)) == 3
        assert ops.resync_candidates(sessions, "web", T0 + timedelta(days=1)) == []
        [(action, actor, name, reason, detail)] = actions(sessions)
        assert (action, actor, name, reason) == (
            "writeback-resync",
            "ana",
            "web",
            ops.RESYNC_REASON,
        )
        assert detail == "3 lead outcome(s) queued for write-back (never queued)"
