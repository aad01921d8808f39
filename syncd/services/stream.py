"""The stream use case: change events in, the same leads a poll would make, within a second.

One :class:`StreamIntake` per streamed sync (``source.mode: stream``):

1. the Pub/Sub subscriber (:mod:`syncd.adapters.pubsub`) hands over events;
2. the record Ids of CREATE, UPDATE, UNDELETE and every GAP_* event are
   collected for a short linger (``linger``, or until ``max_ids`` Ids);
3. those records are read through the REST source (``WHERE Id IN (...)`` plus
   the sync's fields and ``where``) and run through exactly a poll's page work
   (:func:`syncd.services.poll.apply_records`): mapping, rules, outbox;
4. only then the replay id of the last event is stored (``stream_state``), and
   the subscriber may ask for as many events as were handled.

A crash anywhere before 4 makes the events come again after the restart (the
subscription resumes after the stored replay id), and reading a record twice
changes nothing (leads are unique per sync and Salesforce Id). Events are never
trusted for field values: a CREATE of a record that no longer matches ``where``
reads nothing, and an UPDATE is read whole.

DELETE and GAP_DELETE events: the deletion is stored on the lead whatever its
state (:func:`syncd.adapters.ledger.mark_deleted`). A lead not yet claimed by
delivery (``queued``/``invalid``/``held``) becomes ``skipped`` ("record deleted
in Salesforce"); a lead in flight keeps its state, and should it come back to
``queued`` (nothing was sent after all) the send gate skips it. Never dialled.

When the stored replay id is refused (past the 72-hour retention, or
corrupted), the subscriber starts at LATEST and :class:`StreamIntake` runs a
reconciliation poll over the gap (from the stored replay time, less the sync's
lookback, until now), counted in ``syncd_stream_replay_resets_total``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import ledger, stream_store
from syncd.adapters.orm import utcnow
from syncd.adapters.pubsub import ChangeEvent, PubSubSubscriber
from syncd.adapters.salesforce import SalesforceSourceError
from syncd.config.models import SyncConfig
from syncd.domain.api_usage import usage_over_limit
from syncd.domain.soql import build_ids_query
from syncd.logs import bind_context, get_logger
from syncd.metrics import (
    STREAM_CONNECTED,
    STREAM_EVENTS,
    STREAM_GAPS,
    STREAM_LAST_EVENT,
    STREAM_RECONNECTS,
    STREAM_REPLAY_LAG,
    STREAM_REPLAY_RESETS,
)
from syncd.services.poll import PollResult, RecordSource, apply_records
from syncd.services.stream_board import DISCONNECTED_ALLOWED, StreamBoard, StreamStatus

log = get_logger(__name__)

#: Change types whose records are read and evaluated.
READ_TYPES = frozenset(
    {
        "CREATE",
        "UPDATE",
        "UNDELETE",
        "GAP_CREATE",
        "GAP_UPDATE",
        "GAP_UNDELETE",
        "GAP_OVERFLOW",
    }
)
#: Change types that delete their records: a GAP_DELETE is a deletion Salesforce could not
#: describe in detail (made outside the application server), never a read.
DELETE_TYPES = frozenset({"DELETE", "GAP_DELETE"})
DEFAULT_LINGER = 0.1
DEFAULT_MAX_IDS = 200
#: Ids per ``WHERE Id IN (...)`` query (keeps the SOQL well under its length limit).
READ_CHUNK = 200
#: Longest wait between attempts to handle a batch that failed (Salesforce or database down).
RETRY_MAX = 60.0
#: Linger while the org's daily API usage is above ``max_api_usage_percent``: fewer,
#: larger reads (polling pauses then; the stream keeps going, more slowly).
BUSY_LINGER = 5.0
#: After a refused replay id, how long the new LATEST stream may take to answer first.
REOPEN_SETTLE = 2.0

Reconcile = Callable[[datetime, datetime], PollResult]
__all__ = [
    "DISCONNECTED_ALLOWED",
    "StreamBoard",
    "StreamIntake",
    "StreamStatus",
    "StreamSupervisor",
]


# --------------------------------------------------------------------------- the intake


@dataclass
class _Events:
    events: list[ChangeEvent]


@dataclass
class _Keepalive:
    replay_id: bytes


@dataclass
class _Refused:
    reason: str


@dataclass
class _Batch:
    """Events collected over one linger, and the Ids they name."""

    events: list[ChangeEvent] = field(default_factory=list)
    read: dict[str, None] = field(default_factory=dict)  # ordered set
    #: Record Id -> when it was deleted (the event's commit time).
    deleted: dict[str, datetime | None] = field(default_factory=dict)


class StreamIntake:
    """One streamed sync: see the module docstring. :meth:`run` blocks until ``stop``."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        sync: SyncConfig,
        subscriber: PubSubSubscriber,
        reader: RecordSource,
        *,
        reconcile: Reconcile | None = None,
        board: StreamBoard | None = None,
        on_queued: Callable[[str], None] | None = None,
        now: Callable[[], datetime] = utcnow,
        linger: float = DEFAULT_LINGER,
        max_ids: int = DEFAULT_MAX_IDS,
        max_api_usage_percent: int = 80,
    ) -> None:
        self.sessions = session_factory
        self.sync = sync
        self.topic = sync.topic
        self.subscriber = subscriber
        self.reader = reader
        self.reconcile = reconcile
        self.board = board or StreamBoard([sync], now)
        self.on_queued = on_queued
        self.now = now
        self.linger = linger
        self.max_ids = max_ids
        self.max_api_usage_percent = max_api_usage_percent
        self._slowed = False
        self._inbox: queue.Queue[_Events | _Keepalive | _Refused] = queue.Queue()
        self._busy = 0  # items put and not yet fully handled
        self._idle = threading.Condition()
        self._stop = threading.Event()
        self._held: _Events | _Keepalive | _Refused | None = None  # taken during a linger
        # After a refused replay id: the LATEST stream is open / has sent something.
        self._reopened = threading.Event()
        self._heard = threading.Event()

    # ------------------------------------------------------- listener (subscriber thread)

    def resume_from(self) -> bytes | None:
        """Wait until everything received is handled, then the stored replay id (or None)."""
        with self._idle:
            while self._busy and not self._stop.is_set():
                self._idle.wait(0.2)
        with self.sessions() as session:
            position = stream_store.get_position(session, self.sync.name)
        if position is None or position.topic != self.topic:
            return None
        return position.replay_id

    def on_events(self, events: list[ChangeEvent]) -> None:
        self._heard.set()
        self._put(_Events(events))

    def on_keepalive(self, latest_replay_id: bytes) -> None:
        self._heard.set()
        self._put(_Keepalive(latest_replay_id))

    def on_replay_refused(self, reason: str) -> None:
        self._reopened.clear()
        self._heard.clear()
        self._put(_Refused(reason))

    def on_connection(self, connected: bool, reason: str | None) -> None:
        if connected:
            self._reopened.set()
        STREAM_CONNECTED.labels(sync=self.sync.name).set(1 if connected else 0)
        self.board.update(self.sync.name, connected=connected, since=self.now())
        if connected:
            log.info("stream connected", sync=self.sync.name, topic=self.topic)
            return
        self.board.update(self.sync.name, last_error=reason)
        if reason != "stopping":
            STREAM_RECONNECTS.labels(sync=self.sync.name).inc()
            self.board.bump(self.sync.name, "reconnects")
            log.info("stream disconnected", sync=self.sync.name, reason=reason)

    def _put(self, item: _Events | _Keepalive | _Refused) -> None:
        with self._idle:
            self._busy += 1
        self._inbox.put(item)

    def _done(self, count: int = 1) -> None:
        with self._idle:
            self._busy -= count
            self._idle.notify_all()

    # ------------------------------------------------------- the worker (caller's thread)

    def run(self, stop: threading.Event) -> None:
        """Subscribe in a helper thread and handle what arrives here, until ``stop``."""
        bind_context(sync=self.sync.name, job="stream")
        self._stop = stop
        self.board.update(self.sync.name, running=True, connected=False, since=self.now())
        thread = threading.Thread(
            target=self._subscribe, args=(stop,), name=f"pubsub-{self.sync.name}", daemon=True
        )
        thread.start()
        try:
            while not stop.is_set():
                if not thread.is_alive():
                    raise RuntimeError("the stream's subscriber ended unexpectedly")
                item, self._held = self._held, None
                if item is None:
                    try:
                        item = self._inbox.get(timeout=0.2)
                    except queue.Empty:
                        continue
                self._handle(item, stop)
        finally:
            thread.join(timeout=10)
            self.board.update(self.sync.name, running=False, connected=False)
            STREAM_CONNECTED.labels(sync=self.sync.name).set(0)
            log.info("stream stopped", sync=self.sync.name)

    def _subscribe(self, stop: threading.Event) -> None:
        bind_context(sync=self.sync.name, job="stream")
        try:
            self.subscriber.run(self, stop)
        except Exception:  # never silently: the worker keeps running, the board shows it
            log.exception("stream subscriber failed", sync=self.sync.name)
            self.board.update(self.sync.name, connected=False, last_error="subscriber failed")

    def _handle(self, item: _Events | _Keepalive | _Refused, stop: threading.Event) -> None:
        if isinstance(item, _Events):
            batch, taken = self._collect(item, stop)
            try:
                self._settle(batch, stop)
            finally:
                self._done(taken)
        elif isinstance(item, _Keepalive):
            try:
                self._keepalive(item.replay_id)
            finally:
                self._done()
        else:
            try:
                self._refused(item.reason, stop)
            finally:
                self._done()

    def _collect(self, first: _Events, stop: threading.Event) -> tuple[_Batch, int]:
        """The first events plus whatever arrives within the linger (up to ``max_ids``)."""
        batch = _Batch()
        self._add(batch, first.events)
        taken = 1
        deadline = time.monotonic() + self._current_linger()
        while len(batch.read) + len(batch.deleted) < self.max_ids and not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = self._inbox.get(timeout=left)
            except queue.Empty:
                break
            if not isinstance(item, _Events):
                self._held = item  # handled next, in order
                break
            self._add(batch, item.events)
            taken += 1
        return batch, taken

    def _current_linger(self) -> float:
        """The linger; :data:`BUSY_LINGER` while the org's API usage is above the limit."""
        usage = self.reader.api_usage()
        busy = usage_over_limit(usage, self.max_api_usage_percent) is not None
        if busy != self._slowed:
            self._slowed = busy
            if busy:
                log.warning(
                    "stream reads slowed: Salesforce API usage is high",
                    used=usage[0] if usage else None,
                    limit=usage[1] if usage else None,
                    linger_seconds=BUSY_LINGER,
                )
            else:
                log.info("stream reads back to normal", linger_seconds=self.linger)
        return max(self.linger, BUSY_LINGER) if busy else self.linger

    def _add(self, batch: _Batch, events: list[ChangeEvent]) -> None:
        wanted = self.sync.object.lower()
        for event in events:
            batch.events.append(event)
            STREAM_EVENTS.labels(
                sync=self.sync.name, change_type=event.change_type or "event"
            ).inc()
            if event.entity is not None and event.entity.lower() != wanted:
                continue  # /data/ChangeEvents carries every selected object
            change = event.change_type
            if change is not None and change.startswith("GAP_"):
                STREAM_GAPS.labels(sync=self.sync.name).inc()
                self.board.bump(self.sync.name, "gaps")
                log.info("stream gap event", change_type=change, records=len(event.record_ids))
            for record_id in event.record_ids:
                if change in DELETE_TYPES:
                    batch.deleted[record_id] = event.commit_at
                    batch.read.pop(record_id, None)  # deleted since: nothing left to read
                elif change is None or change in READ_TYPES:
                    batch.read[record_id] = None

    # ------------------------------------------------------------------ one batch

    def _settle(self, batch: _Batch, stop: threading.Event) -> None:
        """Handle ``batch`` until it is committed (retrying with backoff), or ``stop``."""
        delay = 0.5
        while not stop.is_set():
            try:
                self._commit(batch)
                return
            except (SalesforceSourceError, SQLAlchemyError, ValueError) as exc:
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                self.board.update(self.sync.name, last_error=error)
                log.error("stream batch failed; retrying", error=error, retry_in_seconds=delay)
            if stop.wait(delay):
                return
            delay = min(RETRY_MAX, delay * 2)

    def _commit(self, batch: _Batch) -> None:
        started = time.monotonic()
        skipped = 0
        if batch.deleted:
            with self.sessions.begin() as session:
                now = self.now()
                skipped = ledger.mark_deleted(
                    session,
                    self.sync.name,
                    {sf_id: at or now for sf_id, at in batch.deleted.items()},
                    actor="stream",
                    now=now,
                )
        fetched, queued, new = 0, 0, 0
        ids = list(batch.read)
        for start in range(0, len(ids), READ_CHUNK):
            records: list[dict[str, Any]] = []
            for page in self.reader.query_pages(
                build_ids_query(self.sync, ids[start : start + READ_CHUNK])
            ):
                records.extend(page)
            fetched += len(records)
            if records:
                result = apply_records(self.sessions, self.sync, records, now=self.now)
                queued += result.queued
                new += result.new
        last = batch.events[-1]
        now = self.now()
        with self.sessions.begin() as session:
            stream_store.save_replay(
                session, self.sync.name, self.topic, last.replay_id, last.commit_at, now, event=True
            )
        self.subscriber.release(len(batch.events))
        lag = (now - last.commit_at).total_seconds() if last.commit_at else None
        STREAM_LAST_EVENT.labels(sync=self.sync.name).set(time.time())
        if lag is not None:
            STREAM_REPLAY_LAG.labels(sync=self.sync.name).set(max(0.0, lag))
        self.board.update(
            self.sync.name, last_event_at=now, replay_lag_seconds=lag, last_error=None
        )
        if queued and self.on_queued is not None:
            self.on_queued(self.sync.name)
        log.info(
            "stream batch",
            events=len(batch.events),
            read=len(ids),
            fetched=fetched,
            new=new,
            queued=queued,
            deleted_skipped=skipped,
            replay_lag_seconds=round(lag, 3) if lag is not None else None,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _keepalive(self, replay_id: bytes) -> None:
        """Store a keepalive's replay id, so a restart resumes near the tip."""
        try:
            with self.sessions.begin() as session:
                stream_store.save_replay(
                    session, self.sync.name, self.topic, replay_id, None, self.now(), event=False
                )
        except SQLAlchemyError as exc:  # the next keepalive or event stores one again
            log.warning("cannot store the keepalive's replay id", error=str(exc)[:200])

    def _refused(self, reason: str, stop: threading.Event) -> None:
        """The stored replay id was refused: forget it and poll the gap it leaves."""
        now = self.now()
        with self.sessions() as session:
            position = stream_store.get_position(session, self.sync.name)
        since = position.replay_at if position is not None else None
        with self.sessions.begin() as session:
            stream_store.forget_replay(session, self.sync.name, self.topic, now)
        STREAM_REPLAY_RESETS.labels(sync=self.sync.name).inc()
        self.board.bump(self.sync.name, "replay_resets")
        start = (since or now) - self.sync.lookback
        end = now + timedelta(minutes=1)
        log.warning(
            "stream replay id refused; starting at LATEST and reconciling the gap",
            reason=reason,
            gap_from=start.isoformat(),
            gap_to=end.isoformat(),
        )
        if self.reconcile is None:
            return
        # Reconcile only once the LATEST stream is in place (its first answer, or a
        # moment after it opened): a record committed before then is in the poll,
        # one committed after is in the stream.
        while not self._reopened.wait(0.2):
            if stop.is_set():
                return
        self._heard.wait(REOPEN_SETTLE)
        end = max(end, self.now() + timedelta(minutes=1))
        delay = 1.0
        while not stop.is_set():
            result = self.reconcile(start, end)
            if result.ok and result.status != "paused":
                log.info(
                    "stream gap reconciled",
                    fetched=result.fetched,
                    new=result.new,
                    queued=result.queued,
                )
                if result.queued and self.on_queued is not None:
                    self.on_queued(self.sync.name)
                return
            log.error("stream gap reconciliation failed; retrying", error=result.error)
            if stop.wait(delay):
                return
            delay = min(RETRY_MAX, delay * 2)


# --------------------------------------------------------------------------- on the leader only


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
    ) -> None:
        self.syncs = [sync for sync in syncs if sync.enabled and sync.streamed]
        self.make_intake = make_intake
        self.stop = stop
        self.leading = leading
        self.bound_stop = bound_stop
        self._threads: list[threading.Thread] = []

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
            try:
                self.make_intake(sync).run(stop)
            except Exception:  # a broken intake is retried, never the end of the daemon
                log.exception("stream intake failed", sync=sync.name)
                self.stop.wait(5.0)

    def join(self, timeout: float) -> list[str]:
        """Wait for the intakes to stop (``stop`` must be set); the names still running."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread.name for thread in self._threads if thread.is_alive()]
