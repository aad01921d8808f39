"""``syncd pause`` honoured by every replica on PostgreSQL, across a leader's death."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, run_syncd, wait_until
from tests.e2e.test_replicas import WAIT, Cluster


@pytest.fixture
def cluster(tmp_path: Path, simz_emulator: SimzEmulator, postgres_url: str) -> Iterator[Cluster]:
    with Harness(tmp_path, simz_emulator) as harness:
        cluster = Cluster(harness, postgres_url)
        try:
            yield cluster
        finally:
            cluster.close()


def syncd(config: Path, *args: str) -> str:
    result = run_syncd(*args, cwd=config.parent, config=config, user="opuser")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def polls(cluster: Cluster) -> int:
    return int(cluster.sql("SELECT COUNT(*) FROM poll_runs WHERE status = 'ok'")[0][0])


def test_pause_survives_a_takeover_and_resume_sends_each_once(cluster: Cluster) -> None:
    """Paused: neither the leader nor its heir sends; resumed: every lead goes once."""
    simz = cluster.h.simz
    config = cluster.config("replicas.yaml")
    cluster.start(config)
    cluster.start(config)
    leader = wait_until(cluster.leader, "a leader", WAIT)
    syncd(config, "pause", "--sync", "web", "--reason", "vendor maintenance")

    cluster.add(120)
    wait_until(lambda: len(cluster.states()) == 120, "120 leads polled", WAIT)
    cluster.replicas[leader].process.send_signal(signal.SIGKILL)
    cluster.replicas[leader].process.wait(30)
    wait_until(
        lambda: (heir := cluster.leader()) is not None and heir != leader, "a new leader", WAIT
    )
    start = polls(cluster)
    wait_until(lambda: polls(cluster) >= start + 3, "three polls by the new leader", WAIT)
    assert simz.received() == []
    assert set(cluster.states().values()) == {"queued"}

    syncd(config, "resume", "--sync", "web")
    cluster.wait_settled()
    cluster.check_never_twice(simz)
    assert set(cluster.states().values()) == {"accepted"}
    assert len(simz.received_counts()) == 120
