"""Two ``syncd run`` replicas on PostgreSQL streaming one sync: the stream survives a SIGKILL.

The configuration leaves the lease to its defaults, so the lease is derived
from ``source.failover_within`` (30s). The leader is SIGKILLed, and a record is
created in Salesforce right after; it is back-dated, so no poll can read it
and only the heir's stream brings it. The assertion is that it reaches SimZ
(within a generous deadline); how long it took is printed and recorded as the
test's ``failover_seconds`` property. That the derived lease keeps the
documented bound is proved without timing in
``tests/unit/test_stream_failover_lease.py``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from syncd.config import load_config
from syncd.sandbox.simz import SimzEmulator
from syncd.services.leadership import lease_ttl, stream_failover_bound
from tests.e2e.harness import Daemon, Harness, lead_records, wait_until

BACK_DATED = "2021-06-01T00:00:00Z"
#: The documented bound (docs/streaming.md): the heir's stream within 30s of the kill.
FAILOVER = timedelta(seconds=30)
#: How long the test waits for the record; generous, so that a loaded machine is no failure.
DEADLINE = 45.0


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator, postgres_url: str) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        h.write_config(
            database={"url": postgres_url},
            sync={
                "source": {"mode": "stream", "reconcile_every": "1h"},
                "lookback": "1m",
                "start_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
            },
            daemon={"shutdown_grace": "10s"},
        )
        yield h


def holder(engine: Engine) -> str | None:
    """The replica holding an unexpired lease of the sync, by the database's clock."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT holder FROM leases "
                "WHERE name = 'sync:web' AND expires_at > clock_timestamp()"
            )
        ).first()
    return None if row is None else str(row[0])


def sent_once(harness: Harness, ids: list[str]) -> Callable[[], bool]:
    return lambda: all(harness.simz.received_counts().get(i) == 1 for i in ids)


def back_dated(start: int) -> list[dict[str, Any]]:
    return lead_records(1, start=start, SystemModstamp=BACK_DATED)


class TestStreamFailover:
    def test_heir_streams_within_the_bound_after_sigkill(
        self, harness: Harness, postgres_url: str, record_property: Callable[[str, Any], None]
    ) -> None:
        """SIGKILL the stream's leader, create a record: the other replica sends it."""
        config = load_config(harness.config_path)
        ttl = lease_ttl(config.daemon, config.syncs[0])
        assert stream_failover_bound(ttl) <= FAILOVER, ttl
        engine = create_engine(postgres_url)
        try:
            leader = harness.start()
            leader.wait_log("stream connected")
            # One event through the stream, so that a replay id is stored to resume after.
            first = harness.salesforce.add_records(back_dated(0))
            wait_until(sent_once(harness, first), "the first streamed lead")
            follower = harness.start()
            follower.wait_log("sync led by another replica")
            assert holder(engine) == leader.started["replica"]

            leader.stop(signal.SIGKILL)
            killed = time.monotonic()
            after = harness.salesforce.add_records(back_dated(1))
            wait_until(sent_once(harness, after), "the heir to send the new record", DEADLINE)
            took = time.monotonic() - killed
            record_property("failover_seconds", round(took, 1))
            print(f"stream failover: record sent {took:.1f}s after the SIGKILL (lease {ttl})")

            assert holder(engine) == follower.started["replica"]
            heir_logs(follower)
            resumed_after_replay_id(harness)
            counts = harness.simz.received_counts()
            assert set(counts.values()) == {1}, counts
            assert follower.stop() == 0, follower.output()
        finally:
            engine.dispose()


def heir_logs(follower: Daemon) -> None:
    """The heir took the lease over and resumed after the stored replay id."""
    acquired = follower.find("sync lease acquired", sync="web")
    assert acquired is not None and acquired["previous_holder"] is not None, follower.output()
    assert follower.find("stream connected") is not None, follower.output()


def resumed_after_replay_id(harness: Harness) -> None:
    """The heir's subscribe named the replay id the dead leader stored (CUSTOM)."""
    last = harness.salesforce.subscribe_log()[-1]
    assert (last["preset"], last["outcome"]) == ("CUSTOM", "subscribed"), last
