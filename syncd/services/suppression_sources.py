"""Suppression sources: Salesforce queries whose records' numbers go on the suppression list.

A source (``suppression.sources``, e.g. the Contacts with ``DoNotCall = true``)
is read by ``syncd run`` every ``every`` and by ``syncd once`` before its polls
(docs/safety.md#suppression-sources):

* **under a lease** ``suppression:<name>`` (:mod:`syncd.adapters.leases`), so
  one replica reads it at a time; the holder renews it at each read, another
  replica takes it over once it expired (two periods, at least 10 s). A read
  that outlasts its lease and overlaps another's is harmless: an addition
  never overwrites, and the cursor only moves forward;
* **incrementally**, by ``SystemModstamp``: the cursor is a ``sync_state`` row
  named ``suppression:<name>`` (the largest stamp read, as a poll's
  watermark), each read covering from a minute behind it to 15 s ago. The
  first read (no cursor yet) reads every matching record since 2000. Changing
  a source's ``where`` or fields does not read the older records again: give
  it a new name for that;
* **page by page**, each page in one transaction: the numbers' locks, then
  the additions (source ``query``, ``seen_at`` = the record's SystemModstamp),
  then the cursor.

A record that stops matching (DoNotCall unticked) does not take its number off
the list: only an operator does (``syncd suppress remove``). Each addition's
lag is measured (:mod:`syncd.services.suppression_lag`) unless its record
changed before the source's first read (history).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import leases, poll_store, suppression_store
from syncd.adapters.orm import utcnow
from syncd.adapters.salesforce import SalesforceSourceError
from syncd.config.suppression import SuppressionSourceConfig
from syncd.domain.soql import build_poll_query
from syncd.domain.suppression import SourceQuery, source_opt_outs
from syncd.domain.window import PollWindow, plan_window
from syncd.logs import get_logger
from syncd.services.suppression_lag import observe_additions

log = get_logger(__name__)

#: Where a source's first read starts: before any record of any org.
SOURCE_START = datetime(2000, 1, 1, tzinfo=UTC)
#: Re-read this far behind the cursor (records committed late with an older stamp).
SOURCE_LOOKBACK = timedelta(minutes=1)
#: Never read closer to the present than this (transactions still in flight).
SOURCE_LAG = timedelta(seconds=15)
#: The shortest lease of a source.
MIN_LEASE = timedelta(seconds=10)

SourceStatus = Literal["ok", "standby", "error", "stopped"]


class RecordSource(Protocol):
    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]: ...


@dataclass
class SourceResult:
    """One read of a source: records read, numbers added, how many of them late."""

    source: str
    status: SourceStatus = "ok"
    records: int = 0
    added: int = 0
    late: int = 0
    error: str | None = None


def lease_ttl(every: timedelta) -> timedelta:
    """A source's lease: two periods, at least :data:`MIN_LEASE`."""
    return max(2 * every, MIN_LEASE)


class SourceReader:
    """Reads one suppression source; keeps its lease between reads."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        source: RecordSource,
        config: SuppressionSourceConfig,
        *,
        region: str,
        holder: str,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = session_factory
        self.source = source
        self.config = config
        self.query: SourceQuery = config.source_query(region)
        self.holder = holder
        self.now = now
        self.token: int | None = None

    def run(self, stop: threading.Event | None = None) -> SourceResult:
        """Read the source once if this process holds its lease; never raises for
        Salesforce or database trouble (the result says it, and the log)."""
        result = SourceResult(self.config.name)
        try:
            if not self._lease():
                result.status = "standby"
                return result
            self._read(result, stop)
        except (SalesforceSourceError, SQLAlchemyError) as exc:
            result.status = "error"
            result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.error("suppression source read failed", source=self.config.name, error=result.error)
        self._record(result)
        return result

    def _lease(self) -> bool:
        ttl = lease_ttl(self.config.every)
        with self.sessions.begin() as session:
            grant = None
            if self.token is not None:
                grant = leases.acquire(session, self.config.key, self.holder, ttl, token=self.token)
            if grant is None:
                grant = leases.acquire(session, self.config.key, self.holder, ttl)
        self.token = grant.lease.token if grant is not None else None
        return grant is not None

    def _window(self) -> tuple[PollWindow | None, datetime | None]:
        """The window to read, and since when the source is watched (before: history)."""
        with self.sessions.begin() as session:
            state = poll_store.ensure_state(session, self.config.key, SOURCE_START, self.now())
        window = plan_window(
            start_at=state.start_at,
            watermark=state.watermark,
            lookback=SOURCE_LOOKBACK,
            lag=SOURCE_LAG,
            now=self.now(),
        )
        return window, state.created_at

    def _read(self, result: SourceResult, stop: threading.Event | None) -> None:
        window, since = self._window()
        if window is None:
            return
        soql = build_poll_query(self.config.query_spec, window)
        pages = self.source.query_pages(soql)
        try:
            for records in pages:
                self._apply(records, window, result, since)
                if stop is not None and stop.is_set():
                    result.status = "stopped"
                    return
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        log.info(
            "suppression source read",
            source=self.config.name,
            records=result.records,
            added=result.added,
            late=result.late,
            window_from=window.start.isoformat(),
            window_to=window.end.isoformat(),
        )

    def _apply(
        self,
        records: list[dict[str, Any]],
        window: PollWindow,
        result: SourceResult,
        since: datetime | None,
    ) -> None:
        """One page in one transaction: the numbers (under their locks), then the cursor."""
        opt_outs, newest = source_opt_outs(records, self.query)
        with self.sessions.begin() as session:
            added = suppression_store.add(session, list(opt_outs.values()), self.now)
            if newest is not None:
                poll_store.advance_watermark(
                    session, self.config.key, min(newest, window.end), self.now()
                )
        result.records += len(records)
        result.added += len(added)
        result.late += observe_additions(added, self.config.name, since=since)

    def _record(self, result: SourceResult) -> None:
        if result.status == "standby":
            return
        status = "ok" if result.status == "stopped" else result.status
        try:
            with self.sessions.begin() as session:
                poll_store.record_outcome(
                    session, self.config.key, status, result.error, self.now()
                )
        except SQLAlchemyError as exc:
            log.warning("cannot record the source's read", source=self.config.name, error=str(exc))

    def close(self) -> None:
        """Let the lease go (a clean stop): another replica reads the source at once."""
        if self.token is None:
            return
        try:
            with self.sessions.begin() as session:
                leases.release(session, self.config.key, self.holder, self.token)
        except SQLAlchemyError as exc:
            log.warning(
                "could not release a source's lease", source=self.config.name, error=str(exc)
            )
        self.token = None
