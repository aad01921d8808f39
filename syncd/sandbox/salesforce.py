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
  request order. Updates are checked as Salesforce checks them: unknown fields
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
``POST undelete``, ``POST expire-sessions``, ``POST inject``, ``POST api-usage``,
``GET query-log``, ``GET records/{type}/{id}``, ``GET login-attempts``,
``POST fields``, ``POST lock-rows``, ``GET write-log``, and for the Pub/Sub API
``POST pubsub/fault``, ``POST pubsub/gap``, ``POST pubsub/publish``,
``GET pubsub/status``.

Injected faults (``inject(kind, count, **params)``) hit the next REST calls:
``REQUEST_LIMIT_EXCEEDED`` answers the daily limit (``TotalRequests``; set the
usage with ``set_api_usage`` to match) or, with ``limit="concurrent"``, the
short-lived concurrent-request limit (``ConcurrentPerOrgLongTxn``);
``next_records_url`` answers normally but with ``nextRecordsUrl`` replaced by
the ``url`` parameter (a hostile or broken org).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socket import socket
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import grpc
import jwt

from syncd.sandbox.sf_bulk import BulkError, BulkQueries, job_rows
from syncd.sandbox.sf_certs import write_certificates
from syncd.sandbox.sf_events import ALL_CHANGES, CHANGE_TYPES, EventBus, topic_entity
from syncd.sandbox.sf_pubsub import PubSubServer, PubSubService, describe
from syncd.sandbox.sf_soql import (
    TYPE_KEY,
    CompiledQuery,
    Record,
    SoqlError,
    compile_query,
    to_json_value,
)
from syncd.sandbox.sf_store import (
    DeclaredField,
    FieldUpdateError,
    RecordError,
    RecordStore,
    parse_field_spec,
)

FAULT_KINDS = (
    "INVALID_SESSION_ID",
    "REQUEST_LIMIT_EXCEEDED",
    "500",
    "503",
    "delay",
    "malformed_json",
    "next_records_url",
)
#: Records one sObject Collections call may carry.
COLLECTION_LIMIT = 200
PUBSUB_FAULTS = ("drop", "UNAUTHENTICATED", "invalid_replay", "expire_replay", "slow")
#: Seconds between keepalives of an idle stream (Salesforce: at most 270).
KEEPALIVE_SECONDS = 270.0
ORG_ID = "00D8d000000SyNcEAA"
USER_ID = "0058d000000SyNcAAA"
MAX_CURSORS = 200
INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
LIMIT_EXCEEDED = [
    {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
]
CONCURRENT_LIMIT_EXCEEDED = [
    {
        "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
        "errorCode": "REQUEST_LIMIT_EXCEEDED",
    }
]
_DATA_PATH = re.compile(r"^/services/data/v(?P<version>\d+\.\d)(?P<rest>/.*)?$")
_PAGE_PATH = re.compile(r"^/(?P<kind>query|queryAll)/(?P<locator>01g[A-Za-z0-9]+)-(?P<offset>\d+)$")
_BULK_PATH = re.compile(r"^/jobs/query(?:/(?P<job>750[A-Za-z0-9]+)(?P<results>/results)?)?/?$")
_SOBJECT_PATH = re.compile(r"^/sobjects/(?P<type>[A-Za-z][A-Za-z0-9_]*)/(?P<id>[A-Za-z0-9]+)/?$")
_DESCRIBE_PATH = re.compile(r"^/sobjects/(?P<type>[A-Za-z][A-Za-z0-9_]*)/describe/?$")


@dataclass
class _Fault:
    kind: str
    remaining: int
    params: dict[str, Any]


@dataclass
class _Cursor:
    query: CompiledQuery
    rows: list[Record]
    batch_size: int
    kind: str  # query or queryAll


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, payload: Any, **headers: str) -> _Reply:
    return _Reply(status, json.dumps(payload, separators=(",", ":")).encode(), headers=headers)


def _error(status: int, code: str, message: str) -> _Reply:
    return _json(status, [{"message": message, "errorCode": code}])


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
        self._own_cert_dir = cert_dir is None
        self.cert_dir = Path(tempfile.mkdtemp(prefix="syncd-sf-")) if cert_dir is None else cert_dir
        self._lock = threading.Lock()
        self._sessions: dict[str, str] = {}  # session id -> username
        self._faults: list[_Fault] = []
        self._api_used = 0
        self._api_max = api_max
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self.bulk = BulkQueries()
        self._query_log: list[dict[str, Any]] = []
        self._login_attempts = 0
        self._write_log: list[dict[str, Any]] = []
        self._locked_ids: set[str] = set()
        self._lock_next = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.ca_file = self.cert_dir / "ca.pem"
        self.bus = EventBus()
        self.pubsub = PubSubService(
            self.bus, self._pubsub_auth, self._topic_schema, ORG_ID, keepalive
        )
        self._pubsub_server: PubSubServer | None = None
        self.pubsub_address = ""

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
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(files.cert_file, files.key_file)
        server = _TLSServer((host, port), _Handler, context, self)
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

    # ------------------------------------------------------------------ control

    def add_records(self, records: Iterable[Mapping[str, Any]]) -> list[str]:
        """Insert records (or update those whose Id exists); each names its ``sobject``.

        Publishes a CREATE (or UPDATE) change event per record, one transaction.
        """
        batch = [dict(record) for record in records]
        with self.store.lock:
            existed = {
                str(record["Id"])
                for record in batch
                if isinstance(record.get("Id"), str) and self.store.lookup(str(record["Id"]))
            }
            ids = self.store.add(batch)
            created: dict[str, list[tuple[str, dict[str, Any]]]] = {}
            updated: dict[str, list[tuple[str, dict[str, Any]]]] = {}
            changed: dict[str, set[str]] = {}
            for record_id, raw in zip(ids, batch, strict=True):
                stored = self.store.lookup(record_id)
                assert stored is not None
                sobject = stored[TYPE_KEY]
                if record_id in existed or raw.get("Id") in existed:
                    values = {k: stored.get(k) for k in raw if k not in ("sobject", "Id")}
                    updated.setdefault(sobject, []).append((record_id, values))
                    changed.setdefault(sobject, set()).update(values)
                else:
                    created.setdefault(sobject, []).append((record_id, dict(stored)))
            for sobject, group in created.items():
                self.bus.publish_change(sobject, self.store.fields(sobject), "CREATE", group)
            for sobject, group in updated.items():
                self.bus.publish_change(
                    sobject, self.store.fields(sobject), "UPDATE", group, changed=changed[sobject]
                )
        return ids

    def update_record(
        self,
        sobject: str,
        record_id: str,
        fields: Mapping[str, Any],
        system_modstamp: datetime | str | None = None,
    ) -> dict[str, Any]:
        """Change a record as a user would; ``system_modstamp`` back-dates it (a late commit).

        Publishes an UPDATE change event with the changed fields.
        """
        with self.store.lock:
            record = self.store.update(sobject, record_id, fields, system_modstamp)
            self._publish_update(record, fields)
        return _public(record)

    def _publish_update(self, record: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
        sobject = record[TYPE_KEY]
        infos = self.store.fields(sobject)
        names = [infos[name.lower()].name for name in fields if name.lower() in infos]
        values = {name: record.get(name) for name in names}
        self.bus.publish_change(
            sobject, infos, "UPDATE", [(record["Id"], values)], changed=[*names, "LastModifiedDate"]
        )

    def delete_record(self, sobject: str, record_id: str) -> dict[str, Any]:
        """Move a record to the recycle bin (queries no longer see it, updates get
        ENTITY_IS_DELETED); publishes DELETE."""
        return self._set_deleted(sobject, record_id, True, "DELETE")

    def undelete_record(self, sobject: str, record_id: str) -> dict[str, Any]:
        """Bring a deleted record back; publishes UNDELETE with its fields."""
        return self._set_deleted(sobject, record_id, False, "UNDELETE")

    def _set_deleted(
        self, sobject: str, record_id: str, deleted: bool, change: str
    ) -> dict[str, Any]:
        canonical = self.store.object_name(sobject) or sobject
        with self.store.lock:
            record = self.store.set_deleted(canonical, record_id, deleted)
            self.bus.publish_change(
                canonical, self.store.fields(canonical), change, [(record["Id"], dict(record))]
            )
        return _public(record)

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

        ``drop``: end every open stream (UNAVAILABLE). ``UNAUTHENTICATED``: expire
        every session and end every open stream with UNAUTHENTICATED.
        ``invalid_replay`` (``count``): the next CUSTOM subscribes fail as corrupted.
        ``expire_replay``: every replay id handed out so far is past retention.
        ``slow`` (``seconds``): wait that long before every response (0 clears it).
        """
        if kind == "drop":
            return self.pubsub.end_streams(grpc.StatusCode.UNAVAILABLE, "connection reset")
        if kind == "UNAUTHENTICATED":
            self.expire_sessions()
            return self.pubsub.end_streams(
                grpc.StatusCode.UNAUTHENTICATED, "Session expired or invalid"
            )
        if kind == "invalid_replay":
            count = int(params.get("count", 1))
            with self.bus.cond:
                self.pubsub.faults.invalid_replay += count
            return count
        if kind == "expire_replay":
            self.bus.expire()
            return 0
        if kind == "slow":
            with self.bus.cond:
                self.pubsub.faults.delay_seconds = max(0.0, float(params.get("seconds", 1.0)))
            return self.pubsub.open_streams()
        raise ValueError(f"unknown Pub/Sub fault {kind!r}; use one of {', '.join(PUBSUB_FAULTS)}")

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
        with self._lock:
            known = token in self._sessions
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

    def get_record(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        record = self.store.get(sobject, record_id)
        return None if record is None else _public(record)

    def declare_field(self, spec: DeclaredField | str) -> DeclaredField:
        """Add a field with describe metadata: ``Lead.SimZ_Status__c:string:255`` or a spec."""
        field = parse_field_spec(spec) if isinstance(spec, str) else spec
        self.store.declare_field(field)
        return field

    def lock_rows(self, ids: Iterable[str] = (), count: int = 0) -> None:
        """Answer UNABLE_TO_LOCK_ROW once for each of ``ids`` and for the next ``count``
        records of sObject Collections updates."""
        with self._lock:
            self._locked_ids.update(ids)
            self._lock_next += max(0, count)

    def write_log(self) -> list[dict[str, Any]]:
        """Every sObject Collections update: time, status, records, succeeded."""
        with self._lock:
            return [dict(entry) for entry in self._write_log]

    def expire_sessions(self) -> None:
        """Invalidate every session, as an org's session timeout would."""
        with self._lock:
            self._sessions.clear()

    def inject(self, kind: str, count: int = 1, **params: Any) -> None:
        """Make the next ``count`` REST calls fail (or wait ``seconds`` for "delay").

        ``only="/composite"`` (a path prefix after ``/services/data/vXX.X``) limits the
        fault to matching calls, e.g. the write-back's collections updates.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; use one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(_Fault(kind, count, dict(params)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[dict[str, Any]]:
        """Injected faults not yet used up: kind, remaining, params."""
        with self._lock:
            return [
                {"kind": f.kind, "remaining": f.remaining, "params": dict(f.params)}
                for f in self._faults
            ]

    def set_api_usage(self, used: int, max: int | None = None) -> None:
        """Set the numbers the ``Sforce-Limit-Info`` header reports."""
        with self._lock:
            self._api_used = used
            if max is not None:
                self._api_max = max

    def api_usage(self) -> tuple[int, int]:
        with self._lock:
            return self._api_used, self._api_max

    def query_log(self) -> list[dict[str, Any]]:
        """Every SOQL execution and page fetch: time, soql, session, page, offset, rows."""
        with self._lock:
            return [dict(entry) for entry in self._query_log]

    def login_attempts(self) -> int:
        """How many SOAP and OAuth logins were asked for, refused ones included."""
        with self._lock:
            return self._login_attempts

    def _count_login(self) -> None:
        with self._lock:
            self._login_attempts += 1

    def sessions(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    # ------------------------------------------------------------------ auth

    def _new_session(self, username: str) -> str:
        session = f"{ORG_ID[:15]}!{secrets.token_urlsafe(48)}"
        with self._lock:
            self._sessions[session] = username
        return session

    def _session_of(self, headers: Mapping[str, str]) -> str | None:
        value = headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            return None
        with self._lock:
            return token if token in self._sessions else None

    def _password_ok(self, username: str, password: str, *, token_optional: bool) -> bool:
        if username != self.username:
            return False
        if secrets.compare_digest(password, self.password + self.security_token):
            return True
        return token_optional and secrets.compare_digest(password, self.password)

    def soap_login(self, body: bytes, version: str) -> _Reply:
        self._count_login()
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return _soap_fault("soapenv:Client", "INVALID_XML", "The request is not valid XML")
        values = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
        if "login" not in values:
            return _soap_fault("soapenv:Client", "UNKNOWN_EXCEPTION", "Only login is supported")
        username, password = values.get("username", ""), values.get("password", "")
        if not self._password_ok(username, password, token_optional=self.security_token == ""):
            return _soap_fault(
                "sf:INVALID_LOGIN",
                "INVALID_LOGIN",
                "Invalid username, password, security token; or user locked out.",
            )
        session = self._new_session(username)
        server_url = f"{self.url}/services/Soap/u/{version}/{ORG_ID[:15]}"
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns="urn:partner.soap.sforce.com" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body><loginResponse><result>"
            f"<metadataServerUrl>{self.url}/services/Soap/m/{version}/{ORG_ID[:15]}"
            "</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
            f"<serverUrl>{server_url}</serverUrl>"
            f"<sessionId>{escape(session)}</sessionId>"
            f"<userId>{USER_ID}</userId>"
            "<userInfo>"
            f"<organizationId>{ORG_ID}</organizationId>"
            "<organizationName>syncd sandbox</organizationName>"
            f"<userEmail>{escape(self.username)}</userEmail>"
            f"<userId>{USER_ID}</userId>"
            f"<userName>{escape(self.username)}</userName>"
            "</userInfo>"
            "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )
        return _Reply(200, xml.encode(), "text/xml;charset=UTF-8")

    def oauth_token(self, body: bytes, headers: Mapping[str, str]) -> _Reply:
        self._count_login()
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type", "")
        if grant == "password":
            if form.get("client_id") != self.consumer_key:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            if not secrets.compare_digest(form.get("client_secret", ""), self.consumer_secret):
                return _oauth_error("invalid_client", "invalid client credentials")
            username = form.get("username", "")
            if not self._password_ok(username, form.get("password", ""), token_optional=True):
                return _oauth_error("invalid_grant", "authentication failure")
            return self._token_answer(username)
        if grant == "client_credentials":
            client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
            scheme, _, encoded = headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "basic":
                try:
                    decoded = base64.b64decode(encoded).decode()
                except (ValueError, UnicodeDecodeError):
                    decoded = ""
                client_id, _, client_secret = decoded.partition(":")
            if client_id != self.consumer_key:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            if not secrets.compare_digest(client_secret, self.consumer_secret):
                return _oauth_error("invalid_client", "invalid client credentials")
            return self._token_answer(self.username)
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._jwt_login(form.get("assertion", ""))
        return _oauth_error("unsupported_grant_type", "grant type not supported")

    def _jwt_login(self, assertion: str) -> _Reply:
        try:
            if self.jwt_public_key is not None:
                claims = jwt.decode(
                    assertion,
                    self.jwt_public_key,
                    algorithms=["RS256"],
                    options={"verify_aud": False, "require": ["iss", "sub", "exp"]},
                )
            else:
                claims = jwt.decode(
                    assertion,
                    options={"verify_signature": False, "require": ["iss", "sub", "exp"]},
                )
                if float(claims["exp"]) < time.time():
                    raise jwt.ExpiredSignatureError("expired")
        except (jwt.PyJWTError, ValueError, TypeError):
            return _oauth_error("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.consumer_key:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if claims.get("sub") != self.username:
            return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        return self._token_answer(self.username)

    def _token_answer(self, username: str) -> _Reply:
        session = self._new_session(username)
        issued = str(int(time.time() * 1000))
        return _json(
            200,
            {
                "access_token": session,
                "instance_url": self.url,
                "id": f"{self.url}/id/{ORG_ID}/{USER_ID}",
                "token_type": "Bearer",
                "issued_at": issued,
                "signature": base64.b64encode(secrets.token_bytes(32)).decode(),
            },
        )

    # ------------------------------------------------------------------ REST

    def rest(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> _Reply:
        """One REST call: count it, authenticate, apply injected faults, then answer."""
        reply = self._rest(method, path, query, headers, body)
        with self._lock:
            reply.headers["Sforce-Limit-Info"] = f"api-usage={self._api_used}/{self._api_max}"
        return reply

    def _rest(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> _Reply:
        match = _DATA_PATH.match(path)
        assert match is not None
        version, rest = match.group("version"), match.group("rest") or "/"
        with self._lock:
            self._api_used += 1
        session = self._session_of(headers)
        if session is None:
            return _json(401, INVALID_SESSION)
        fault = self._take_fault(rest)
        if fault is not None:
            if fault.kind == "delay":
                time.sleep(float(fault.params.get("seconds", 1.0)))
            elif fault.kind == "INVALID_SESSION_ID":
                return _json(401, INVALID_SESSION)
            elif fault.kind == "REQUEST_LIMIT_EXCEEDED":
                if fault.params.get("limit", "daily") == "concurrent":
                    return _json(403, CONCURRENT_LIMIT_EXCEEDED)
                return _json(403, LIMIT_EXCEEDED)
            elif fault.kind == "500":
                return _error(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred.")
            elif fault.kind == "503":
                return _error(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable.")
        reply = self._route(method, version, rest, query, headers, body, session)
        if fault is not None and fault.kind == "malformed_json" and reply.status < 300:
            reply = _Reply(200, reply.body[: max(1, len(reply.body) // 2)] or b"{")
        if fault is not None and fault.kind == "next_records_url" and reply.status == 200:
            payload = json.loads(reply.body)
            payload["nextRecordsUrl"] = str(fault.params.get("url", ""))
            payload["done"] = False
            reply = _json(200, payload)
        return reply

    def _take_fault(self, rest: str) -> _Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                only = fault.params.get("only")
                if only is not None and not rest.startswith(str(only)):
                    continue
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.pop(index)
                return fault
            return None

    def _route(
        self,
        method: str,
        version: str,
        rest: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        session: str,
    ) -> _Reply:
        if rest.rstrip("/") in ("/query", "/queryAll"):
            if method != "GET":
                return _error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")
            soql = parse_qs(query).get("q", [""])[0]
            kind = rest.strip("/")
            return self._run_query(soql, kind, version, _batch_size(headers), session)
        page = _PAGE_PATH.match(rest)
        if page is not None and method == "GET":
            return self._page(page.group("locator"), int(page.group("offset")), version, session)
        if rest.rstrip("/") == "/limits" and method == "GET":
            with self._lock:
                used, most = self._api_used, self._api_max
            return _json(200, {"DailyApiRequests": {"Max": most, "Remaining": max(0, most - used)}})
        bulk = _BULK_PATH.match(rest)
        if bulk is not None:
            return self._bulk(
                method, version, bulk.group("job"), bool(bulk.group("results")), query, body
            )
        if rest.rstrip("/") == "/composite/sobjects":
            if method != "PATCH":
                return _error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")
            return self._update_collection(body)
        described = _DESCRIBE_PATH.match(rest)
        if described is not None and method == "GET":
            return self._describe(described.group("type"), version)
        sobject = _SOBJECT_PATH.match(rest)
        if sobject is not None:
            return self._sobject(method, sobject.group("type"), sobject.group("id"), body, version)
        return _error(404, "NOT_FOUND", "The requested resource does not exist")

    def _bulk(
        self, method: str, version: str, job: str | None, results: bool, query: str, body: bytes
    ) -> _Reply:
        """Bulk API 2.0 query jobs: create, status, results, delete."""
        try:
            if job is None and method == "POST":
                return _json(200, self._bulk_create(version, body))
            if job is not None and results and method == "GET":
                params = parse_qs(query)
                locator = params.get("locator", [""])[0] or None
                max_records = int(params.get("maxRecords", ["0"])[0] or 0) or None
                page, following, count = self.bulk.results(job, locator, max_records)
                return _Reply(
                    200,
                    page,
                    content_type="text/csv",
                    headers={"Sforce-Locator": following, "Sforce-NumberOfRecords": str(count)},
                )
            if job is not None and not results and method == "GET":
                return _json(200, self.bulk.status(job))
            if job is not None and not results and method == "DELETE":
                self.bulk.delete(job)
                return _Reply(204, b"")
        except BulkError as exc:
            return _error(exc.status, exc.code, exc.message)
        except ValueError:
            return _error(400, "INVALIDJOB", "maxRecords must be a number")
        return _error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")

    def _bulk_create(self, version: str, body: bytes) -> dict[str, Any]:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise BulkError(400, "INVALIDJOB", "the body is not JSON") from None
        operation = request.get("operation") if isinstance(request, dict) else None
        soql = request.get("query") if isinstance(request, dict) else None
        if operation not in ("query", "queryAll") or not isinstance(soql, str):
            raise BulkError(400, "INVALIDJOB", "operation (query, queryAll) and query are required")
        store = self.store
        try:
            with store.lock:
                compiled = compile_query(soql, store)
                if compiled.count or compiled.order_keys or compiled.limit or compiled.offset:
                    raise BulkError(
                        400,
                        "INVALIDJOB",
                        "Bulk API 2.0 does not support COUNT(), ORDER BY, LIMIT or OFFSET",
                    )
                records = store.snapshot(compiled.sobject)
                if operation == "query":
                    records = [r for r in records if not r.get("IsDeleted")]
                rows = compiled.run(records)
                header, lines = job_rows(
                    rows, compiled.paths, lambda r: compiled.project(r, version)
                )
        except SoqlError as exc:
            raise BulkError(400, exc.code, exc.message) from None
        self._log(soql, "bulk", page=False, offset=0, rows=len(lines))
        return self.bulk.create(operation, compiled.sobject, version, header, lines)

    def _log(self, soql: str, session: str, *, page: bool, offset: int, rows: int) -> None:
        with self._lock:
            self._query_log.append(
                {
                    "time": datetime.now(UTC).isoformat(),
                    "soql": soql,
                    "session": session[-8:],
                    "page": page,
                    "offset": offset,
                    "rows": rows,
                }
            )

    def _run_query(
        self, soql: str, kind: str, version: str, batch_size: int, session: str
    ) -> _Reply:
        store = self.store
        try:
            with store.lock:
                compiled = compile_query(soql, store)
                records = store.snapshot(compiled.sobject)
                if kind == "query":
                    records = [r for r in records if not r.get("IsDeleted")]
                rows = compiled.run(records)
        except SoqlError as exc:
            self._log(soql, session, page=False, offset=0, rows=0)
            return _error(400, exc.code, exc.answer_message(soql))
        self._log(soql, session, page=False, offset=0, rows=len(rows))
        if compiled.count:
            return _json(200, {"totalSize": len(rows), "done": True, "records": []})
        cursor = _Cursor(compiled, rows, batch_size, kind)
        return self._answer_page(cursor, None, 0, version)

    def _page(self, locator: str, offset: int, version: str, session: str) -> _Reply:
        with self._lock:
            cursor = self._cursors.get(locator)
        if cursor is None or offset > len(cursor.rows):
            return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        count = min(cursor.batch_size, len(cursor.rows) - offset)
        self._log(cursor.query.soql, session, page=True, offset=offset, rows=count)
        return self._answer_page(cursor, locator, offset, version)

    def _answer_page(
        self, cursor: _Cursor, locator: str | None, offset: int, version: str
    ) -> _Reply:
        end = offset + cursor.batch_size
        chunk = cursor.rows[offset:end]
        with self.store.lock:
            records = [cursor.query.project(r, version) for r in chunk]
        payload: dict[str, Any] = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows)}
        with self._lock:
            if end < len(cursor.rows):
                if locator is None:
                    locator = "01g" + secrets.token_hex(6).upper() + "AAA"
                    self._cursors[locator] = cursor
                    while len(self._cursors) > MAX_CURSORS:
                        self._cursors.popitem(last=False)
                payload["nextRecordsUrl"] = (
                    f"/services/data/v{version}/{cursor.kind}/{locator}-{end}"
                )
            elif locator is not None:
                self._cursors.pop(locator, None)
        payload["records"] = records
        return _json(200, payload)

    def _sobject(
        self, method: str, sobject: str, record_id: str, body: bytes, version: str
    ) -> _Reply:
        canonical = self.store.object_name(sobject)
        if canonical is None:
            return _error(404, "NOT_FOUND", f"The requested resource does not exist: {sobject}")
        if method == "GET":
            record = self.store.get(canonical, record_id)
            if record is None:
                return _error(404, "NOT_FOUND", "The requested resource does not exist")
            out: dict[str, Any] = {
                "attributes": {
                    "type": canonical,
                    "url": f"/services/data/v{version}/sobjects/{canonical}/{record['Id']}",
                }
            }
            for info in self.store.fields(canonical).values():
                out[info.name] = to_json_value(record.get(info.name))
            return _json(200, out)
        if method != "PATCH":
            return _error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")
        try:
            fields = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
        if not isinstance(fields, dict):
            return _error(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        try:
            with self.store.lock:
                record = self.store.patch(canonical, record_id, fields)
                self._publish_update(record, fields)
        except FieldUpdateError as exc:
            if exc.code in ("INVALID_CROSS_REFERENCE_KEY", "MALFORMED_ID"):
                return _error(404, "NOT_FOUND", "The requested resource does not exist")
            return _json(
                400, [{"message": exc.message, "errorCode": exc.code, "fields": exc.fields}]
            )
        return _Reply(204, b"")

    def _describe(self, sobject: str, version: str) -> _Reply:
        canonical = self.store.object_name(sobject)
        if canonical is None:
            return _error(404, "NOT_FOUND", f"The requested resource does not exist: {sobject}")
        return _json(
            200,
            {
                "name": canonical,
                "updateable": True,
                "queryable": True,
                "urls": {"describe": f"/services/data/v{version}/sobjects/{canonical}/describe"},
                "fields": self.store.describe(canonical),
            },
        )

    def _update_collection(self, body: bytes) -> _Reply:
        """``PATCH composite/sobjects``: each record on its own (allOrNone false), in order."""
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
        records = data.get("records") if isinstance(data, dict) else None
        if not isinstance(records, list) or not records:
            return _error(400, "INVALID_FIELD", "records: a non-empty list is required")
        if len(records) > COLLECTION_LIMIT:
            return _error(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records "
                "into this call",
            )
        if data.get("allOrNone") not in (None, False):
            return _error(400, "INVALID_FIELD", "allOrNone true is not emulated")
        results = [self._update_one(record) for record in records]
        with self._lock:
            self._write_log.append(
                {
                    "time": datetime.now(UTC).isoformat(),
                    "records": len(records),
                    "succeeded": sum(1 for r in results if r["success"]),
                }
            )
        return _json(200, results)

    def _update_one(self, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            error = FieldUpdateError("JSON_PARSER_ERROR", "a record must be an object")
            return {"success": False, "errors": [error.as_error()]}
        record_id = record.get("id") or record.get("Id")
        attributes = record.get("attributes")
        sobject_name = attributes.get("type") if isinstance(attributes, dict) else None
        fields = {k: v for k, v in record.items() if k not in ("attributes", "id", "Id")}
        try:
            canonical = self.store.object_name(str(sobject_name or ""))
            if canonical is None:
                raise FieldUpdateError(
                    "INVALID_TYPE", f"sObject type '{sobject_name}' is not supported."
                )
            if self._take_lock(str(record_id)):
                raise FieldUpdateError(
                    "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"
                )
            with self.store.lock:
                updated = self.store.patch(canonical, str(record_id), fields)
                self._publish_update(updated, fields)
        except FieldUpdateError as exc:
            return {"id": record_id, "success": False, "errors": [exc.as_error()]}
        return {"id": record_id, "success": True, "errors": []}

    def _take_lock(self, record_id: str) -> bool:
        with self._lock:
            if record_id in self._locked_ids:
                self._locked_ids.discard(record_id)
                return True
            if self._lock_next > 0:
                self._lock_next -= 1
                return True
            return False

    # ------------------------------------------------------------------ control API

    def control(self, method: str, path: str, body: bytes) -> _Reply:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return _json(400, {"error": "the body is not JSON"})
        action = path.removeprefix("/__sandbox/").strip("/")
        try:
            if method == "POST" and action == "records":
                return _json(200, {"ids": self.add_records(data.get("records", []))})
            if method == "POST" and action == "update":
                record = self.update_record(
                    data["sobject"], data["id"], data.get("fields", {}), data.get("SystemModstamp")
                )
                return _json(200, record)
            if method == "POST" and action in ("delete", "undelete"):
                change = self.delete_record if action == "delete" else self.undelete_record
                return _json(200, change(data["sobject"], data["id"]))
            if method == "POST" and action == "pubsub/fault":
                params = {k: v for k, v in data.items() if k != "kind"}
                return _json(200, {"affected": self.pubsub_fault(str(data["kind"]), **params)})
            if method == "POST" and action == "pubsub/gap":
                ids = [str(i) for i in data["ids"]]
                self.publish_gap(data["sobject"], ids, str(data.get("change_type", "GAP_UPDATE")))
                return _json(200, {"published": len(ids)})
            if method == "POST" and action == "pubsub/publish":
                self.publish_platform_event(str(data["topic"]), data.get("fields", {}))
                return _json(200, {"published": 1})
            if method == "GET" and action == "pubsub/status":
                return _json(200, self.pubsub_status())
            if method == "POST" and action == "expire-sessions":
                self.expire_sessions()
                return _json(200, {"expired": True})
            if method == "POST" and action == "inject":
                params = {k: v for k, v in data.items() if k not in ("kind", "count")}
                self.inject(str(data["kind"]), int(data.get("count", 1)), **params)
                return _json(200, {"injected": data["kind"]})
            if method == "POST" and action == "api-usage":
                self.set_api_usage(int(data["used"]), data.get("max"))
                return _json(200, {"used": self._api_used, "max": self._api_max})
            if method == "GET" and action == "login-attempts":
                return _json(200, {"attempts": self.login_attempts()})
            if method == "GET" and action == "query-log":
                return _json(200, {"queries": self.query_log()})
            if method == "GET" and action == "write-log":
                return _json(200, {"writes": self.write_log()})
            if method == "POST" and action == "fields":
                specs = data.get("fields", [])
                declared = [self.declare_field(str(spec)) for spec in specs]
                return _json(200, {"declared": [f"{f.sobject}.{f.name}" for f in declared]})
            if method == "POST" and action == "lock-rows":
                self.lock_rows(data.get("ids", []), int(data.get("count", 0)))
                return _json(200, {"locked": True})
            if method == "GET" and action.startswith("records/"):
                _, sobject, record_id = ([*action.split("/"), "", ""])[:3]
                found = self.get_record(sobject, record_id)
                return _json(200, found) if found else _json(404, {"error": "no such record"})
        except KeyError as exc:
            return _json(400, {"error": f"missing or unknown {exc}"})
        except (RecordError, ValueError, TypeError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(404, {"error": f"no control action {method} {action}"})


def _public(record: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: to_json_value(v) for k, v in record.items() if k != TYPE_KEY}
    out["sobject"] = record[TYPE_KEY]
    return out


def _batch_size(headers: Mapping[str, str]) -> int:
    value = headers.get("Sforce-Query-Options", "")
    match = re.search(r"batchSize\s*=\s*(\d+)", value)
    if match is None:
        return 2000
    return max(200, min(2000, int(match.group(1))))


def _soap_fault(faultcode: str, code: str, message: str) -> _Reply:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>{faultcode}</faultcode>"
        f"<faultstring>{code}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return _Reply(500, xml.encode(), "text/xml;charset=UTF-8")


def _oauth_error(error: str, description: str) -> _Reply:
    return _json(400, {"error": error, "error_description": description})


class _TLSServer(ThreadingHTTPServer):
    """Accepts plain sockets and does each TLS handshake in the connection's own thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
        emulator: SalesforceEmulator,
    ) -> None:
        super().__init__(address, handler)
        self.context = context
        self.emulator = emulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops a connection or fails the handshake is not our
        # problem to report; the emulator keeps serving the others.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SalesforceEmulator/1.0"
    timeout = 120
    server: _TLSServer

    def setup(self) -> None:
        raw: socket = self.request
        raw.settimeout(self.timeout)
        self.request = self.server.context.wrap_socket(raw, server_side=True)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        body = self._body()
        split = urlsplit(self.path)
        path = unquote(split.path)
        headers = {k: v for k, v in self.headers.items()}
        try:
            if path.startswith("/__sandbox/"):
                reply = emulator.control(self.command, path, body)
            elif path.startswith("/services/Soap/u/") and self.command == "POST":
                version = path.removeprefix("/services/Soap/u/").split("/")[0]
                reply = emulator.soap_login(body, version)
            elif path.rstrip("/") == "/services/oauth2/token" and self.command == "POST":
                reply = emulator.oauth_token(body, headers)
            elif _DATA_PATH.match(path):
                reply = emulator.rest(self.command, path, split.query, headers, body)
            else:
                reply = _error(404, "NOT_FOUND", "The requested resource does not exist")
        except Exception as exc:  # the emulator must answer, not hang the client
            reply = _error(500, "UNKNOWN_EXCEPTION", f"emulator error: {type(exc).__name__}")
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.body and self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = _dispatch
    do_POST = _dispatch
    do_PATCH = _dispatch
    do_PUT = _dispatch
    do_DELETE = _dispatch
