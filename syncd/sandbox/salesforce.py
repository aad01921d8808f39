"""A Salesforce org on loopback, for tests, the demo and benchmarks.

It answers what simple-salesforce 1.12 calls, the way Salesforce does:

* ``POST /services/Soap/u/{version}``: SOAP ``login`` with username and
  password + security token; a SOAP fault ``INVALID_LOGIN`` (HTTP 500) otherwise.
* ``POST /services/oauth2/token``: grant types ``password``,
  ``client_credentials`` (HTTP Basic or form client id/secret) and
  ``urn:ietf:params:oauth:grant-type:jwt-bearer``. A JWT must have ``iss`` =
  the consumer key, ``sub`` = the username and an unexpired ``exp``; its
  signature is verified only when the emulator was given ``jwt_public_key``
  (a PEM public key or certificate); without one any well-formed JWT passes.
* ``GET /services/data/vXX.X/query`` and ``queryAll`` (``?q=``), paged with
  ``nextRecordsUrl`` (``.../query/<locator>-<offset>``) and the
  ``Sforce-Query-Options: batchSize=N`` header (clamped to 200..2000). A query
  is evaluated and sorted once; its result is kept per locator and pages are
  slices of it.
* ``GET /services/data/vXX.X/limits``: ``DailyApiRequests`` (``Max``, ``Remaining``).
* A minimal Bulk API 2.0 query (:mod:`syncd.sandbox.sf_bulk`): ``POST jobs/query``,
  ``GET``/``DELETE jobs/query/{id}``, ``GET jobs/query/{id}/results`` (CSV pages
  chained by ``Sforce-Locator``).
* ``GET``/``PATCH /services/data/vXX.X/sobjects/{type}/{id}``, and
  ``GET .../sobjects/{type}/describe`` (name, type, length, updateable of every field;
  ``referenceTo`` and ``relationshipName`` of a lookup).
* ``PATCH /services/data/vXX.X/composite/sobjects``: the sObject Collections
  update (``allOrNone`` false, at most 200 records), answered per record in
  request order; ``POST`` the same for creates (a call Task per call, say:
  a Task is its own record, and creating one changes neither the Lead it names
  nor its ``SystemModstamp``). Updates are checked as Salesforce checks them: unknown fields
  (``INVALID_FIELD``), read-only ones (``INVALID_FIELD_FOR_INSERT_UPDATE``),
  values too long (``STRING_TOO_LONG``) or of the wrong type
  (``INVALID_TYPE_ON_FIELD_IN_RECORD``), deleted records (``ENTITY_IS_DELETED``),
  locked rows (``UNABLE_TO_LOCK_ROW``, injected).

Custom fields (``Lead.SimZ_Status__c:string:255``) are declared at start
(``custom_fields``) or through the control API, with their type, length and
whether the integration user may update them.

Every REST answer carries ``Sforce-Limit-Info: api-usage=N/M`` and each REST
call counts one. A missing, unknown or expired session gets 401
``INVALID_SESSION_ID``.

The Pub/Sub API (gRPC over TLS, same CA) is served on a second port
(:mod:`syncd.sandbox.sf_pubsub`): every record created, updated, deleted or
undeleted here publishes its change event (:mod:`syncd.sandbox.sf_events`).

The control API under ``/__sandbox/`` (JSON, no authentication) mirrors the
Python methods: ``POST records``, ``POST update``, ``POST delete``,
``POST undelete``, ``POST expire-sessions``, ``POST inject``, ``POST``/``GET api-usage``,
``GET query-log``, ``GET records/{type}/{id}``, ``GET login-attempts``,
``POST fields``, ``POST lock-rows``, ``GET write-log``, ``GET tasks``,
``POST fail-creates``, ``POST lose-create-answers``, and for the Pub/Sub API
``POST pubsub/fault``, ``POST pubsub/gap``, ``POST pubsub/publish``,
``GET pubsub/status``.

Injected faults (``inject(kind, count, **params)``) hit the next REST calls:
``REQUEST_LIMIT_EXCEEDED`` answers the daily limit (``TotalRequests``; set the
usage with ``set_api_usage`` to match) or, with ``limit="concurrent"``, the
short-lived concurrent-request limit (``ConcurrentPerOrgLongTxn``);
``next_records_url`` answers normally but with ``nextRecordsUrl`` replaced by
the ``url`` parameter (a hostile or broken org).

The parts, one module each: HTTPS and where a path goes (:mod:`.sf_http`),
logins and sessions (:mod:`.sf_auth`), the REST API (:mod:`.sf_rest`, with
:mod:`.sf_rest_query`, :mod:`.sf_rest_bulk` and :mod:`.sf_rest_records`),
injected faults (:mod:`.sf_faults`, :mod:`.sf_pubsub_faults`), record writes
and their change events (:mod:`.sf_writes`) and the control API
(:mod:`.sf_control`). This class owns them and is what callers use.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from syncd.sandbox.sf_auth import ORG_ID, USER_ID, Credentials, Logins, Sessions
from syncd.sandbox.sf_bulk import BulkQueries
from syncd.sandbox.sf_certs import write_certificates
from syncd.sandbox.sf_control import control
from syncd.sandbox.sf_events import ALL_CHANGES, CHANGE_TYPES, EventBus, topic_entity
from syncd.sandbox.sf_faults import (
    CONCURRENT_LIMIT_EXCEEDED,
    FAULT_KINDS,
    INVALID_SESSION,
    LIMIT_EXCEEDED,
    FaultQueue,
)
from syncd.sandbox.sf_http import TLSServer, https_server
from syncd.sandbox.sf_pubsub import PubSubServer, PubSubService, describe
from syncd.sandbox.sf_pubsub_faults import PUBSUB_FAULTS, pubsub_fault
from syncd.sandbox.sf_reply import Reply
from syncd.sandbox.sf_rest import ApiUsage, RestApi
from syncd.sandbox.sf_rest_bulk import BulkApi
from syncd.sandbox.sf_rest_query import MAX_CURSORS, QueryApi, QueryLog
from syncd.sandbox.sf_rest_records import COLLECTION_LIMIT, RecordsApi
from syncd.sandbox.sf_store import DeclaredField, RecordStore, parse_field_spec
from syncd.sandbox.sf_writes import RecordWriter, public_record

__all__ = [
    "COLLECTION_LIMIT",
    "CONCURRENT_LIMIT_EXCEEDED",
    "FAULT_KINDS",
    "INVALID_SESSION",
    "KEEPALIVE_SECONDS",
    "LIMIT_EXCEEDED",
    "MAX_CURSORS",
    "ORG_ID",
    "PUBSUB_FAULTS",
    "USER_ID",
    "SalesforceEmulator",
]

#: Seconds between keepalives of an idle stream (Salesforce: at most 270).
KEEPALIVE_SECONDS = 270.0


class SalesforceEmulator:
    """An HTTPS Salesforce org in a background thread; see the module docstring."""

    def __init__(
        self,
        records: Iterable[Mapping[str, Any]] = (),
        cert_dir: Path | None = None,
        username: str = "sandbox@example.com",
        password: str = "sandbox-password",
        security_token: str = "sandbox-token",
        consumer_key: str = "sandbox-consumer-key",
        consumer_secret: str = "sandbox-consumer-secret",
        jwt_public_key: str | bytes | None = None,
        api_max: int = 15000,
        custom_fields: Iterable[DeclaredField | str] = (),
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        self.username = username
        self.password = password
        self.security_token = security_token
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.jwt_public_key = jwt_public_key
        self.store = RecordStore()
        for spec in custom_fields:
            self.declare_field(spec)
        self.store.add(records)
        self.org_id = ""
        self.set_org(ORG_ID, is_sandbox=False)
        self._own_cert_dir = cert_dir is None
        self.cert_dir = Path(tempfile.mkdtemp(prefix="syncd-sf-")) if cert_dir is None else cert_dir
        self.bulk = BulkQueries()
        self.bus = EventBus()
        self._wire(api_max)
        self._server: TLSServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.ca_file = self.cert_dir / "ca.pem"
        self.pubsub = PubSubService(
            self.bus, self._pubsub_auth, self._topic_schema, ORG_ID, keepalive
        )
        self._pubsub_server: PubSubServer | None = None
        self.pubsub_address = ""

    def _wire(self, api_max: int) -> None:
        """The parts that answer HTTP, each with the state it owns."""
        credentials = Credentials(
            self.username,
            self.password,
            self.security_token,
            self.consumer_key,
            self.consumer_secret,
            self.jwt_public_key,
        )
        self._sessions = Sessions()
        self._logins = Logins(credentials, self._sessions)
        self._faults = FaultQueue()
        self._usage = ApiUsage(api_max)
        self._query_log = QueryLog()
        self._writer = RecordWriter(self.store, self.bus)
        self._records = RecordsApi(self.store, self._writer)
        self._rest = RestApi(
            self._sessions,
            self._faults,
            self._usage,
            QueryApi(self.store, self._query_log),
            BulkApi(self.store, self.bulk, self._query_log),
            self._records,
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0, pubsub_port: int = 0) -> str:
        """Serve HTTPS on ``host:port`` and the Pub/Sub API on ``host:pubsub_port``.

        0 picks a free port; returns the base URL (``pubsub_address`` has the other).
        """
        files = write_certificates(self.cert_dir)
        pubsub = PubSubServer(self.pubsub)
        self.pubsub_address = pubsub.start(host, pubsub_port, files.cert_file, files.key_file)
        self._pubsub_server = pubsub
        self.ca_file = files.ca_file
        server = https_server(self, host, port, files.cert_file, files.key_file)
        self._server = server
        self.url = f"https://{host}:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="salesforce-emulator",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._pubsub_server is not None:
            self._pubsub_server.stop()
            self._pubsub_server = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._own_cert_dir:
            shutil.rmtree(self.cert_dir, ignore_errors=True)

    def __enter__(self) -> SalesforceEmulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP

    def control(self, method: str, path: str, body: bytes) -> Reply:
        """A call of the control API under ``/__sandbox/`` (:mod:`.sf_control`)."""
        return control(self, method, path, body)

    def soap_login(self, body: bytes, version: str) -> Reply:
        return self._logins.soap_login(body, version, self.url)

    def oauth_token(self, body: bytes, headers: Mapping[str, str]) -> Reply:
        return self._logins.oauth_token(body, headers, self.url)

    def rest(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        """One REST call: count it, authenticate, apply injected faults, then answer."""
        return self._rest.call(method, path, query, headers, body)

    # ------------------------------------------------------------------ records

    def add_records(
        self, records: Iterable[Mapping[str, Any]], *, publish: bool = True
    ) -> list[str]:
        """Insert records (or update those whose Id exists); each names its ``sobject``.

        Publishes a CREATE (or UPDATE) change event per record, one transaction;
        ``publish=False`` publishes none (a record that comes to match behind the
        watermark: give it an old ``SystemModstamp``).
        """
        return self._writer.add(records, publish=publish)

    def update_record(
        self,
        sobject: str,
        record_id: str,
        fields: Mapping[str, Any],
        system_modstamp: datetime | str | None = None,
        *,
        publish: bool = True,
    ) -> dict[str, Any]:
        """Change a record as a user would; ``system_modstamp`` back-dates it (a late commit).

        Publishes an UPDATE change event with the changed fields, unless ``publish`` is false.
        """
        return self._writer.update(sobject, record_id, fields, system_modstamp, publish=publish)

    def delete_record(self, sobject: str, record_id: str) -> dict[str, Any]:
        """Move a record to the recycle bin (queries no longer see it, updates get
        ENTITY_IS_DELETED); publishes DELETE."""
        return self._writer.set_deleted(sobject, record_id, True, "DELETE")

    def undelete_record(self, sobject: str, record_id: str) -> dict[str, Any]:
        """Bring a deleted record back; publishes UNDELETE with its fields."""
        return self._writer.set_deleted(sobject, record_id, False, "UNDELETE")

    def set_org(self, org_id: str | None = None, is_sandbox: bool | None = None) -> dict[str, Any]:
        """Answer as another org (a sandbox refresh gets a new Id) and/or as a sandbox.

        ``SELECT Id, IsSandbox FROM Organization`` shows the change; no change event.
        """
        with self.store.lock:
            current = self.store.get("Organization", self.org_id) if self.org_id else None
            sandbox = bool(current["IsSandbox"]) if current is not None else False
            if is_sandbox is not None:
                sandbox = is_sandbox
            new_id = org_id or self.org_id
            if current is not None and new_id == self.org_id:
                self.store.update("Organization", new_id, {"IsSandbox": sandbox})
                return {"id": new_id, "is_sandbox": sandbox}
            if current is not None:
                self.store.delete("Organization", self.org_id)
            org = {"sobject": "Organization", "Id": new_id, "Name": "Sandbox Emulator Org"}
            self.store.add([{**org, "IsSandbox": sandbox, "OrganizationType": "Enterprise"}])
            self.org_id = new_id
            return {"id": new_id, "is_sandbox": sandbox}

    def get_record(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        record = self.store.get(sobject, record_id)
        return None if record is None else public_record(record)

    def declare_field(self, spec: DeclaredField | str) -> DeclaredField:
        """Add a field with describe metadata: ``Lead.SimZ_Status__c:string:255`` or a spec."""
        field = parse_field_spec(spec) if isinstance(spec, str) else spec
        self.store.declare_field(field)
        return field

    def lock_rows(self, ids: Iterable[str] = (), count: int = 0) -> None:
        """Answer UNABLE_TO_LOCK_ROW once for each of ``ids`` and for the next ``count``
        records of sObject Collections updates."""
        self._records.lock_rows(ids, count)

    def write_log(self) -> list[dict[str, Any]]:
        """Every sObject Collections call: time, method, records, succeeded."""
        return self._records.write_log()

    def fail_creates(
        self, count: int = 1, code: str = "UNABLE_TO_LOCK_ROW", message: str = ""
    ) -> None:
        """Refuse the next ``count`` records of sObject Collections creates with ``code``."""
        self._records.fail_creates(count, code, message)

    def lose_create_answers(self, count: int = 1) -> None:
        """The next ``count`` sObject Collections creates store their records, then close
        the connection without an answer (the client cannot tell what happened)."""
        self._records.lose_create_answers(count)

    def tasks(self) -> list[dict[str, Any]]:
        """Every Task record, oldest first, as the control API shows records."""
        rows = self.store.snapshot("Task")
        return [
            public_record(row) for row in sorted(rows, key=lambda r: (r["CreatedDate"], r["Id"]))
        ]

    # ------------------------------------------------------------------ Pub/Sub control

    def publish_gap(self, sobject: str, record_ids: list[str], change_type: str) -> None:
        """Publish a header-only gap event (GAP_CREATE, ..., GAP_OVERFLOW) for these Ids."""
        if not change_type.startswith("GAP_") or change_type not in CHANGE_TYPES:
            raise ValueError(f"{change_type!r} is not a gap change type")
        canonical = self.store.object_name(sobject)
        if canonical is None:
            raise ValueError(f"unknown object {sobject!r}")
        with self.store.lock:
            fields = self.store.fields(canonical)
            self.bus.publish_change(canonical, fields, change_type, [(i, {}) for i in record_ids])

    def publish_platform_event(self, topic: str, fields: Mapping[str, Any]) -> None:
        """Publish a platform event (``/event/<Name>__e``) with a ``RecordId__c``."""
        if not topic.startswith("/event/") or not topic.endswith("__e"):
            raise ValueError(f"{topic!r} is not a platform event topic")
        self.bus.publish_platform(topic, fields)

    def pubsub_fault(self, kind: str, **params: Any) -> int:
        """Make the Pub/Sub API misbehave; returns the streams or subscribes affected.

        The kinds are :data:`PUBSUB_FAULTS`, described in :mod:`.sf_pubsub_faults`.
        """
        return pubsub_fault(self, kind, params)

    def pubsub_status(self) -> dict[str, Any]:
        """Open streams, events published, and every Subscribe call seen so far."""
        return {
            "address": self.pubsub_address,
            "open_streams": self.pubsub.open_streams(),
            "events": self.bus.count(),
            "subscribes": [describe(record) for record in self.pubsub.subscribe_log()],
        }

    def subscribe_log(self) -> list[dict[str, Any]]:
        """Every Subscribe call so far: topic, replay preset and outcome."""
        return [describe(record) for record in self.pubsub.subscribe_log()]

    def _pubsub_auth(self, token: str, instance: str, tenant: str) -> bool:
        known = self._sessions.knows(token)
        # An org id matches in its 15- or 18-character form (the suffix only encodes case).
        return known and instance.rstrip("/") == self.url and tenant[:15] == ORG_ID[:15]

    def _topic_schema(self, topic: str) -> str | None:
        if topic.startswith("/event/") and topic.endswith("__e"):
            from syncd.sandbox.sf_events import platform_event_schema

            return self.bus.register_schema(platform_event_schema(topic))
        entity = "Lead" if topic == ALL_CHANGES else topic_entity(topic)
        canonical = self.store.object_name(entity) if entity else None
        if canonical is None:
            return None
        with self.store.lock:
            return self.bus.change_schema_id(canonical, self.store.fields(canonical))

    # ------------------------------------------------------------------ sessions, faults, usage

    def expire_sessions(self) -> None:
        """Invalidate every session, as an org's session timeout would."""
        self._sessions.expire()

    def sessions(self) -> list[str]:
        return self._sessions.ids()

    def login_attempts(self) -> int:
        """How many SOAP and OAuth logins were asked for, refused ones included."""
        return self._sessions.attempts()

    def inject(self, kind: str, count: int = 1, **params: Any) -> None:
        """Make the next ``count`` REST calls fail (or wait ``seconds`` for "delay").

        ``only="/composite"`` (a path prefix after ``/services/data/vXX.X``) limits the
        fault to matching calls, e.g. the write-back's collections updates.
        """
        self._faults.inject(kind, count, **params)

    def clear_faults(self) -> None:
        self._faults.clear()

    def pending_faults(self) -> list[dict[str, Any]]:
        """Injected faults not yet used up: kind, remaining, params."""
        return self._faults.pending()

    def set_api_usage(self, used: int, max: int | None = None) -> None:
        """Set the numbers the ``Sforce-Limit-Info`` header reports."""
        self._usage.set(used, max)

    def api_usage(self) -> tuple[int, int]:
        return self._usage.get()

    def query_log(self) -> list[dict[str, Any]]:
        """Every SOQL execution and page fetch: time, soql, session, page, offset, rows."""
        return self._query_log.entries()
