"""Sync leases on both backends: acquire, renew, expiry, takeover with recovery, fencing.

Time is controlled by the lease's own arithmetic: a lease with a tiny or zero
ttl is expired at once, so no test sleeps for a lease to run out.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import leases, outbox
from syncd.adapters.db import make_session_factory
from syncd.adapters.leases import AnotherReplicaRunning, SqliteRunLock
from syncd.adapters.orm import Batch, Lead, LeadTransition, Lease, Replica, utcnow
from syncd.config.models import DaemonConfig, SyncConfig
from syncd.metrics import LEASE_TAKEOVERS, REGISTRY
from syncd.services.leadership import (
    Leadership,
    LeaseBoundStop,
    lease_ttl,
    takeover_bound,
)

TTL = timedelta(seconds=30)
EXPIRED = timedelta(seconds=-1)


def sync_config(name: str = "web", every: str = "1s") -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": name,
            "agent": "agt_1",
            "schedule": {"every": every},
            "mapping": {"phoneNumber": "Phone"},
        }
    )


def add_sending(sessions: sessionmaker[Session], sync: str, count: int, worker: str) -> int:
    """``count`` leads claimed into one open batch of ``sync`` (as a crashed claim leaves)."""
    now = utcnow()
    with sessions.begin() as session:
        session.add_all(
            Lead(
                sync_name=sync,
                salesforce_id=f"00Q{sync[:3]}{n:012d}"[:18],
                agent_id="agt_1",
                state="queued",
                payload={"phoneNumber": "+14155550100"},
                record_cursor=now,
                record_hash="x",
            )
            for n in range(count)
        )
    with sessions.begin() as session:
        claim = outbox.claim(
            session,
            sync_name=sync,
            agent_id="agt_1",
            credential="abc",
            limit=count,
            now=now,
            worker=worker,
        )
        assert claim is not None
        return claim.batch_id


def states(sessions: sessionmaker[Session], sync: str) -> dict[str, int]:
    with sessions.begin() as session:
        rows = session.execute(
            select(Lead.state, func.count()).where(Lead.sync_name == sync).group_by(Lead.state)
        )
        return {state: n for state, n in rows}


class TestLeaseRows:
    def test_first_acquire_then_others_refused(self, engine: Engine) -> None:
        """The first replica gets token 1; a second one is refused while it is unexpired."""
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            grant = leases.acquire(session, "sync:web", "a", TTL)
        assert grant is not None and grant.new and grant.lease.token == 1
        with sessions.begin() as session:
            assert leases.acquire(session, "sync:web", "b", TTL) is None

    def test_renew_keeps_token_and_moves_expiry(self, engine: Engine) -> None:
        """A renewal with the holder's token keeps the token and extends the expiry."""
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            first = leases.acquire(session, "sync:web", "a", TTL)
        assert first is not None
        with sessions.begin() as session:
            again = leases.acquire(session, "sync:web", "a", TTL * 2, token=first.lease.token)
        assert again is not None and not again.new
        assert again.lease.token == first.lease.token
        assert again.lease.expires_at > first.lease.expires_at

    def test_expired_lease_is_taken_over_with_a_new_token(self, engine: Engine) -> None:
        """Once expired, another replica takes the lease and the fencing token grows."""
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            leases.acquire(session, "sync:web", "a", EXPIRED)
        with sessions.begin() as session:
            grant = leases.acquire(session, "sync:web", "b", TTL)
        assert grant is not None and grant.new
        assert (grant.lease.holder, grant.lease.token, grant.previous_holder) == ("b", 2, "a")

    def test_old_holder_cannot_renew_or_pass_the_fence(self, engine: Engine) -> None:
        """After a takeover the old holder's renewal and its claim check both fail."""
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            old = leases.acquire(session, "sync:web", "a", EXPIRED)
        assert old is not None
        with sessions.begin() as session:
            assert leases.acquire(session, "sync:web", "b", TTL) is not None
        with sessions.begin() as session:
            assert leases.acquire(session, "sync:web", "a", TTL, token=old.lease.token) is None
            assert not leases.holds(session, "sync:web", "a", old.lease.token)
            assert leases.holds(session, "sync:web", "b", old.lease.token + 1)

    def test_expired_lease_fails_the_fence_even_for_its_holder(self, engine: Engine) -> None:
        """A holder whose lease expired (by the database's clock) may not claim."""
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            grant = leases.acquire(session, "sync:web", "a", EXPIRED)
        assert grant is not None
        with sessions.begin() as session:
            assert not leases.holds(session, "sync:web", "a", grant.lease.token)

    def test_release_lets_another_take_over_at_once(self, engine: Engine) -> None:
        """A clean stop releases the lease: the next replica needs no expiry wait."""
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            grant = leases.acquire(session, "sync:web", "a", TTL)
        assert grant is not None
        with sessions.begin() as session:
            assert leases.release(session, "sync:web", "a", grant.lease.token)
        with sessions.begin() as session:
            assert leases.acquire(session, "sync:web", "b", TTL) is not None


class TestLeadership:
    def test_one_leader_among_replicas(self, engine: Engine) -> None:
        """Of three replicas, exactly one leads the sync; the others are followers."""
        sessions = make_session_factory(engine)
        daemon = DaemonConfig(lease_ttl=TTL)
        replicas = [
            Leadership(sessions, [sync_config()], daemon, replica=f"r{n}") for n in range(3)
        ]
        for replica in replicas:
            replica.tick()
        assert [r.is_leader("web") for r in replicas] == [True, False, False]

    def test_takeover_recovers_only_that_syncs_in_flight_leads(self, engine: Engine) -> None:
        """A takeover turns the dead holder's sending leads of that sync into uncertain,
        closes its batch as interrupted, and leaves another sync's in-flight batch alone."""
        sessions = make_session_factory(engine)
        dead = Leadership(
            sessions, [sync_config()], DaemonConfig(lease_ttl=timedelta(seconds=2)), replica="dead"
        )
        dead.tick()
        batch = add_sending(sessions, "web", 3, "dead")
        add_sending(sessions, "other", 2, "live")
        with sessions.begin() as session:  # the dead replica's lease runs out
            session.execute(update(Lease).values(expires_at=utcnow() - timedelta(seconds=1)))
        before = REGISTRY.get_sample_value("syncd_lease_takeovers_total", {"sync": "web"}) or 0
        heir = Leadership(sessions, [sync_config()], DaemonConfig(lease_ttl=TTL), replica="heir")
        heir.tick()
        assert heir.is_leader("web")
        assert states(sessions, "web") == {"uncertain": 3}
        assert states(sessions, "other") == {"sending": 2}
        with sessions.begin() as session:
            assert session.get(Batch, batch).outcome == "interrupted"  # type: ignore[union-attr]
            reasons = set(session.scalars(select(LeadTransition.reason)))
        assert any("lease taken over" in reason for reason in reasons)
        assert LEASE_TAKEOVERS.labels("web")._value.get() == before + 1

    def test_live_holders_batch_is_never_recovered(self, engine: Engine) -> None:
        """While the holder keeps renewing, other replicas' rounds leave its sending leads."""
        sessions = make_session_factory(engine)
        daemon = DaemonConfig(lease_ttl=TTL)
        holder = Leadership(sessions, [sync_config()], daemon, replica="holder")
        follower = Leadership(sessions, [sync_config()], daemon, replica="follower")
        holder.tick()
        add_sending(sessions, "web", 4, "holder")
        for _ in range(3):
            follower.tick()
            holder.tick()
        assert states(sessions, "web") == {"sending": 4}
        assert holder.is_leader("web") and not follower.is_leader("web")

    def test_local_deadline_stops_work_without_the_database(self, engine: Engine) -> None:
        """Past ttl/2 after its last renewal a holder stops leading, by its own clock only."""
        sessions = make_session_factory(engine)
        clock = [1000.0]
        leader = Leadership(
            sessions,
            [sync_config()],
            DaemonConfig(lease_ttl=TTL),
            replica="a",
            monotonic=lambda: clock[0],
        )
        leader.tick()
        stop = leader.stop_event("web", threading.Event())
        assert leader.is_leader("web") and not stop.is_set()
        clock[0] += TTL.total_seconds() / 2 + 0.01
        assert not leader.is_leader("web") and stop.is_set()
        with sessions.begin() as session:
            assert not leader.fence("web")(session)
        leader.tick()  # the row is still ours: renewed with the same token
        assert leader.is_leader("web")

    def test_database_failure_stops_leading_at_once(self, engine: Engine) -> None:
        """A renewal that fails (database unreachable) ends leadership in that very round,
        and the next good round renews the same lease."""
        sessions = make_session_factory(engine)
        leader = Leadership(sessions, [sync_config()], DaemonConfig(lease_ttl=TTL), replica="a")
        leader.tick()
        assert leader.is_leader("web")
        broken = make_session_factory(create_engine("sqlite:////nonexistent/dir/x.db"))
        leader.sessions = broken
        leader.tick()
        assert not leader.is_leader("web")
        leader.sessions = sessions
        leader.tick()
        assert leader.is_leader("web")

    def test_close_releases_and_forgets_the_replica(self, engine: Engine) -> None:
        """A clean close releases the leases (another replica leads next round) and
        removes the replica's heartbeat row."""
        sessions = make_session_factory(engine)
        daemon = DaemonConfig(lease_ttl=TTL)
        first = Leadership(sessions, [sync_config()], daemon, replica="first")
        second = Leadership(sessions, [sync_config()], daemon, replica="second")
        first.tick()
        second.tick()
        first.close()
        second.tick()
        assert second.is_leader("web")
        with sessions.begin() as session:
            assert set(session.scalars(select(Replica.id))) == {"second"}

    def test_orphaned_sync_is_recovered_under_its_lease(self, engine: Engine) -> None:
        """Sending leads of a sync no replica runs any more become uncertain at start-up."""
        sessions = make_session_factory(engine)
        add_sending(sessions, "gone", 2, "old")
        leader = Leadership(sessions, [sync_config()], DaemonConfig(lease_ttl=TTL), replica="a")
        assert leader.recover_orphans() == 2
        assert states(sessions, "gone") == {"uncertain": 2}


class TestTimings:
    def test_default_ttl_is_two_poll_intervals_at_least_ten_seconds(self) -> None:
        """Without daemon.lease_ttl the lease lasts two poll intervals, never under 10s."""
        assert lease_ttl(DaemonConfig(), sync_config(every="1m")) == timedelta(minutes=2)
        assert lease_ttl(DaemonConfig(), sync_config(every="1s")) == timedelta(seconds=10)
        fixed = DaemonConfig.model_validate({"lease_ttl": "4s"})
        assert lease_ttl(fixed, sync_config()) == timedelta(seconds=4)

    def test_takeover_bound_is_ttl_plus_one_round(self) -> None:
        """The documented takeover bound: ttl plus the renewal period (ttl/4)."""
        assert takeover_bound(timedelta(seconds=8)) == timedelta(seconds=10)

    def test_lease_bound_stop_follows_both_signals(self) -> None:
        """The jobs' stop event is set by the daemon's stop and by losing the lease."""
        leading = [True]
        stop = threading.Event()
        event = LeaseBoundStop(stop, lambda: leading[0])
        assert not event.is_set() and not event.wait(0.01)
        leading[0] = False
        assert event.is_set() and event.wait(0.01)
        leading[0] = True
        stop.set()
        assert event.is_set()


class TestSqliteLock:
    def test_second_run_on_one_file_is_refused(self, tmp_path: Path) -> None:
        """A second holder of the SQLite run lock gets one clear sentence, not a traceback."""
        url = f"sqlite:///{tmp_path}/syncd.db"
        first = SqliteRunLock.for_url(url)
        second = SqliteRunLock.for_url(url)
        assert first is not None and second is not None
        first.acquire()
        try:
            with pytest.raises(AnotherReplicaRunning, match="SQLite supports one replica"):
                second.acquire()
        finally:
            first.release()
        second.acquire()  # free again once the first let go
        second.release()

    def test_postgres_needs_no_file_lock(self) -> None:
        """PostgreSQL URLs get no file lock: several replicas are allowed there."""
        assert SqliteRunLock.for_url("postgresql+psycopg://u@127.0.0.1/db") is None


class TestStatus:
    def test_status_names_the_leader_and_replicas(self, engine: Engine) -> None:
        """syncd status reports which replica leads each sync, its lease, and the replicas."""
        from syncd.config import Config
        from syncd.services import operator as ops

        sessions = make_session_factory(engine)
        leader = Leadership(sessions, [sync_config()], DaemonConfig(lease_ttl=TTL), replica="r1")
        leader.tick()
        config = Config.model_validate(
            {
                "salesforce": {
                    "auth": {"method": "password", "username": "u", "password": "p"},
                },
                "simz": {"api_key": "k"},
                "syncs": [sync_config().model_dump(mode="json", exclude_none=True)],
            }
        )
        report = ops.status(sessions, config)
        web = report.syncs[0]
        assert web.leader is not None
        assert (web.leader.replica, web.leader.token, web.leader.active) == ("r1", 1, True)
        assert [(r.replica, r.alive) for r in report.replicas] == [("r1", True)]
