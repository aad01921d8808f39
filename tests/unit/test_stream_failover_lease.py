"""A streamed sync's lease comes from ``source.failover_within``, not from its poll schedule."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from syncd.config.models import DaemonConfig, SyncConfig
from syncd.services.leadership import (
    lease_ttl,
    stream_failover_bound,
    stream_lease_ttl,
    takeover_bound,
)

#: The bound docs/streaming.md promises for the default: a new leader's stream within 30s.
DOCUMENTED_FAILOVER = timedelta(seconds=30)


def sync(every: str = "60s", **source: Any) -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": "web",
            "agent": "agt_1",
            "schedule": {"every": every},
            "mapping": {"phoneNumber": "Phone"},
            "source": {"mode": "stream", **source},
        }
    )


def daemon(**values: Any) -> DaemonConfig:
    return DaemonConfig.model_validate(values)


class TestDerivation:
    def test_default_lease_fits_the_documented_bound(self) -> None:
        """Defaults: the heir's stream is open within 30s of the leader's death (20s lease)."""
        streamed = sync()
        assert streamed.source.failover_within == DOCUMENTED_FAILOVER
        ttl = lease_ttl(DaemonConfig(), streamed)
        assert ttl == timedelta(seconds=20)
        assert stream_failover_bound(ttl) <= DOCUMENTED_FAILOVER

    def test_not_from_the_schedule(self) -> None:
        """The schedule (60s: a 150s takeover for a poll) plays no part in stream mode."""
        assert lease_ttl(DaemonConfig(), sync(every="60s")) == timedelta(seconds=20)
        assert lease_ttl(DaemonConfig(), sync(every="1h")) == timedelta(seconds=20)
        assert takeover_bound(timedelta(minutes=2)) == timedelta(seconds=150)

    @pytest.mark.parametrize("within", ["10s", "30s", "45s", "2m", "10m"])
    def test_every_setting_is_kept(self, within: str) -> None:
        """Whatever failover_within says, the derived lease honours it exactly or better."""
        streamed = sync(failover_within=within)
        ttl = lease_ttl(DaemonConfig(), streamed)
        assert stream_failover_bound(ttl) <= streamed.source.failover_within
        assert ttl >= timedelta(seconds=4)

    def test_lease_ttl_only_shortens_a_stream_lease(self) -> None:
        """daemon.lease_ttl wins when shorter; a longer one cannot break the stream's bound."""
        assert lease_ttl(daemon(lease_ttl="4s"), sync()) == timedelta(seconds=4)
        assert lease_ttl(daemon(lease_ttl="2m"), sync()) == timedelta(seconds=20)

    def test_poll_sync_unchanged(self) -> None:
        """A polled sync keeps two poll intervals (at least 10s) or daemon.lease_ttl."""
        polled = SyncConfig.model_validate(
            {
                "name": "web",
                "agent": "agt_1",
                "schedule": {"every": "60s"},
                "mapping": {"phoneNumber": "Phone"},
            }
        )
        assert lease_ttl(DaemonConfig(), polled) == timedelta(minutes=2)
        assert lease_ttl(daemon(lease_ttl="4s"), polled) == timedelta(seconds=4)

    def test_formula(self) -> None:
        """ttl = (failover_within - 5s) / 1.25."""
        assert stream_lease_ttl(timedelta(seconds=10)) == timedelta(seconds=4)
        assert stream_lease_ttl(timedelta(seconds=55)) == timedelta(seconds=40)
        assert stream_failover_bound(timedelta(seconds=40)) == timedelta(seconds=55)


class TestSetting:
    def test_at_least_ten_seconds(self) -> None:
        """Under 10s the lease would be renewed more than once a second: refused."""
        with pytest.raises(ValidationError, match="at least 10s"):
            sync(failover_within="9s")

    def test_read_as_a_duration(self) -> None:
        assert sync(failover_within="1m").source.failover_within == timedelta(minutes=1)
