"""Is a stream advancing? A connected stream can still be stuck, and must show it.

Events and keepalives may keep arriving while the replay id stays where it is:
the same batch fails on every attempt (a record Salesforce will not read, a
database refusing the write), or one step takes far too long. Reconnects do not
help (they resume before the stuck batch), ``/readyz``'s connection check says
all is well, and records wait for the reconciliation poll. :class:`StallWatch`
turns that into a state the metrics, ``/readyz`` and the logs can show.

Stalled means either shape:

* something arrived that must end in a stored replay id (events, a keepalive),
  and no replay id was stored for ``after`` seconds since;
* the batch being handled failed ``failures`` times in a row.

Thread-safe; no I/O (the clock is injected for tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Seconds a received event or keepalive may wait for its replay id to be stored.
STALL_AFTER = 300.0
#: Failed attempts of one batch in a row that make a stream stalled at once.
STALL_FAILURES = 5


class StallWatch:
    """The stall state of one stream; see the module docstring."""

    def __init__(
        self,
        after: float = STALL_AFTER,
        failures: int = STALL_FAILURES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after = after
        self.max_failures = failures
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting_since: float | None = None
        self._failures = 0

    def received(self) -> None:
        """Events or a keepalive arrived: their replay id is now owed."""
        with self._lock:
            if self._waiting_since is None:
                self._waiting_since = self._clock()

    def progressed(self, outstanding: bool) -> None:
        """A replay id was stored (or a step finished); ``outstanding``: more is waiting."""
        with self._lock:
            self._failures = 0
            self._waiting_since = self._clock() if outstanding else None

    def failed(self) -> None:
        """The batch being handled failed once more."""
        with self._lock:
            self._failures += 1

    def reset(self) -> None:
        """The intake stopped: nothing is owed any more."""
        with self._lock:
            self._failures = 0
            self._waiting_since = None

    def reason(self) -> str | None:
        """Why the stream is stalled, or None while it advances (or has nothing to do)."""
        with self._lock:
            if self._failures >= self.max_failures:
                return f"the same batch failed {self._failures} times in a row"
            if self._waiting_since is not None:
                waited = self._clock() - self._waiting_since
                if waited > self.after:
                    return f"no replay id stored for {int(waited)}s while events arrive"
            return None
