"""The stream use case: change events in, the same leads a poll would make, within a second.

One :class:`StreamIntake` per streamed sync (``source.mode: stream``):

1. the Pub/Sub subscriber (:mod:`syncd.adapters.pubsub`) hands over events;
2. the record Ids of CREATE, UPDATE, UNDELETE and every GAP_* event are
   collected for a short linger (``linger``, or until ``max_ids`` Ids); the
   events themselves are let go at once (their field values are never used);
3. those records are read through the REST source (``WHERE Id IN (...)`` plus
   the sync's fields and ``where``) and run through exactly a poll's page work
   (:func:`syncd.services.stream_poll.apply_records`): mapping, rules, outbox;
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

No event stops the stream. Ids are checked before they reach SOQL
(:mod:`syncd.domain.record_ids`): a wildcard (``00Q*``, a field's type
conversion touched every record) and a GAP_OVERFLOW (its placeholder Id names
no record) are recovered by a reconciliation poll from the event's commit time,
run before the batch's replay id is stored; any other value that is not a
record Id is dropped with a warning, and so is an event whose unreadable header
left nothing to do (``syncd_stream_dropped_events_total``). The batch commits.

No window at LATEST: whenever the subscriber starts at LATEST (the first
start, a reconnect before any replay id was stored, a refused replay id), a
reconciliation poll covers the time since the last thing known (the stored
replay's time, else this intake's start, less the sync's lookback) once the
LATEST stream is open. A refused replay id is also counted in
``syncd_stream_replay_resets_total``.

A stream that runs but does not advance (:mod:`syncd.services.stream_stall`)
shows in ``syncd_stream_stalled``, ``/readyz`` and the logs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from syncd.domain.backoff import capped_exponential
from syncd.domain.linger import Linger
from syncd.domain.soql import build_ids_query
from syncd.logs import bind_context, get_logger
from syncd.metrics import (
    STREAM_CONNECTED,
    STREAM_LAST_EVENT,
    STREAM_LINGER,
    STREAM_RECONNECTS,
    STREAM_REPLAY_LAG,
    STREAM_REPLAY_RESETS,
    STREAM_STALLED,
)
from syncd.services.poll import PollResult, RecordSource
from syncd.services.stream_batch import Batch, export_stream_metrics
from syncd.services.stream_board import DISCONNECTED_ALLOWED, StreamBoard, StreamStatus
from syncd.services.stream_poll import apply_records
from syncd.services.stream_stall import StallWatch
from syncd.services.stream_supervisor import StreamSupervisor

log = get_logger(__name__)

DEFAULT_LINGER = 0.1
DEFAULT_MAX_IDS = 200
#: Ids per ``WHERE Id IN (...)`` query (keeps the SOQL well under its length limit).
READ_CHUNK = 200
#: Longest wait between attempts to handle a batch that failed (Salesforce or database down).
RETRY_MAX = 60.0
#: Linger while the org's daily API usage is above ``max_api_usage_percent``: fewer,
#: larger reads (polling pauses then; the stream keeps going, more slowly).
BUSY_LINGER = 5.0
#: After a LATEST subscribe, how long the new stream may take to answer first.
REOPEN_SETTLE = 2.0
#: How long an ending intake waits for its subscriber before saying it is still stopping.
SUBSCRIBER_JOIN = 10.0

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
class _Latest:
    """The subscriber is about to start at LATEST: what came before it is not sent."""


_Item = _Events | _Keepalive | _Refused | _Latest


class _ReconcileFailed(Exception):
    """A reconciliation poll the batch needs did not finish (the batch is retried)."""


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
        max_linger: float | None = None,
        max_ids: int = DEFAULT_MAX_IDS,
        max_api_usage_percent: int = 80,
        stall: StallWatch | None = None,
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
        self.linger = Linger(linger, linger if max_linger is None else max_linger)
        STREAM_LINGER.labels(sync=sync.name).set(linger)
        self._last_batch = time.monotonic()
        self.max_ids = max_ids
        self.max_api_usage_percent = max_api_usage_percent
        self.stall = stall or StallWatch()
        self._stalled: str | None = None
        self._stall_lock = threading.Lock()
        self._slowed = False
        self._inbox: queue.Queue[_Item] = queue.Queue()
        self._busy = 0  # items put and not yet fully handled
        self._latest_pending = 0  # of which LATEST gap polls
        self._idle = threading.Condition()
        self._stop = threading.Event()  # the subscriber's: set whenever run() ends
        self._held: _Item | None = None  # taken during a linger
        self._started = now()
        self._thread: threading.Thread | None = None
        # After a LATEST subscribe: the stream is open (or over) / has sent something.
        self._reopened = threading.Event()
        self._heard = threading.Event()

    # ------------------------------------------------------- listener (subscriber thread)

    def resume_from(self) -> bytes | None:
        """Wait until everything received is handled, then the stored replay id (or None).

        A pending LATEST gap poll is not waited for: it moves no replay id, and it
        waits for the stream this subscribe opens.
        """
        with self._idle:
            while self._busy > self._latest_pending and not self._stop.is_set():
                self._idle.wait(0.2)
        with self.sessions() as session:
            position = stream_store.get_position(session, self.sync.name)
        if position is None or position.topic != self.topic:
            return None
        return position.replay_id

    def on_events(self, events: list[ChangeEvent]) -> None:
        self._heard.set()
        self.stall.received()
        self._put(_Events(events))
        self._check_stall()

    def on_keepalive(self, latest_replay_id: bytes) -> None:
        self._heard.set()
        self.stall.received()
        self._put(_Keepalive(latest_replay_id))
        self._check_stall()

    def on_latest(self) -> None:
        self._reopened.clear()
        self._heard.clear()
        with self._idle:
            self._latest_pending += 1
        self._put(_Latest())

    def on_replay_refused(self, reason: str) -> None:
        self._put(_Refused(reason))

    def on_connection(self, connected: bool, reason: str | None) -> None:
        self._reopened.set()  # a LATEST subscribe is in place, or over
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

    def _put(self, item: _Item) -> None:
        with self._idle:
            self._busy += 1
        self._inbox.put(item)

    def _done(self, count: int, progressed: bool) -> None:
        with self._idle:
            self._busy -= count
            outstanding = self._busy > 0
            self._idle.notify_all()
        if progressed:
            self.stall.progressed(outstanding)
        self._check_stall()

    # ------------------------------------------------------- the worker (caller's thread)

    def run(self, stop: threading.Event) -> None:
        """Subscribe in a helper thread and handle what arrives here, until ``stop``.

        However this ends (``stop``, an error), the subscription ends with it: a
        new intake must never find the old one's stream still open beside its own.
        """
        bind_context(sync=self.sync.name, job="stream")
        own = threading.Event()
        self._stop = own
        self._started = self.now()
        export_stream_metrics(self.sync.name)
        self.board.update(self.sync.name, running=True, connected=False, since=self._started)
        thread = threading.Thread(
            target=self._subscribe, args=(own,), name=f"pubsub-{self.sync.name}", daemon=True
        )
        self._thread = thread
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
                        self._check_stall()
                        continue
                self._handle(item, stop)
        finally:
            own.set()
            thread.join(timeout=SUBSCRIBER_JOIN)
            if thread.is_alive():
                log.error("stream subscriber still stopping", sync=self.sync.name)
            self.stall.reset()
            self._check_stall()
            self.board.update(self.sync.name, running=False, connected=False)
            STREAM_CONNECTED.labels(sync=self.sync.name).set(0)
            log.info("stream stopped", sync=self.sync.name)

    def wait_subscriber(self, stop: threading.Event) -> None:
        """Return once this intake's subscriber has ended (or ``stop``)."""
        thread = self._thread
        while thread is not None and thread.is_alive() and not stop.is_set():
            thread.join(0.5)

    def _subscribe(self, stop: threading.Event) -> None:
        bind_context(sync=self.sync.name, job="stream")
        try:
            self.subscriber.run(self, stop)
        except Exception:  # never silently: the worker keeps running, the board shows it
            log.exception("stream subscriber failed", sync=self.sync.name)
            self.board.update(self.sync.name, connected=False, last_error="subscriber failed")

    def _handle(self, item: _Item, stop: threading.Event) -> None:
        taken, progressed = 1, False
        try:
            if isinstance(item, _Events):
                batch, taken = self._collect(item, stop)
                progressed = self._settle(batch, stop)
            elif isinstance(item, _Keepalive):
                progressed = self._keepalive(item.replay_id)
            elif isinstance(item, _Refused):
                self._refused(item.reason)
                progressed = True
            else:
                progressed = self._latest(stop)
        finally:
            if isinstance(item, _Latest):
                with self._idle:
                    self._latest_pending -= 1
            self._done(taken, progressed)

    def _collect(self, first: _Events, stop: threading.Event) -> tuple[Batch, int]:
        """The first events plus whatever arrives within the linger (up to ``max_ids``)."""
        batch = Batch(self.sync.name, self.sync.object, self.board, arrived_at=self.now())
        batch.add(first.events)
        first.events.clear()  # the Ids are taken: let the decoded events go
        taken = 1
        quiet = time.monotonic() - self._last_batch
        deadline = time.monotonic() + self._current_linger(self.linger.start(quiet))
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
            batch.add(item.events)
            item.events.clear()
            taken += 1
        STREAM_LINGER.labels(sync=self.sync.name).set(self.linger.observe(taken))
        self._last_batch = time.monotonic()
        return batch, taken

    def _current_linger(self, window: float) -> float:
        """``window`` (:mod:`syncd.domain.linger`), or :data:`BUSY_LINGER` while the org's
        API usage is above the limit."""
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
                log.info("stream reads back to normal", linger_seconds=self.linger.current)
        return max(window, BUSY_LINGER) if busy else window

    # ------------------------------------------------------------------ one batch

    def _settle(self, batch: Batch, stop: threading.Event) -> bool:
        """Handle ``batch`` until it is committed (retrying with backoff): False on ``stop``."""
        attempt = 0
        while not stop.is_set():
            attempt += 1
            delay = capped_exponential(attempt, 0.5, RETRY_MAX)
            try:
                self._commit(batch)
                return True
            except (SalesforceSourceError, SQLAlchemyError, ValueError, _ReconcileFailed) as exc:
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                self.board.update(self.sync.name, last_error=error)
                self.stall.failed()
                self._check_stall()
                log.error("stream batch failed; retrying", error=error, retry_in_seconds=delay)
            if stop.wait(delay):
                return False
        return False

    def _commit(self, batch: Batch) -> None:
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
        fetched, queued, new = self._read(list(batch.read), batch.arrived_at)
        if batch.reconcile:
            self._reconcile_batch(batch.reconcile)
        now = self.now()
        with self.sessions.begin() as session:
            stream_store.save_replay(
                session,
                self.sync.name,
                self.topic,
                batch.last_replay,
                batch.last_commit,
                now,
                event=True,
            )
        self.subscriber.release(batch.count)
        lag = (now - batch.last_commit).total_seconds() if batch.last_commit else None
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
            events=batch.count,
            read=len(batch.read),
            fetched=fetched,
            new=new,
            queued=queued,
            deleted_skipped=skipped,
            replay_lag_seconds=round(lag, 3) if lag is not None else None,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )

    def _read(self, ids: list[str], arrived: datetime | None = None) -> tuple[int, int, int]:
        """Read ``ids`` (checked record Ids) and apply them: (fetched, queued, new).

        ``arrived``: when their events arrived, the new leads' read moment."""
        fetched, queued, new = 0, 0, 0
        for start in range(0, len(ids), READ_CHUNK):
            records: list[dict[str, Any]] = []
            for page in self.reader.query_pages(
                build_ids_query(self.sync.query_spec, ids[start : start + READ_CHUNK])
            ):
                records.extend(page)
            fetched += len(records)
            if records:
                result = apply_records(
                    self.sessions, self.sync, records, now=self.now, read_at=arrived
                )
                queued += result.queued
                new += result.new
        return fetched, queued, new

    def _keepalive(self, replay_id: bytes) -> bool:
        """Store a keepalive's replay id, so a restart resumes near the tip (True: stored)."""
        try:
            with self.sessions.begin() as session:
                stream_store.save_replay(
                    session, self.sync.name, self.topic, replay_id, None, self.now(), event=False
                )
        except SQLAlchemyError as exc:  # the next keepalive or event stores one again
            log.warning("cannot store the keepalive's replay id", error=str(exc)[:200])
            return False
        return True

    # ------------------------------------------------------------------ gaps

    def _last_known(self) -> datetime:
        """Since when the stream may have missed events: the stored replay's time, else start."""
        with self.sessions() as session:
            position = stream_store.get_position(session, self.sync.name)
        if position is not None and position.topic == self.topic and position.replay_at:
            return min(position.replay_at, self.now())
        return self._started

    def _reconcile_batch(self, commits: list[datetime | None]) -> None:
        """Poll from the earliest commit time (unknown: the last thing known), or raise."""
        if self.reconcile is None:
            log.warning("stream cannot reconcile: no reconciliation poll for this intake")
            return
        known = [at for at in commits if at is not None]
        since = min(known) if len(known) == len(commits) else min([*known, self._last_known()])
        error = self._reconcile_once(since - self.sync.lookback, "wildcard or overflow")
        if error is not None:
            raise _ReconcileFailed(error)

    def _reconcile_once(self, start: datetime, why: str) -> str | None:
        """One reconciliation poll from ``start`` to a minute from now: None, or why it failed."""
        assert self.reconcile is not None
        now = self.now()
        start = min(start, now)
        result = self.reconcile(start, now + timedelta(minutes=1))
        if not result.ok or result.status == "paused":
            return result.error or f"reconciliation poll {result.status}"
        self.board.bump(self.sync.name, "reconciles")
        log.info(
            "stream gap reconciled",
            reason=why,
            gap_from=start.isoformat(),
            fetched=result.fetched,
            new=result.new,
            queued=result.queued,
        )
        if result.queued and self.on_queued is not None:
            self.on_queued(self.sync.name)
        return None

    def _refused(self, reason: str) -> None:
        """The stored replay id was refused: forget it (the LATEST start polls the gap)."""
        now = self.now()
        since = self._last_known()
        with self.sessions.begin() as session:
            stream_store.forget_replay(session, self.sync.name, self.topic, now)
        STREAM_REPLAY_RESETS.labels(sync=self.sync.name).inc()
        self.board.bump(self.sync.name, "replay_resets")
        log.warning(
            "stream replay id refused; starting at LATEST and reconciling the gap",
            reason=reason,
            gap_from=(since - self.sync.lookback).isoformat(),
        )

    def _latest(self, stop: threading.Event) -> bool:
        """The subscriber starts at LATEST: poll the gap since the last thing known.

        Only once the LATEST stream is in place (its first answer, or a moment
        after it opened): a record committed before then is in the poll, one
        committed after is in the stream. Retried until done (False: ``stop``).
        """
        if self.reconcile is None:
            return True
        start = self._last_known() - self.sync.lookback
        while not self._reopened.wait(0.2):
            if stop.is_set():
                return False
        self._heard.wait(REOPEN_SETTLE)
        attempt = 0
        while not stop.is_set():
            attempt += 1
            error = self._reconcile_once(start, "stream started at LATEST")
            if error is None:
                return True
            delay = capped_exponential(attempt, 1.0, RETRY_MAX)
            log.error(
                "stream gap reconciliation failed; retrying", error=error, retry_in_seconds=delay
            )
            if stop.wait(delay):
                return False
        return False

    # ------------------------------------------------------------------ stalls

    def _check_stall(self) -> None:
        """Publish the stall state (gauge, board); log when it changes."""
        reason = self.stall.reason()
        with self._stall_lock:
            changed = (reason is None) != (self._stalled is None)
            self._stalled = reason
        self.board.update(self.sync.name, stalled=reason)
        if not changed:
            return
        STREAM_STALLED.labels(sync=self.sync.name).set(1 if reason else 0)
        if reason is not None:
            log.warning("stream stalled", sync=self.sync.name, reason=reason)
        else:
            log.info("stream advancing again", sync=self.sync.name)
