"""The Salesforce emulator's Pub/Sub API: gRPC over TLS, the same CA as its HTTPS port.

``GetTopic``, ``GetSchema``, ``Subscribe`` and ``Publish`` of ``eventbus.v1.PubSub``
(see ``syncd/pubsub/pubsub_api.proto``), the way Salesforce answers them:

* every call carries the metadata ``accesstoken`` (a session of the emulator's
  logins), ``instanceurl`` (the emulator's URL) and ``tenantid`` (its org id);
  otherwise ``UNAUTHENTICATED``;
* ``Subscribe`` is pull-based: the first request names the topic and the start
  (LATEST, EARLIEST, or CUSTOM with a replay id: events *after* it), and every
  request adds ``num_requested`` (at most 100 counted per request) to what the
  server may send. With nothing to send, an empty response carrying
  ``latest_replay_id`` goes out every ``keepalive`` seconds. A corrupted or
  expired replay id fails the call with ``INVALID_ARGUMENT``.

Faults for tests (:class:`PubSubFaults`): end every open stream (``UNAVAILABLE``,
or ``UNAUTHENTICATED`` after the sessions were expired), make the next CUSTOM
subscribes fail as if their replay id were corrupted, make the next subscribes
of any kind fail with ``UNAVAILABLE`` (an outage while events are published),
and slow every response down (a slow link, for flow-control and latency tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from syncd.pubsub import pubsub_api_pb2 as pb
from syncd.pubsub import pubsub_api_pb2_grpc as pb_grpc
from syncd.sandbox.sf_events import ALL_CHANGES, EventBus, ReplayError, topic_entity

MAX_PER_REQUEST = 100
#: Authenticates a call: (accesstoken, instanceurl, tenantid) -> ok.
Authenticator = Callable[[str, str, str], bool]
#: Does this topic exist (CDC of a known object, all changes, or a platform event)?
TopicCheck = Callable[[str], str | None]


@dataclass
class PubSubFaults:
    """What the next subscribes and the open streams should suffer."""

    invalid_replay: int = 0
    #: The next subscribes fail with UNAVAILABLE before they start (set under the bus's cond).
    unavailable: int = 0
    delay_seconds: float = 0.0


@dataclass
class _Stream:
    topic: str
    position: int
    credits: int = 0
    ended: bool = False
    abort: tuple[grpc.StatusCode, str] | None = None
    sent: int = 0


@dataclass
class SubscribeRecord:
    """One Subscribe call as the emulator saw it (for tests: how did the client resume?)."""

    topic: str
    preset: str
    outcome: str
    at: float = field(default_factory=time.time)


class PubSubService(pb_grpc.PubSubServicer):
    """The servicer: topics and schemas from the emulator, events from its bus."""

    def __init__(
        self,
        bus: EventBus,
        authenticate: Authenticator,
        topic_schema: TopicCheck,
        tenant: str,
        keepalive: float,
    ) -> None:
        self.bus = bus
        self.authenticate = authenticate
        self.topic_schema = topic_schema
        self.tenant = tenant
        self.keepalive = keepalive
        self.faults = PubSubFaults()
        self._streams: list[_Stream] = []
        self._log: list[SubscribeRecord] = []

    # ------------------------------------------------------------------ helpers

    def _check_auth(self, context: grpc.ServicerContext) -> None:
        metadata = {key: value for key, value in context.invocation_metadata()}
        token = str(metadata.get("accesstoken", ""))
        instance = str(metadata.get("instanceurl", ""))
        tenant = str(metadata.get("tenantid", ""))
        if not token or not self.authenticate(token, instance, tenant):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "Session expired or invalid")

    def _record(self, topic: str, preset: str, outcome: str) -> None:
        with self.bus.cond:
            self._log.append(SubscribeRecord(topic, preset, outcome))

    def subscribe_log(self) -> list[SubscribeRecord]:
        with self.bus.cond:
            return list(self._log)

    def open_streams(self) -> int:
        with self.bus.cond:
            return len(self._streams)

    def end_streams(self, code: grpc.StatusCode, message: str) -> int:
        """Fail every open Subscribe call with ``code``; return how many."""
        with self.bus.cond:
            for stream in self._streams:
                stream.abort = (code, message)
            self.bus.cond.notify_all()
            return len(self._streams)

    # ------------------------------------------------------------------ RPCs

    def GetTopic(self, request: pb.TopicRequest, context: grpc.ServicerContext) -> pb.TopicInfo:
        self._check_auth(context)
        schema_id = self.topic_schema(request.topic_name)
        if schema_id is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"topic not found: {request.topic_name}")
        return pb.TopicInfo(
            topic_name=request.topic_name,
            tenant_guid=self.tenant,
            can_publish=request.topic_name.startswith("/event/"),
            can_subscribe=True,
            schema_id=schema_id,
            rpc_id=_rpc_id(),
        )

    def GetSchema(self, request: pb.SchemaRequest, context: grpc.ServicerContext) -> pb.SchemaInfo:
        self._check_auth(context)
        text = self.bus.schema_json(request.schema_id)
        if text is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"schema not found: {request.schema_id}")
        return pb.SchemaInfo(schema_json=text, schema_id=request.schema_id, rpc_id=_rpc_id())

    def Publish(
        self, request: pb.PublishRequest, context: grpc.ServicerContext
    ) -> pb.PublishResponse:
        self._check_auth(context)
        if not request.topic_name.startswith("/event/"):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "only platform events are published")
        results = []
        for event in request.events:
            try:
                topic = request.topic_name
                stored = self.bus.publish_encoded(topic, event.schema_id, event.payload)
            except KeyError:
                results.append(
                    pb.PublishResult(
                        error=pb.Error(code=pb.PUBLISH, msg="unknown schema id"),
                        correlation_key=event.id,
                    )
                )
                continue
            results.append(
                pb.PublishResult(
                    replay_id=self.bus.encode_replay(stored.seq), correlation_key=event.id
                )
            )
        return pb.PublishResponse(results=results, rpc_id=_rpc_id())

    def PublishStream(
        self, request_iterator: Iterator[pb.PublishRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.PublishResponse]:
        for request in request_iterator:
            yield self.Publish(request, context)

    def Subscribe(
        self, request_iterator: Iterator[pb.FetchRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.FetchResponse]:
        self._check_auth(context)
        first = next(request_iterator, None)
        if first is None:
            return
        topic = first.topic_name
        preset = pb.ReplayPreset.Name(first.replay_preset)
        if self.topic_schema(topic) is None:
            self._record(topic, preset, "topic not found")
            context.abort(grpc.StatusCode.NOT_FOUND, f"topic not found: {topic}")
        with self.bus.cond:
            unavailable = self.faults.unavailable > 0
            self.faults.unavailable = max(0, self.faults.unavailable - 1)
        if unavailable:
            self._record(topic, preset, "unavailable")
            context.abort(grpc.StatusCode.UNAVAILABLE, "service unavailable")
        try:
            position = self._start(first)
        except ReplayError as exc:
            self._record(topic, preset, f"replay {exc.kind}")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        stream = _Stream(topic, position, credits=_capped(first.num_requested))
        with self.bus.cond:
            self._streams.append(stream)
        self._record(topic, preset, "subscribed")
        reader = threading.Thread(
            target=self._read_requests,
            args=(request_iterator, stream),
            name="pubsub-requests",
            daemon=True,
        )
        reader.start()
        try:
            yield from self._serve(stream, context)
        finally:
            with self.bus.cond:
                stream.ended = True
                if stream in self._streams:
                    self._streams.remove(stream)

    def _start(self, first: pb.FetchRequest) -> int:
        if first.replay_preset == pb.CUSTOM:
            with self.bus.cond:
                if self.faults.invalid_replay > 0:
                    self.faults.invalid_replay -= 1
                    raise ReplayError("corrupted", "The Replay ID validation failed")
            return self.bus.decode_replay(first.replay_id)
        if first.replay_preset == pb.EARLIEST:
            return self.bus.earliest_seq()
        return self.bus.latest_seq(first.topic_name)

    def _read_requests(self, requests: Iterator[pb.FetchRequest], stream: _Stream) -> None:
        try:
            for request in requests:
                with self.bus.cond:
                    stream.credits += _capped(request.num_requested)
                    self.bus.cond.notify_all()
        except Exception:  # the call ended (cancelled, or the client went away)
            pass
        with self.bus.cond:
            stream.ended = True
            self.bus.cond.notify_all()

    def _serve(self, stream: _Stream, context: grpc.ServicerContext) -> Iterator[pb.FetchResponse]:
        last_sent = time.monotonic()
        while context.is_active():
            with self.bus.cond:
                deadline = last_sent + self.keepalive
                while True:
                    if stream.abort is not None or stream.ended:
                        break
                    if stream.credits > 0 and self.bus.after(stream.topic, stream.position, 1):
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.bus.cond.wait(min(left, 0.5))
                    if not context.is_active():
                        return
                abort = stream.abort
                if stream.ended and abort is None:
                    return
                events = []
                if abort is None and stream.credits > 0:
                    events = self.bus.after(
                        stream.topic, stream.position, min(stream.credits, MAX_PER_REQUEST)
                    )
                    if events:
                        stream.position = events[-1].seq
                        stream.credits -= len(events)
                        stream.sent += len(events)
                # A keepalive names the topic's tip only when this stream has nothing
                # waiting for it; otherwise storing it would skip the waiting events.
                backlog = events or self.bus.after(stream.topic, stream.position, 1)
                latest = self.bus.encode_replay(
                    stream.position if backlog else self.bus.latest_seq(stream.topic)
                )
                pending = stream.credits
                delay = self.faults.delay_seconds
            if abort is not None:
                context.abort(abort[0], abort[1])
            if delay > 0:
                time.sleep(delay)
            if events:
                consumer = [
                    pb.ConsumerEvent(
                        event=pb.ProducerEvent(
                            id=event.event_id,
                            schema_id=event.schema_id,
                            payload=self.bus.payload(event),
                        ),
                        replay_id=self.bus.encode_replay(event.seq),
                    )
                    for event in events
                ]
                response = pb.FetchResponse(
                    events=consumer,
                    latest_replay_id=latest,
                    rpc_id=_rpc_id(),
                    pending_num_requested=pending,
                )
            elif time.monotonic() - last_sent >= self.keepalive:
                response = pb.FetchResponse(
                    latest_replay_id=latest, rpc_id=_rpc_id(), pending_num_requested=pending
                )
            else:
                continue
            last_sent = time.monotonic()
            yield response


def _capped(requested: int) -> int:
    return max(0, min(int(requested), MAX_PER_REQUEST))


def _rpc_id() -> str:
    return f"{time.time_ns():x}"


class PubSubServer:
    """The gRPC server of :class:`PubSubService` on its own TLS port."""

    def __init__(self, service: PubSubService) -> None:
        self.service = service
        self._server: grpc.Server | None = None
        self.address = ""

    def start(self, host: str, port: int, cert_file: Path, key_file: Path) -> str:
        """Listen on ``host:port`` (0: any free) with the given certificate; ``host:port``."""
        server = grpc.server(
            ThreadPoolExecutor(max_workers=64, thread_name_prefix="pubsub"),
            options=[("grpc.so_reuseport", 0)],
        )
        pb_grpc.add_PubSubServicer_to_server(self.service, server)
        credentials = grpc.ssl_server_credentials([(key_file.read_bytes(), cert_file.read_bytes())])
        bound = server.add_secure_port(f"{host}:{port}", credentials)
        if bound == 0:
            raise OSError(f"cannot listen on {host}:{port} for the Pub/Sub API")
        server.start()
        self._server = server
        self.address = f"{host}:{bound}"
        return self.address

    def stop(self) -> None:
        if self._server is not None:
            self.service.end_streams(grpc.StatusCode.UNAVAILABLE, "server shutting down")
            self._server.stop(grace=1).wait(5)
            self._server = None


def describe(record: SubscribeRecord) -> dict[str, Any]:
    return {"topic": record.topic, "preset": record.preset, "outcome": record.outcome}


__all__ = ["ALL_CHANGES", "PubSubServer", "PubSubService", "describe", "topic_entity"]
