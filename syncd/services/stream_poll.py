"""The stream's ways into the poll's page work: records read by Id, and a reconciliation poll.

Change events name records; the stream reads them by Id and runs them through
the same mapping, rules and outbox writes as a page of a poll
(:func:`apply_records`), and recovers the events it could not replay with a
poll of the missed cursor range (:func:`poll_range`). Neither moves the poll
watermark: it stays where polls left it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters.orm import utcnow
from syncd.config.models import SyncConfig
from syncd.domain.window import PollWindow
from syncd.services.poll import Poller, PollMode, PollResult, RecordSource


def apply_records(
    session_factory: sessionmaker[Session],
    sync: SyncConfig,
    records: list[dict[str, Any]],
    *,
    now: Callable[[], datetime] = utcnow,
    read_at: datetime | None = None,
) -> PollResult:
    """Run records read outside a poll (the stream's reads) through a poll's page work.

    ``read_at``: when syncd learned of the records (their change events arrived),
    the new leads' read moment (speed to lead); when the page is written if None.

    The same mapping, rules and outbox writes as one page of a poll, in one
    transaction; the poll watermark stays where polls left it. The blast-radius
    guard counts over a rolling ``guard.stream_window`` (:meth:`Poller.limit_window`).
    Raises what the page raises (database errors) for the caller to retry.
    """
    mode = PollMode(
        actor="stream", advances_watermark=False, stream_window=sync.guard.stream_window
    )
    poller = Poller(
        session_factory, _NO_SOURCE, sync, now, False, None, 100, timedelta(minutes=15), mode
    )
    at = now()
    poller.page_at = read_at
    poller.apply(records, PollWindow(at, at))
    return poller.result


def poll_range(
    session_factory: sessionmaker[Session],
    source: RecordSource,
    sync: SyncConfig,
    start: datetime,
    end: datetime,
    *,
    now: Callable[[], datetime] = utcnow,
    stop: threading.Event | None = None,
    max_api_usage_percent: int = 80,
    limit_pause: timedelta = timedelta(minutes=15),
) -> PollResult:
    """A reconciliation poll of the cursor range ``[start, end)``; the watermark stays.

    Like :func:`~syncd.services.poll.poll_sync` (a poll_runs row, pauses, never
    raises), but over a given window: the stream uses it to recover the events
    it could not replay.
    """
    started = time.monotonic()
    mode = PollMode(advances_watermark=False, window=PollWindow(start, max(start, end)))
    poller = Poller(
        session_factory,
        source,
        sync,
        now,
        False,
        stop,
        max_api_usage_percent,
        limit_pause,
        mode,
    )
    result = poller.run()
    result.duration_seconds = time.monotonic() - started
    return result


class _NoSource:
    """The source of :func:`apply_records`: records arrive already read."""

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        return iter(())

    def api_usage(self) -> tuple[int, int] | None:
        return None


_NO_SOURCE = _NoSource()
