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
* **reconnect** -- any other failure waits (exponential backoff with full
  jitter, reset once a stream delivered something) and subscribes again.
  ``UNAUTHENTICATED`` logs in again first (the REST source's login);
* **watchdog** -- when nothing, not even a keepalive, arrived for
  ``keepalive_timeout`` the stream is cancelled and opened again;
* **decoding** -- payloads are Avro binary in the schema the event names,
  fetched once with ``GetSchema`` and cached by schema id.
"""

from __future__ import annotations

import io
import json
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


class PubSubError(Exception):
    """A Pub/Sub problem that reconnecting will not fix (e.g. no such topic)."""


@dataclass(frozen=True)
class ChangeEvent:
    """One decoded event: which records changed and how (``change_type`` None: platform)."""

    replay_id: bytes
    record_ids: tuple[str, ...]
    change_type: str | None
    entity: str | None
    commit_at: datetime | None
    values: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class StreamListener(Protocol):
    """What the subscriber reports to (the stream service)."""

    def resume_from(self) -> bytes | None:
        """The last committed replay id, once everything received so far is handled."""

    def on_events(self, events: list[ChangeEvent]) -> None:
        """New events (hand them over quickly; :meth:`PubSubSubscriber.release` when done)."""

    def on_keepalive(self, latest_replay_id: bytes) -> None:
        """Nothing new; the topic's latest replay id."""

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
    ) -> None:
        self.address = address
        self.topic = topic
        self._session = session
        self._root = Path(ca_bundle).read_bytes() if ca_bundle else None
        self.keepalive_timeout = keepalive_timeout
        self.backoff = backoff or Backoff()
        self.id_field = id_field
        self.call_timeout = call_timeout
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
            replay = None if self._skip_replay else listener.resume_from()
            if stop.is_set():
                return False, "stopping", None
            first = pb.FetchRequest(
                topic_name=self.topic,
                replay_preset=pb.CUSTOM if replay else pb.LATEST,
                replay_id=replay or b"",
                num_requested=MAX_REQUESTED,
            )
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
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            return delivered, self._failed(listener, code, detail or "", delivered), code
        except PubSubError as exc:
            return delivered, str(exc), None
        finally:
            channel.close()

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
        schema = self._schema(stub, metadata, event.event.schema_id)
        try:
            values = fastavro.schemaless_reader(io.BytesIO(event.event.payload), schema)
        except Exception as exc:  # a payload that does not fit its schema
            log.error("pubsub event undecodable", topic=self.topic, error=repr(exc)[:200])
            return ChangeEvent(event.replay_id, (), None, None, None)
        return decode_event(event.replay_id, values, self.id_field)


def decode_event(replay_id: bytes, values: Any, id_field: str) -> ChangeEvent:
    """A change event from its decoded Avro record (or a platform event with ``id_field``)."""
    if not isinstance(values, dict):
        return ChangeEvent(replay_id, (), None, None, None)
    header = values.get("ChangeEventHeader")
    if isinstance(header, dict):
        stamp = header.get("commitTimestamp")
        commit = (
            datetime.fromtimestamp(stamp / 1000, UTC) if isinstance(stamp, int | float) else None
        )
        ids = tuple(str(i) for i in header.get("recordIds") or () if i)
        change = header.get("changeType")
        entity = header.get("entityName")
        return ChangeEvent(
            replay_id,
            ids,
            str(change) if change else None,
            str(entity) if entity else None,
            commit,
            values,
        )
    record_id = values.get(id_field)
    created = values.get("CreatedDate")
    commit = datetime.fromtimestamp(created / 1000, UTC) if isinstance(created, int) else None
    ids = (str(record_id),) if record_id else ()
    return ChangeEvent(replay_id, ids, None, None, commit, values)


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
