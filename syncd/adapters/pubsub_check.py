"""The Pub/Sub API's pre-flight: ``GetTopic`` and ``GetSchema``, each called once.

The daemon's subscriber (:mod:`syncd.adapters.pubsub`) retries every failure
with backoff, which is right for a stream that must stay open and wrong for
``syncd check-config --connect``: a wrong port would only ever show as
reconnects. Here each call is made once, with a deadline, and a failure is
sorted into what an operator fixes (:class:`ProbeFailure`'s ``kind``):

* ``unreachable`` -- no TCP connection (wrong host or port, DNS, firewall);
* ``tls`` -- the handshake failed (a certificate not signed by a trusted CA,
  a name mismatch, or something other than a gRPC server on that port);
* ``refused`` -- the server refused the session (``UNAUTHENTICATED``);
* ``topic`` -- no such topic (object not selected for Change Data Capture);
* ``permission`` -- the user may not subscribe to the topic;
* ``schema`` -- the topic's schema cannot be fetched or is not Avro;
* ``other`` -- anything else, with gRPC's status name.

Certificates are trusted exactly as the subscriber trusts them: only
``salesforce.ca_bundle`` when it is set, otherwise gRPC's own root store. No
``requests``-style environment variable (``REQUESTS_CA_BUNDLE``) is read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import fastavro
import grpc

from syncd.adapters.pubsub import PubSubError, org_id_of
from syncd.pubsub import pubsub_api_pb2 as pb
from syncd.pubsub import pubsub_api_pb2_grpc as pb_grpc

FailureKind = Literal["unreachable", "tls", "refused", "topic", "permission", "schema", "other"]
#: Failures of the endpoint or the session: every topic would fail the same way.
CONNECTION_KINDS: frozenset[str] = frozenset({"unreachable", "tls", "refused"})
#: Words of gRPC's transport errors that mean the TLS handshake failed.
_TLS_WORDS = ("handshake", "certificate", "ssl", "alpn", "peer name")
_ADDRESS_PREFIX = re.compile(r"^(?:ipv4|ipv6|unix):\S*?: ")


class ProbeFailure(Exception):
    """One failed pre-flight call: what kind of failure, and gRPC's reason, shortened."""

    def __init__(self, kind: FailureKind, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind: FailureKind = kind
        self.reason = reason


@dataclass(frozen=True)
class TopicProbe:
    """What the pre-flight learned of a topic."""

    topic: str
    schema_id: str
    fields: int


def short_reason(detail: str) -> str:
    """gRPC's transport detail without its wrapping (``failed to connect ...; last error: ...``)."""
    text = " ".join(detail.split())
    if "last error:" in text:
        text = text.split("last error:", 1)[1].strip()
    text = text.removeprefix("UNKNOWN: ")
    text = _ADDRESS_PREFIX.sub("", text)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        after = text.split("CERTIFICATE_VERIFY_FAILED", 1)[1].strip(": ")
        text = f"certificate verify failed: {after}" if after else "certificate verify failed"
    return text.removesuffix(": OK").strip() or "no detail"


def classify(code: grpc.StatusCode | None, detail: str, call: str) -> ProbeFailure:
    """The :class:`ProbeFailure` of a failed ``call`` (``GetTopic`` or ``GetSchema``)."""
    reason = short_reason(detail)
    name = code.name if code is not None else "UNKNOWN"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        if any(word in detail.lower() for word in _TLS_WORDS):
            return ProbeFailure("tls", reason)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            reason = f"no answer within the deadline ({reason})"
        return ProbeFailure("unreachable", reason)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return ProbeFailure("refused", f"{name}: {reason}")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return ProbeFailure("permission", f"{name}: {reason}")
    if code == grpc.StatusCode.NOT_FOUND:
        return ProbeFailure("topic" if call == "GetTopic" else "schema", f"{name}: {reason}")
    return ProbeFailure("other", f"{call}: {name}: {reason}")


class PubSubProbe:
    """One TLS channel to the Pub/Sub API carrying a Salesforce session; see the module."""

    def __init__(
        self,
        address: str,
        session: tuple[str, str],
        *,
        ca_bundle: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        session_id, instance = session
        try:
            tenant = org_id_of(session_id)
        except PubSubError as exc:
            raise ProbeFailure("refused", str(exc)) from None
        self.address = address
        self.timeout = timeout
        self._metadata = (
            ("accesstoken", session_id),
            ("instanceurl", instance),
            ("tenantid", tenant),
        )
        root = Path(ca_bundle).read_bytes() if ca_bundle else None
        self._channel = grpc.secure_channel(
            address, grpc.ssl_channel_credentials(root_certificates=root)
        )
        self._stub = pb_grpc.PubSubStub(self._channel)

    def topic(self, name: str) -> TopicProbe:
        """``GetTopic`` then ``GetSchema`` of ``name``; :class:`ProbeFailure` when either fails."""
        try:
            info = self._stub.GetTopic(
                pb.TopicRequest(topic_name=name), metadata=self._metadata, timeout=self.timeout
            )
        except grpc.RpcError as exc:
            raise _failure(exc, "GetTopic") from None
        if not info.can_subscribe:
            raise ProbeFailure("permission", "GetTopic: can_subscribe is false")
        try:
            schema = self._stub.GetSchema(
                pb.SchemaRequest(schema_id=info.schema_id),
                metadata=self._metadata,
                timeout=self.timeout,
            )
        except grpc.RpcError as exc:
            raise _failure(exc, "GetSchema") from None
        return TopicProbe(name, info.schema_id, _field_count(info.schema_id, schema.schema_json))

    def close(self) -> None:
        self._channel.close()


def _failure(exc: grpc.RpcError, call: str) -> ProbeFailure:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    return classify(code, detail or "", call)


def _field_count(schema_id: str, schema_json: str) -> int:
    """Top-level fields of an Avro record schema, parsed as the subscriber parses it."""
    try:
        parsed = json.loads(schema_json)
        fastavro.parse_schema(parsed)
    except (ValueError, fastavro.schema.SchemaParseException) as exc:
        raise ProbeFailure("schema", f"schema {schema_id} is not valid Avro: {exc}") from None
    fields = parsed.get("fields") if isinstance(parsed, dict) else None
    if not isinstance(fields, list):
        raise ProbeFailure("schema", f"schema {schema_id} is not an Avro record")
    return len(fields)
