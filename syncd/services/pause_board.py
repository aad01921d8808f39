"""This process's view of the delivery pauses: it drives ``syncd_paused`` and the
``delivery paused`` / ``delivery resumed`` log lines.

A pause is *open* from the answer that opened it until a success clears it or
a delivery cycle gets past it without renewing it. The time between its end
and the retry that renews it (a 401 that is still a 401) is not a gap: the
gauge stays 1 across a renewal, so a Prometheus ``for:`` alert is not reset
by the backoff itself. Reading the pauses table on a timer instead would see
0 in that gap.

One board per database (per session factory), shared by every delivery cycle
and the metrics refresh of the process.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from syncd.domain.outcome import SCOPE_AGENT, SCOPE_API_KEY, agent_pause_key
from syncd.metrics import PAUSED

#: (scope, key) of a delivery pause.
PauseKey = tuple[str, str]


@dataclass
class _Entry:
    until: datetime
    #: Whether ``delivery paused`` was logged for it by this process.
    announced: bool


class PauseBoard:
    """Open delivery pauses known to this process. Thread-safe."""

    def __init__(self) -> None:
        self._open: dict[PauseKey, _Entry] = {}
        self._lock = threading.Lock()

    def open(self, scope: str, key: str, until: datetime, *, announce: bool = True) -> bool:
        """A pause opened or renewed (gauge 1); True if it must be announced now."""
        with self._lock:
            entry = self._open.get((scope, key))
            if entry is None:
                entry = self._open[(scope, key)] = _Entry(until, announced=False)
            entry.until = until
            fresh = announce and not entry.announced
            entry.announced = entry.announced or announce
        PAUSED.labels(scope, key).set(1)
        return fresh

    def close(self, keys: Iterable[PauseKey]) -> list[PauseKey]:
        """These pauses ended (gauge 0); returns those that were open."""
        closed = []
        with self._lock:
            for pause in keys:
                if self._open.pop(pause, None) is not None:
                    closed.append(pause)
        for scope, key in closed:
            PAUSED.labels(scope, key).set(0)
        return closed

    def lifted(self, credential: str, agent_id: str) -> list[PauseKey]:
        """A success for ``agent_id`` under ``credential`` ended its pauses."""
        return self.close(
            [(SCOPE_API_KEY, credential), (SCOPE_AGENT, agent_pause_key(credential, agent_id))]
        )

    def expired(self, keys: Iterable[PauseKey], now: datetime) -> list[PauseKey]:
        """Of ``keys``, close those whose end has passed without a renewal."""
        with self._lock:
            due = [k for k in keys if k in self._open and self._open[k].until <= now]
        return self.close(due)

    def keys(self) -> list[PauseKey]:
        with self._lock:
            return list(self._open)

    def reconcile(self, stored: Iterable[tuple[str, str, datetime]], now: datetime) -> None:
        """Align with the pauses table: adopt running pauses, forget deleted ones.

        A pause still stored but past its end stays as it is: the next delivery
        cycle either renews it or gets past it.
        """
        rows = {(scope, key): until for scope, key, until in stored}
        for (scope, key), until in rows.items():
            if until > now:
                self.open(scope, key, until, announce=False)
        self.close([k for k in self.keys() if k not in rows])


_BOARDS: weakref.WeakKeyDictionary[sessionmaker[Session], PauseBoard] = weakref.WeakKeyDictionary()
_BOARDS_LOCK = threading.Lock()


def board_for(session_factory: sessionmaker[Session]) -> PauseBoard:
    """The board of the database behind ``session_factory`` (made on first use)."""
    with _BOARDS_LOCK:
        board = _BOARDS.get(session_factory)
        if board is None:
            board = _BOARDS[session_factory] = PauseBoard()
        return board
