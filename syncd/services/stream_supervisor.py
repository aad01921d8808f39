"""Each streamed sync's intake in its own thread, only on the replica that leads the sync.

The supervisor owns the intakes' subscriptions: an intake that ends, however
(``stop``, lost leadership, an error), has its subscriber stopped and gone
before the next intake of that sync subscribes, so a sync never has two
streams open.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from syncd.config.models import SyncConfig
from syncd.logs import get_logger
from syncd.services.stream_batch import export_stream_metrics

if TYPE_CHECKING:
    from syncd.services.stream import StreamIntake

log = get_logger(__name__)

#: Wait before a failed intake is started again.
RESTART_DELAY = 5.0


class StreamSupervisor:
    """Runs each streamed sync's intake in its own thread, only while this replica leads it."""

    def __init__(
        self,
        syncs: Sequence[SyncConfig],
        make_intake: Callable[[SyncConfig], StreamIntake],
        stop: threading.Event,
        *,
        leading: Callable[[str], bool] | None = None,
        bound_stop: Callable[[str, threading.Event], threading.Event] | None = None,
        restart_delay: float = RESTART_DELAY,
    ) -> None:
        self.syncs = [sync for sync in syncs if sync.enabled and sync.streamed]
        self.make_intake = make_intake
        self.stop = stop
        self.leading = leading
        self.bound_stop = bound_stop
        self.restart_delay = restart_delay
        self._threads: list[threading.Thread] = []
        for sync in self.syncs:
            export_stream_metrics(sync.name)

    def start(self) -> None:
        for sync in self.syncs:
            thread = threading.Thread(
                target=self._loop, args=(sync,), name=f"stream-{sync.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _loop(self, sync: SyncConfig) -> None:
        while not self.stop.is_set():
            if self.leading is not None and not self.leading(sync.name):
                self.stop.wait(0.5)
                continue
            stop = self.bound_stop(sync.name, self.stop) if self.bound_stop else self.stop
            intake: StreamIntake | None = None
            try:
                intake = self.make_intake(sync)
                intake.run(stop)
            except Exception:  # a broken intake is retried, never the end of the daemon
                log.exception("stream intake failed", sync=sync.name)
                self.stop.wait(self.restart_delay)
            finally:
                if intake is not None:
                    intake.wait_subscriber(self.stop)

    def join(self, timeout: float) -> list[str]:
        """Wait for the intakes to stop (``stop`` must be set); the names still running."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread.name for thread in self._threads if thread.is_alive()]
