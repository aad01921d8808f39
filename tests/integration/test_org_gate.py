"""Delivery's org check against the Salesforce emulator and a real database.

The gate reads ``Organization`` through the real adapter (HTTPS to the
emulator) and remembers the trusted org in ``org_identity`` on each backend.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import org_store
from syncd.adapters.orm import OperatorAction, OrgIdentity
from syncd.adapters.salesforce import SalesforceSource
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.services.org_gate import OrgGate, read_org
from tests.clock import Clock
from tests.salesforce_fixtures import salesforce_config

REFRESHED = "00D8d000000RfshEAC"


@pytest.fixture
def source(salesforce_emulator: SalesforceEmulator) -> SalesforceSource:
    return SalesforceSource(salesforce_config(salesforce_emulator))


def gate(
    sessions: sessionmaker[Session], source: SalesforceSource, clock: Clock, **kw: bool
) -> OrgGate:
    return OrgGate(sessions, lambda: source, sandbox_allowed=kw.get("allow", False), now=clock)


class TestOrgGate:
    def test_first_org_is_trusted_and_a_changed_org_stops_delivery_until_trusted(
        self,
        sessions: sessionmaker[Session],
        source: SalesforceSource,
        salesforce_emulator: SalesforceEmulator,
    ) -> None:
        clock = Clock()
        first = gate(sessions, source, clock)
        assert first.problem() is None
        with sessions() as session:
            rows = session.scalars(select(OrgIdentity)).all()
            assert [(r.org_id, r.trusted, r.trusted_by) for r in rows] == [
                (salesforce_emulator.org_id, True, org_store.FIRST_SYNC)
            ]
        original = salesforce_emulator.org_id
        salesforce_emulator.set_org(REFRESHED)
        assert first.problem() is None  # not read again before the recheck
        clock.advance(minutes=1)
        problem = first.problem()
        assert problem is not None and REFRESHED in problem and original in problem
        # A new process meets the changed org: refused from the first pass.
        assert gate(sessions, source, clock).problem() == problem
        with sessions.begin() as session:
            org_store.trust(session, read_org(source), "alice", "new org, CHG-7", clock())
        assert first.problem() == problem  # the refusal is read again after `retry`
        clock.advance(seconds=10)
        assert first.problem() is None
        with sessions() as session:
            trusted = session.scalars(select(OrgIdentity).where(OrgIdentity.trusted)).all()
            assert [(r.org_id, r.trusted_by) for r in trusted] == [(REFRESHED, "alice")]
            action = session.scalars(select(OperatorAction)).one()
            assert (action.action, action.scope, action.name, action.actor) == (
                "trust-org",
                "org",
                REFRESHED,
                "alice",
            )
            assert action.detail is not None and f"before: {original}" in action.detail

    def test_a_sandbox_delivers_only_when_allowed_and_is_not_trusted_when_refused(
        self,
        sessions: sessionmaker[Session],
        source: SalesforceSource,
        salesforce_emulator: SalesforceEmulator,
    ) -> None:
        salesforce_emulator.set_org(is_sandbox=True)
        clock = Clock()
        problem = gate(sessions, source, clock).problem()
        assert problem is not None and "salesforce.sandbox: allow" in problem
        with sessions() as session:
            assert org_store.trusted_org(session) is None
        assert gate(sessions, source, clock, allow=True).problem() is None
        with sessions() as session:
            trusted = org_store.trusted_org(session)
            assert trusted is not None and trusted.org_id == salesforce_emulator.org_id

    def test_fails_closed_until_read_once_then_keeps_the_verdict_through_an_outage(
        self,
        sessions: sessionmaker[Session],
        source: SalesforceSource,
        salesforce_emulator: SalesforceEmulator,
    ) -> None:
        clock = Clock()
        salesforce_emulator.inject("503")
        fresh = gate(sessions, source, clock)
        problem = fresh.problem()
        assert problem is not None and "cannot be checked yet" in problem
        clock.advance(timedelta(seconds=10))
        assert fresh.problem() is None
        salesforce_emulator.inject("503")
        clock.advance(minutes=1)
        assert fresh.problem() is None
