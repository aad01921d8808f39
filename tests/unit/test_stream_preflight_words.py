"""How the Pub/Sub pre-flight sorts gRPC's failures, and how check-config sums a sync up."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from syncd.adapters.pubsub_check import classify, short_reason
from syncd.config.models import SyncConfig
from syncd.entrypoints.cli_config import intake_summary
from syncd.services.stream_check import change_event_object

#: Details as grpcio 1.85 reports them for a closed port, an untrusted certificate,
#: an unknown host and a port that speaks TLS but not HTTP/2.
REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
    "Failed to connect to remote host: Connection refused"
)
UNTRUSTED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:34413: "
    "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
    "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer "
    "certificate: OK"
)
UNKNOWN_HOST = (
    "errors resolving nonexistent.invalid:7443: [field:hostname lookup error:address "
    "lookup failed for nonexistent.invalid:7443: Domain name not found]"
)
NOT_GRPC = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:36783: "
    "Cannot check peer: missing selected ALPN property."
)
Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("code", "detail", "call", "kind", "reason"),
    [
        (Code.UNAVAILABLE, REFUSED, "GetTopic", "unreachable", "Failed to connect to remote "
         "host: Connection refused"),
        (Code.UNAVAILABLE, UNTRUSTED, "GetTopic", "tls", "certificate verify failed: unable "
         "to get local issuer certificate"),
        (Code.UNAVAILABLE, UNKNOWN_HOST, "GetTopic", "unreachable", UNKNOWN_HOST),
        (Code.UNAVAILABLE, NOT_GRPC, "GetTopic", "tls", "Cannot check peer: missing selected "
         "ALPN property."),
        (Code.DEADLINE_EXCEEDED, "Deadline Exceeded", "GetTopic", "unreachable",
         "no answer within the deadline (Deadline Exceeded)"),
        (Code.UNAUTHENTICATED, "Session expired or invalid", "GetTopic", "refused",
         "UNAUTHENTICATED: Session expired or invalid"),
        (Code.PERMISSION_DENIED, "no access", "GetTopic", "permission",
         "PERMISSION_DENIED: no access"),
        (Code.NOT_FOUND, "topic not found: /data/X", "GetTopic", "topic",
         "NOT_FOUND: topic not found: /data/X"),
        (Code.NOT_FOUND, "schema not found: 42", "GetSchema", "schema",
         "NOT_FOUND: schema not found: 42"),
        (Code.INTERNAL, "boom", "GetSchema", "other", "GetSchema: INTERNAL: boom"),
    ],
)  # fmt: skip
def test_classify(code: Code, detail: str, call: str, kind: str, reason: str) -> None:
    """Each status and transport detail becomes the kind an operator can act on."""
    failure = classify(code, detail, call)
    assert (failure.kind, failure.reason) == (kind, reason)


def test_short_reason_without_wrapping() -> None:
    assert short_reason("") == "no detail"
    assert short_reason("plain\nreason") == "plain reason"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("/data/LeadChangeEvent", "Lead"),
        ("/data/Invoice__ChangeEvent", "Invoice__c"),
        ("/data/ChangeEvents", "Lead"),
    ],
)
def test_change_event_object(topic: str, expected: str) -> None:
    assert change_event_object(topic, "Lead") == expected


def sync(**values: Any) -> SyncConfig:
    return SyncConfig.model_validate(
        {"name": "web", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}, **values}
    )


class TestIntakeSummary:
    def test_stream_names_topic_and_reconcile(self) -> None:
        """A streamed sync's schedule is not how often it polls: the summary says so."""
        streamed = sync(schedule={"every": "10s"}, source={"mode": "stream"})
        assert intake_summary(streamed) == "stream /data/LeadChangeEvent (reconcile every 10m)"

    def test_stream_with_own_topic(self) -> None:
        streamed = sync(source={"mode": "stream", "topic": "/event/Lead_Ready__e"})
        assert intake_summary(streamed).startswith("stream /event/Lead_Ready__e (")

    def test_poll(self) -> None:
        assert intake_summary(sync(schedule={"every": "10s"})) == "poll every 10s"
        cron = sync(schedule={"cron": "*/5 * * * *", "timezone": "Europe/Paris"})
        assert intake_summary(cron) == "poll cron '*/5 * * * *' (Europe/Paris)"
