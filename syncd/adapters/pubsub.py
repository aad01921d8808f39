"""The Pub/Sub API subscriber: one topic, change events in, reconnecting on its own.

:meth:`PubSubSubscriber.run` keeps one ``Subscribe`` stream open until ``stop``:

* **flow control** -- the first request asks for :data:`MAX_REQUESTED` events;
  each event the listener has handled is asked for again (:meth:`release`), so
  at most that many are ever unhandled;
* **resume** -- every (re)subscribe starts after the replay id the listener
  says it has committed (CUSTOM), or at LATEST without one. A replay id the
  server refuses (corrupted, or past the 72-hour retention) is reported to the
  listener, which must recover the gap another way; the stream then starts at
  LATEST;
* **reconnect** -- any other failure waits (exponential backoff with equal
  jitter, reset once a stream delivered something) and subscribes again.
  ``UNAUTHENTICATED`` logs in again first (the REST source's login);
* **watchdog** -- when nothing, not even a keepalive, arrived for
  ``keepalive_timeout`` the stream is cancelled and opened again;
* **decoding** -- payloads are Avro binary in the schema the event names,
  fetched once with ``GetSchema`` and cached by schema id. Only the header is
  kept (Ids, change type, entity, commit time): syncd reads every record whole,
  so the field values are dropped at once unless ``keep_values`` asks for them.
  A payload or header field that cannot be read never ends the stream: the
  field is read as absent and named in the event's ``flaws`` (the listener
  decides whether the event is still of use).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import fastavro
import grpc

from syncd.domain.backoff import BackoffPolicy, equal_jitter
from syncd.logs import get_logger
from syncd.pubsub import pubsub_api_pb2 as pb
from syncd.pubsub import pubsub_api_pb2_grpc as pb_grpc

log = get_logger(__name__)

#: Most events asked for at once (the API's limit per request).
MAX_REQUESTED = 100
_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
#: Status codes that mean "this replay id cannot be resumed from".
_REPLAY_REFUSED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
#: Commit times (epoch milliseconds) outside 2000-01-01 .. 3000-01-01 are read as unknown:
#: no Salesforce commit is older, and a later one would put a reconciliation in the future.
_EARLIEST_MS = 946_684_800_000
_LATEST_MS = 32_503_680_000_000
#: The flaw of an event whose payload could not be decoded at all.
UNDECODABLE = "payload undecodable"


class PubSubError(Exception):
    """A Pub/Sub problem that reconnecting will not fix (e.g. no such topic)."""


@dataclass(frozen=True)
class ChangeEvent:
    """One decoded event: which records changed and how (``change_type`` None: platform).

    ``record_ids`` are the values as sent (not checked: a wildcard, a placeholder or
    anything else may be among them). ``flaws`` names the header fields that could
    not be read and were taken as absent (:data:`UNDECODABLE`: the whole payload).
    """

    replay_id: bytes
    record_ids: tuple[str, ...]
    change_type: str | None
    entity: str | None
    commit_at: datetime | None
    values: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    flaws: tuple[str, ...] = field(default=(), compare=False)


class StreamListener(Protocol):
    """What the subscriber reports to (the stream service)."""

    def resume_from(self) -> bytes | None:
        """The last committed replay id, once everything received so far is handled."""

    def on_events(self, events: list[ChangeEvent]) -> None:
        """New events (hand them over quickly; :meth:`PubSubSubscriber.release` when done)."""

    def on_keepalive(self, latest_replay_id: bytes) -> None:
        """Nothing new; the topic's latest replay id."""

    def on_latest(self) -> None:
        """The next subscribe starts at LATEST: what was published before it is not sent."""

    def on_replay_refused(self, reason: str) -> None:
        """The stored replay id cannot be resumed from; the stream restarts at LATEST."""

    def on_connection(self, connected: bool, reason: str | None) -> None:
        """The stream opened (True) or ended (False, with why)."""


def org_id_of(session_id: str) -> str:
    """The 18-character org id a Salesforce session id starts with (``00D...!...``)."""
    prefix, sep, _ = session_id.partition("!")
    if not sep or len(prefix) != 15 or not prefix.isalnum():
        raise PubSubError("the session id does not start with an org id; cannot name the tenant")
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(prefix[start : start + 5]) if ch.isupper())
        suffix += _ID_SUFFIX[bits]
    return prefix + suffix


@dataclass
class Backoff:
    """Reconnect delays: exponential from ``initial`` to ``maximum`` seconds, equal jitter."""

    initial: float = 1.0
    maximum: float = 60.0
    rng: Callable[[], float] = random.random
    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        policy = BackoffPolicy(timedelta(seconds=self.initial), timedelta(seconds=self.maximum))
        return equal_jitter(self.failures, policy, self.rng).total_seconds()

    def reset(self) -> None:
        self.failures = 0


class _Flow:
    """The requests of one stream: the first names the start, later ones add capacity."""

    def __init__(self, first: pb.FetchRequest) -> None:
        self.first = first
        self.grants: queue.Queue[int | None] = queue.Queue()

    def requests(self) -> Iterator[pb.FetchRequest]:
        yield self.first
        while True:
            count = self.grants.get()
            if count is None:
                return
            while count > 0:
                step = min(count, MAX_REQUESTED)
                yield pb.FetchRequest(num_requested=step)
                count -= step

    def close(self) -> None:
        self.grants.put(None)


class PubSubSubscriber:
    """Subscribes one topic and keeps the stream open; see the module docstring."""

    def __init__(
        self,
        address: str,
        topic: str,
        session: Callable[[bool], tuple[str, str]],
        *,
        ca_bundle: str | None = None,
        keepalive_timeout: float = 300.0,
        backoff: Backoff | None = None,
        id_field: str = "RecordId__c",
        call_timeout: float = 30.0,
        keep_values: bool = False,
    ) -> None:
        self.address = address
        self.topic = topic
        self._session = session
        self._root = Path(ca_bundle).read_bytes() if ca_bundle else None
        self.keepalive_timeout = keepalive_timeout
        self.backoff = backoff or Backoff()
        self.id_field = id_field
        self.call_timeout = call_timeout
        self.keep_values = keep_values
        self._schemas: dict[str, Any] = {}
        self._flow: _Flow | None = None
        self._lock = threading.Lock()
        self._credentials: tuple[str, str, str] | None = None
        self._renew = False
        self._skip_replay = False
        self.reconnects = 0

    # ------------------------------------------------------------------ the listener's side

    def release(self, count: int) -> None:
        """``count`` events were handled: ask the server for as many more."""
        with self._lock:
            flow = self._flow
        if flow is not None and count > 0:
            flow.grants.put(count)

    # ------------------------------------------------------------------ the loop

    def run(self, listener: StreamListener, stop: threading.Event) -> None:
        """Subscribe and resubscribe until ``stop`` is set; never raises for stream trouble."""
        refused_before = False
        while not stop.is_set():
            started = time.monotonic()
            try:
                delivered, reason, code = self._connect_once(listener, stop)
            except Exception as exc:  # the listener failed (e.g. its database): try again later
                log.exception("pubsub stream failed", topic=self.topic)
                delivered, reason, code = False, f"{type(exc).__name__}: {exc}", None
            if stop.is_set():
                listener.on_connection(False, "stopping")
                return
            self.reconnects += 1
            listener.on_connection(False, reason)
            if delivered or time.monotonic() - started > self.backoff.maximum:
                self.backoff.reset()
            if self._skip_replay and not delivered and code in _REPLAY_REFUSED:
                continue  # the replay id was refused: subscribe at LATEST at once
            refused = code == grpc.StatusCode.UNAUTHENTICATED
            if refused and not refused_before:
                refused_before = True  # log in again at once; back off if it repeats
                continue
            refused_before = refused and not delivered
            delay = self.backoff.next_delay()
            log.warning(
                "pubsub stream ended; reconnecting",
                topic=self.topic,
                reason=reason,
                retry_in_seconds=round(delay, 2),
            )
            if stop.wait(delay):
                listener.on_connection(False, "stopping")
                return

    def _connect_once(
        self, listener: StreamListener, stop: threading.Event
    ) -> tuple[bool, str, grpc.StatusCode | None]:
        """One stream from subscribe to its end: (delivered anything, why it ended, status)."""
        delivered = False
        try:
            metadata = self._metadata()
            channel = grpc.secure_channel(
                self.address,
                grpc.ssl_channel_credentials(root_certificates=self._root),
                options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
            )
        except Exception as exc:  # login trouble (network, refused credentials)
            return False, f"login failed: {type(exc).__name__}: {exc}", None
        try:
            stub = pb_grpc.PubSubStub(channel)
            topic = stub.GetTopic(
                pb.TopicRequest(topic_name=self.topic), metadata=metadata, timeout=self.call_timeout
            )
            if not topic.can_subscribe:
                return False, f"no permission to subscribe to {self.topic}", None
            first = self._first_request(listener)
            if stop.is_set():
                return False, "stopping", None
            flow = _Flow(first)
            with self._lock:
                self._flow = flow
            call = stub.Subscribe(flow.requests(), metadata=metadata)
            watchdog = _Watchdog(call, stop, self.keepalive_timeout)
            watchdog.start()
            listener.on_connection(True, None)
            try:
                for response in call:
                    watchdog.seen()
                    if not delivered:
                        delivered = True
                        self._skip_replay = False
                    if response.events:
                        listener.on_events(
                            [self._decode(stub, metadata, e) for e in response.events]
                        )
                    elif response.latest_replay_id:
                        listener.on_keepalive(response.latest_replay_id)
                return delivered, "the server ended the stream", None
            finally:
                self._ended(watchdog, flow)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            return delivered, self._failed(listener, code, detail or "", delivered), code
        except PubSubError as exc:
            return delivered, str(exc), None
        finally:
            channel.close()

    def _ended(self, watchdog: _Watchdog, flow: _Flow) -> None:
        watchdog.finish()
        flow.close()
        with self._lock:
            self._flow = None
        if watchdog.expired:
            log.warning(
                "pubsub stream silent; reconnecting",
                topic=self.topic,
                silent_seconds=self.keepalive_timeout,
            )

    def _first_request(self, listener: StreamListener) -> pb.FetchRequest:
        """Start after the committed replay id (CUSTOM), or at LATEST, telling the listener."""
        replay = None if self._skip_replay else listener.resume_from()
        if not replay:
            listener.on_latest()
        return pb.FetchRequest(
            topic_name=self.topic,
            replay_preset=pb.CUSTOM if replay else pb.LATEST,
            replay_id=replay or b"",
            num_requested=MAX_REQUESTED,
        )

    def _failed(
        self,
        listener: StreamListener,
        code: grpc.StatusCode | None,
        detail: str,
        delivered: bool,
    ) -> str:
        name = code.name if code is not None else "UNKNOWN"
        if code == grpc.StatusCode.UNAUTHENTICATED:
            log.info("pubsub session refused; logging in again", topic=self.topic)
            self._renew = True
        elif code in _REPLAY_REFUSED and not delivered and not self._skip_replay:
            listener.on_replay_refused(f"{name}: {detail}")
            self._skip_replay = True
        elif code == grpc.StatusCode.NOT_FOUND:
            log.error("pubsub topic or schema not found", topic=self.topic, detail=detail)
        elif code == grpc.StatusCode.CANCELLED:
            return "cancelled (silent stream or stop)"
        return f"{name}: {detail}"

    def _metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        renew, self._renew = self._renew, False
        if renew or self._credentials is None:
            session_id, instance = self._session(renew)
            self._credentials = (session_id, instance, org_id_of(session_id))
        token, instance, tenant = self._credentials
        return (("accesstoken", token), ("instanceurl", instance), ("tenantid", tenant))

    # ------------------------------------------------------------------ decoding

    def _schema(self, stub: pb_grpc.PubSubStub, metadata: Any, schema_id: str) -> Any:
        found = self._schemas.get(schema_id)
        if found is None:
            info = stub.GetSchema(
                pb.SchemaRequest(schema_id=schema_id), metadata=metadata, timeout=self.call_timeout
            )
            try:
                found = fastavro.parse_schema(_json(info.schema_json))
            except (ValueError, fastavro.schema.SchemaParseException) as exc:
                raise PubSubError(f"schema {schema_id} is not valid Avro: {exc}") from exc
            self._schemas[schema_id] = found
        return found

    def _decode(
        self, stub: pb_grpc.PubSubStub, metadata: Any, event: pb.ConsumerEvent
    ) -> ChangeEvent:
        try:
            schema = self._schema(stub, metadata, event.event.schema_id)
        except PubSubError as exc:  # a schema that is not Avro: its events cannot be read
            return self._undecodable(event, exc)
        try:
            values = fastavro.schemaless_reader(io.BytesIO(event.event.payload), schema)
        except Exception as exc:  # a payload that does not fit its schema
            return self._undecodable(event, exc)
        return decode_event(event.replay_id, values, self.id_field, keep_values=self.keep_values)

    def _undecodable(self, event: pb.ConsumerEvent, exc: Exception) -> ChangeEvent:
        log.error("pubsub event undecodable", topic=self.topic, error=repr(exc)[:200])
        return ChangeEvent(event.replay_id, (), None, None, None, flaws=(UNDECODABLE,))


def decode_event(
    replay_id: bytes, values: Any, id_field: str, *, keep_values: bool = True
) -> ChangeEvent:
    """A change event from its decoded Avro record (or a platform event with ``id_field``).

    Never raises: a field of the wrong type or out of range is read as absent and
    named in ``flaws``; the values are kept only with ``keep_values``.
    """
    try:
        event = _read_event(replay_id, values, id_field)
    except Exception as exc:  # nothing an event carries may end the stream
        return ChangeEvent(replay_id, (), None, None, None, flaws=(f"unreadable: {exc!r}"[:200],))
    if keep_values and isinstance(values, dict):
        return dataclasses.replace(event, values=values)
    return event


def _read_event(replay_id: bytes, values: Any, id_field: str) -> ChangeEvent:
    if not isinstance(values, dict):
        return ChangeEvent(replay_id, (), None, None, None, flaws=(UNDECODABLE,))
    flaws: list[str] = []
    header = values.get("ChangeEventHeader")
    if isinstance(header, dict):
        commit = _commit_time(header.get("commitTimestamp"), "commitTimestamp", flaws)
        ids = _ids(header.get("recordIds"), flaws)
        change = _text(header.get("changeType"), "changeType", flaws)
        entity = _text(header.get("entityName"), "entityName", flaws)
        return ChangeEvent(replay_id, ids, change, entity, commit, flaws=tuple(flaws))
    commit = _commit_time(values.get("CreatedDate"), "CreatedDate", flaws)
    record_id = _text(values.get(id_field), id_field, flaws)
    ids = (record_id,) if record_id else ()
    return ChangeEvent(replay_id, ids, None, None, commit, flaws=tuple(flaws))


def _commit_time(stamp: Any, name: str, flaws: list[str]) -> datetime | None:
    """Epoch milliseconds as a UTC time; None (and a flaw) when not a plausible one."""
    if stamp is None:
        return None
    plausible = (
        isinstance(stamp, int | float)
        and not isinstance(stamp, bool)
        and math.isfinite(stamp)
        and _EARLIEST_MS <= stamp <= _LATEST_MS
    )
    if not plausible:
        flaws.append(f"{name} out of range: {stamp!r}"[:120])
        return None
    return datetime.fromtimestamp(stamp / 1000, UTC)


def _ids(raw: Any, flaws: list[str]) -> tuple[str, ...]:
    """``recordIds`` as text; anything but a list of strings is read as no Ids."""
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple) or not all(isinstance(i, str) for i in raw):
        flaws.append(f"recordIds unreadable: {raw!r}"[:120])
        return ()
    return tuple(i for i in raw if i)


def _text(raw: Any, name: str, flaws: list[str]) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        flaws.append(f"{name} is not text: {raw!r}"[:120])
        return None
    return raw


def _json(text: str) -> Any:
    return json.loads(text)


class _Watchdog:
    """Cancels a stream on ``stop``, or when nothing arrived for ``timeout`` seconds."""

    def __init__(self, call: Any, stop: threading.Event, timeout: float) -> None:
        self.call = call
        self.stop = stop
        self.timeout = timeout
        self.expired = False
        self._last = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pubsub-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def seen(self) -> None:
        self._last = time.monotonic()

    def finish(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        step = min(0.2, self.timeout / 4)
        while not self._done.wait(step):
            if self.stop.is_set():
                self.call.cancel()
                return
            if time.monotonic() - self._last > self.timeout:
                self.expired = True
                self.call.cancel()
                return
