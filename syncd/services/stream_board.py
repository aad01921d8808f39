"""What this process knows of each stream, for ``/readyz`` and the logs (no I/O)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from syncd.adapters.orm import utcnow
from syncd.config.models import SyncConfig

#: Not ready when the leader's stream has been down this long.
DISCONNECTED_ALLOWED = timedelta(minutes=2)
#: A running stream stores a replay id at least every keepalive (270 s): one that stored
#: none for this long is not advancing (stuck, or disconnected).
STORED_WITHIN = timedelta(minutes=10)


def stored_state(updated_at: datetime | None, led_since: datetime | None, now: datetime) -> str:
    """A stream's state as the database shows it (``syncd status``, no live connection).

    ``advancing``: a replica leads the sync (``led_since``: when it took it) and a
    replay id was stored within :data:`STORED_WITHIN`; ``stalled``: it leads the
    sync and stored none for longer (connected but stuck, or disconnected: the
    daemon's ``syncd_stream_stalled`` and ``/readyz`` tell which); ``not running``:
    no replica leads the sync.
    """
    if led_since is None:
        return "not running"
    last = max(updated_at, led_since) if updated_at is not None else led_since
    return "advancing" if now - last <= STORED_WITHIN else "stalled"


@dataclass
class StreamStatus:
    """What ``/readyz``, the metrics and the logs know of one sync's stream."""

    sync: str
    running: bool = False
    connected: bool = False
    since: datetime | None = None
    last_event_at: datetime | None = None
    replay_lag_seconds: float | None = None
    reconnects: int = 0
    gaps: int = 0
    replay_resets: int = 0
    last_error: str | None = None
    #: Why the stream is not advancing although it runs (None: it advances).
    stalled: str | None = None
    #: Events (or the part of one) let go because they named no usable record.
    dropped: int = 0
    #: Reconciliation polls the stream ran (LATEST starts, wildcards, GAP_OVERFLOW).
    reconciles: int = 0


class StreamBoard:
    """Thread-safe :class:`StreamStatus` of every streamed sync of this process."""

    def __init__(self, syncs: Sequence[SyncConfig], now: Callable[[], datetime] = utcnow) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._status = {sync.name: StreamStatus(sync.name) for sync in syncs if sync.streamed}

    def update(self, sync: str, **values: Any) -> None:
        with self._lock:
            status = self._status.setdefault(sync, StreamStatus(sync))
            for name, value in values.items():
                setattr(status, name, value)

    def bump(self, sync: str, name: str) -> None:
        with self._lock:
            status = self._status.setdefault(sync, StreamStatus(sync))
            setattr(status, name, getattr(status, name) + 1)

    def snapshot(self) -> dict[str, StreamStatus]:
        with self._lock:
            return {name: StreamStatus(**vars(status)) for name, status in self._status.items()}

    def details(self) -> dict[str, dict[str, Any]]:
        """What ``/readyz`` shows of each stream (ages in seconds, rounded)."""
        now = self._now()

        def age(at: datetime | None) -> float | None:
            return None if at is None else round((now - at).total_seconds(), 3)

        return {
            name: {
                "running": status.running,
                "connected": status.connected,
                "last_event_age_seconds": age(status.last_event_at),
                "replay_lag_seconds": (
                    None
                    if status.replay_lag_seconds is None
                    else round(status.replay_lag_seconds, 3)
                ),
                "reconnects": status.reconnects,
                "gaps": status.gaps,
                "replay_resets": status.replay_resets,
                "last_error": status.last_error,
                "stalled": status.stalled is not None,
                "stalled_reason": status.stalled,
                "dropped": status.dropped,
                "reconciles": status.reconciles,
            }
            for name, status in self.snapshot().items()
        }

    def problems(self) -> dict[str, str | None]:
        """Each streamed sync, with why it is unhealthy (None: healthy, or led elsewhere).

        Unhealthy: the stream runs here (this replica leads the sync) and has been
        disconnected for more than :data:`DISCONNECTED_ALLOWED`.
        """
        now = self._now()
        found: dict[str, str | None] = {}
        for name, status in self.snapshot().items():
            found[name] = None
            if not status.running or status.connected or status.since is None:
                continue
            down = now - status.since
            if down > DISCONNECTED_ALLOWED:
                why = f" ({status.last_error})" if status.last_error else ""
                found[name] = f"stream disconnected for {int(down.total_seconds())}s{why}"
        return found
