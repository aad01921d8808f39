"""``check-config --connect`` for streamed syncs: reach the Pub/Sub API as the daemon will.

With the session of the real Salesforce login, each enabled sync in stream
mode gets ``GetTopic`` and ``GetSchema`` on ``salesforce.pubsub_url``, over
TLS trusted as the daemon trusts it. A wrong port, an untrusted certificate
or a refused session would otherwise show only as a daemon reconnecting
forever, and an unknown topic as a stream that never brings anything; here
each is one line saying what to change. Endpoint and session failures are
the same for every topic, so they are reported once.
"""

from __future__ import annotations

from collections.abc import Callable

from syncd.adapters.pubsub_check import CONNECTION_KINDS, ProbeFailure, PubSubProbe
from syncd.config.models import Config, SalesforceConfig, SyncConfig
from syncd.services.connect_check import Check

#: The Salesforce session a check uses: (session id, instance URL).
Session = Callable[[], tuple[str, str]]


def endpoint_problem(failure: ProbeFailure, salesforce: SalesforceConfig) -> str:
    """One line for a failure of the endpoint or the session, with what to change."""
    address = salesforce.pubsub_url
    if failure.kind == "unreachable":
        return (
            f"pubsub: FAILED: cannot connect to {address}: {failure.reason}; check "
            "salesforce.pubsub_url (host:port of the Pub/Sub API, "
            "api.pubsub.salesforce.com:7443 unless your org has its own) and that this "
            "host may reach it"
        )
    if failure.kind == "tls":
        trusted = (
            f"the CAs in salesforce.ca_bundle ({salesforce.ca_bundle})"
            if salesforce.ca_bundle
            else "the system's CAs"
        )
        return (
            f"pubsub: FAILED: TLS with {address} failed: {failure.reason}; its certificate "
            f"must be signed by {trusted}: set salesforce.ca_bundle to a file with the CA "
            "that signed it, or check that salesforce.pubsub_url is the Pub/Sub API"
        )
    return (
        f"pubsub: FAILED: {address} refused the Salesforce session ({failure.reason}); "
        "salesforce.pubsub_url must be the Pub/Sub API of the org syncd logs in to, and "
        "the integration user needs API Enabled"
    )


def change_event_object(topic: str, default: str) -> str:
    """The object a Change Data Capture topic carries: ``/data/Foo__ChangeEvent`` -> ``Foo__c``.

    ``/data/ChangeEvents`` carries every selected object; the sync's is ``default``.
    """
    name = topic.removeprefix("/data/").removesuffix("ChangeEvent")
    if not name or topic == "/data/ChangeEvents":
        return default
    return f"{name}c" if name.endswith("__") else name


def topic_problem(failure: ProbeFailure, sync: SyncConfig) -> str:
    """One line for a failure of one sync's topic or schema, with what to change."""
    prefix = f"pubsub: sync {sync.name}: FAILED:"
    topic = sync.topic
    if failure.kind == "topic":
        if topic.startswith("/event/"):
            fix = "define that platform event in Setup, or fix source.topic"
        else:
            fix = (
                f"select {change_event_object(topic, sync.object)} in Setup, Change Data "
                "Capture, or fix source.topic (default /data/<Object>ChangeEvent)"
            )
        return f"{prefix} topic {topic} not found ({failure.reason}); {fix}"
    if failure.kind == "permission":
        return (
            f"{prefix} may not subscribe to {topic} ({failure.reason}); give the "
            f"integration user Read (or View All) on {sync.object}"
        )
    if failure.kind == "schema":
        return f"{prefix} the schema of {topic} cannot be read: {failure.reason}"
    return f"{prefix} {topic}: {failure.reason}"


def check_streams(config: Config, session: Session) -> list[Check]:
    """``GetTopic`` and ``GetSchema`` of every enabled streamed sync's topic.

    The first line is the endpoint's; when the endpoint or the session failed,
    it is the only one.
    """
    syncs = [sync for sync in config.syncs if sync.enabled and sync.streamed]
    if not syncs:
        return []
    salesforce = config.salesforce
    try:
        probe = PubSubProbe(
            salesforce.pubsub_url,
            session(),
            ca_bundle=salesforce.ca_bundle,
            timeout=salesforce.timeout,
        )
    except ProbeFailure as failure:
        return [Check(False, endpoint_problem(failure, salesforce))]
    lines: list[Check] = []
    try:
        for sync in syncs:
            try:
                found = probe.topic(sync.topic)
            except ProbeFailure as failure:
                if failure.kind in CONNECTION_KINDS:
                    return [Check(False, endpoint_problem(failure, salesforce))]
                lines.append(Check(False, topic_problem(failure, sync)))
                continue
            lines.append(
                Check(
                    True,
                    f"pubsub: sync {sync.name}: ok (topic {found.topic}, schema "
                    f"{found.schema_id} with {found.fields} fields)",
                )
            )
    finally:
        probe.close()
    reached = f"pubsub: ok ({salesforce.pubsub_url}: TLS and the Salesforce session accepted)"
    return [Check(True, reached), *lines]
