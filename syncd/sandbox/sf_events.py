"""The Salesforce emulator's event bus: change events and platform events, with replay ids.

Every record change the emulator makes (create, update, delete, undelete)
becomes a Change Data Capture event on ``/data/<Object>ChangeEvent`` and on
``/data/ChangeEvents``; platform events (``/event/<Name>__e``) are published
explicitly. Events keep the values they were published with and are encoded to
Avro binary only when delivered.

Odd events, for tests of what a subscriber must survive: :meth:`EventBus.publish_header`
publishes a header-only change event with any header values (a wildcard or a
placeholder Id, a value that is no Id, a commit time out of range), and a
platform event may carry any ``CreatedDate``. A float where Salesforce sends a
long (NaN, 1e20) gets a schema typing that field ``double``.

Replay ids are opaque to clients: 12 bytes, a per-bus epoch and a sequence
number shared by all topics (so the ids of one topic are not contiguous). An id
with another epoch or length is "corrupted"; an id older than the retention
cut (:meth:`EventBus.expire`) is "expired". Both make a subscribe fail, as
Salesforce's do after 72 hours.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import secrets
import struct
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import fastavro

from syncd.sandbox.sf_soql import FieldInfo

CHANGE_TYPES = (
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
)
ALL_CHANGES = "/data/ChangeEvents"
USER_ID = "0058d000000SyNcAAA"
_REPLAY = struct.Struct(">4sQ")
_NAME_PARTS = ("Salutation", "FirstName", "LastName")
_SKIPPED = {"Id", "IsDeleted"}
_EPOCH_DAY = date(1970, 1, 1)


class ReplayError(ValueError):
    """A replay id the bus cannot resume from; ``kind`` is corrupted or expired."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def entity_topic(sobject: str) -> str:
    name = sobject[:-1] if sobject.endswith("__c") else sobject
    return f"/data/{name}ChangeEvent"


def topic_entity(topic: str) -> str | None:
    """``/data/LeadChangeEvent`` -> ``Lead``; None for other topics."""
    if not topic.startswith("/data/") or not topic.endswith("ChangeEvent"):
        return None
    name = topic.removeprefix("/data/").removesuffix("ChangeEvent")
    return f"{name}c" if name.endswith("__") else name


def _avro_type(info: FieldInfo) -> Any:
    if info.type == "boolean":
        return "boolean"
    if info.type == "number":
        return "double"
    if info.type == "datetime":
        return "long"
    if info.type == "date":
        return "int"
    return "string"


def _long_or_double(value: Any) -> str:
    """The Avro type of an epoch-milliseconds field: ``double`` for a float (odd events)."""
    return "double" if isinstance(value, float) else "long"


def _header_schema(commit_type: str = "long") -> dict[str, Any]:
    strings = {"type": "array", "items": "string"}
    return {
        "type": "record",
        "name": "ChangeEventHeader",
        "namespace": "com.sforce.eventbus",
        "fields": [
            {"name": "entityName", "type": "string"},
            {"name": "recordIds", "type": strings},
            {
                "name": "changeType",
                "type": {
                    "type": "enum",
                    "name": "ChangeType",
                    "namespace": "com.sforce.eventbus",
                    "symbols": list(CHANGE_TYPES),
                },
            },
            {"name": "changeOrigin", "type": "string"},
            {"name": "transactionKey", "type": "string"},
            {"name": "sequenceNumber", "type": "int"},
            {"name": "commitTimestamp", "type": commit_type},
            {"name": "commitNumber", "type": "long"},
            {"name": "commitUser", "type": "string"},
            {"name": "nulledFields", "type": strings},
            {"name": "diffFields", "type": strings},
            {"name": "changedFields", "type": strings},
        ],
    }


def change_event_schema(
    sobject: str, fields: Iterable[FieldInfo], commit_type: str = "long"
) -> dict[str, Any]:
    """The Avro schema of ``<Object>ChangeEvent``: the header, then every field, nullable.

    ``FirstName``/``LastName``/``Salutation`` arrive nested in the compound ``Name``
    (as Salesforce sends person names); datetimes are epoch milliseconds.
    """
    infos = sorted(fields, key=lambda info: info.name)
    names = {info.name for info in infos}
    compound = "LastName" in names
    header = _header_schema(commit_type)
    out: list[dict[str, Any]] = [{"name": "ChangeEventHeader", "type": header}]
    if compound:
        parts = [
            {"name": part, "type": ["null", "string"], "default": None} for part in _NAME_PARTS
        ]
        out.append(
            {
                "name": "Name",
                "type": [
                    "null",
                    {"type": "record", "name": "Switchable_PersonName", "fields": parts},
                ],
                "default": None,
            }
        )
    for info in infos:
        nested = compound and (info.name in _NAME_PARTS or info.name == "Name")
        if info.name in _SKIPPED or nested:
            continue
        out.append({"name": info.name, "type": ["null", _avro_type(info)], "default": None})
    return {
        "type": "record",
        "name": f"{entity_topic(sobject).removeprefix('/data/')}",
        "namespace": "com.sforce.eventbus",
        "fields": out,
    }


def platform_event_schema(topic: str, created_type: str = "long") -> dict[str, Any]:
    """A platform event: CreatedDate, CreatedById and a nullable ``RecordId__c``."""
    return {
        "type": "record",
        "name": topic.removeprefix("/event/"),
        "namespace": "com.sforce.eventbus",
        "fields": [
            {"name": "CreatedDate", "type": created_type},
            {"name": "CreatedById", "type": "string"},
            {"name": "RecordId__c", "type": ["null", "string"], "default": None},
        ],
    }


def _schema_id(schema: Mapping[str, Any]) -> str:
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:22]


def _avro_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, date):
        return (value - _EPOCH_DAY).days
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


@dataclass
class Event:
    """One published event: where it sits in the bus and what it carries."""

    seq: int
    topics: tuple[str, ...]
    schema_id: str
    values: dict[str, Any]
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    payload: bytes | None = None  # encoded on first delivery


@dataclass
class _Schema:
    json: str
    parsed: Any


class EventBus:
    """Events of every topic in publication order; thread-safe, with a condition to wait on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.epoch = secrets.token_bytes(4)
        self._seq = itertools.count(1)
        self._commit = itertools.count(1)
        self._events: list[Event] = []
        self._by_topic: dict[str, list[Event]] = {}
        self._schemas: dict[str, _Schema] = {}
        self._change_schema: dict[tuple[str, int], str] = {}
        self._retained_after = 0  # events with seq <= this are past retention
        self.published = 0

    # ------------------------------------------------------------------ replay ids

    def encode_replay(self, seq: int) -> bytes:
        return _REPLAY.pack(self.epoch, seq)

    def decode_replay(self, replay_id: bytes) -> int:
        """The sequence number of ``replay_id``; :class:`ReplayError` if unusable."""
        if len(replay_id) != _REPLAY.size:
            raise ReplayError("corrupted", "The Replay ID validation failed: corrupted replay id")
        epoch, seq = _REPLAY.unpack(replay_id)
        if epoch != self.epoch:
            raise ReplayError("corrupted", "The Replay ID validation failed: unknown replay id")
        with self.cond:
            if seq < self._retained_after:
                raise ReplayError(
                    "expired", "The Replay ID validation failed: the replay id is past retention"
                )
            if seq > self._last_seq():
                raise ReplayError("corrupted", "The Replay ID validation failed: unknown replay id")
        return int(seq)

    def _last_seq(self) -> int:
        return max(self._events[-1].seq if self._events else 0, self._retained_after)

    # ------------------------------------------------------------------ schemas

    def register_schema(self, schema: Mapping[str, Any]) -> str:
        schema_id = _schema_id(schema)
        with self.cond:
            if schema_id not in self._schemas:
                text = json.dumps(schema, separators=(",", ":"))
                self._schemas[schema_id] = _Schema(text, fastavro.parse_schema(dict(schema)))
        return schema_id

    def schema_json(self, schema_id: str) -> str | None:
        with self.cond:
            found = self._schemas.get(schema_id)
        return None if found is None else found.json

    def change_schema_id(self, sobject: str, fields: Mapping[str, FieldInfo]) -> str:
        """The schema id for ``sobject`` with its current fields (fields only ever grow)."""
        key = (sobject, len(fields))
        with self.cond:
            found = self._change_schema.get(key)
        if found is None:
            found = self.register_schema(change_event_schema(sobject, fields.values()))
            with self.cond:
                self._change_schema[key] = found
        return found

    # ------------------------------------------------------------------ publishing

    def publish_change(
        self,
        sobject: str,
        fields: Mapping[str, FieldInfo],
        change_type: str,
        records: list[tuple[str, dict[str, Any]]],
        *,
        changed: Iterable[str] = (),
    ) -> list[Event]:
        """One transaction of changes: an event per (Id, values), sharing a transaction key.

        Gap events (``GAP_*``) carry every Id in one header-only event.
        """
        if change_type not in CHANGE_TYPES:
            raise ValueError(f"unknown change type {change_type!r}")
        schema_id = self.change_schema_id(sobject, fields)
        commit_ms = int(time.time() * 1000)
        transaction = uuid.uuid4().hex[:20]
        changed_fields = sorted(set(changed))
        groups: list[tuple[list[str], dict[str, Any]]]
        if change_type.startswith("GAP_"):
            groups = [([record_id for record_id, _ in records], {})]
        else:
            groups = [([record_id], values) for record_id, values in records]
        published = []
        for number, (ids, values) in enumerate(groups, start=1):
            body = self._change_body(sobject, fields, values, change_type)
            body["ChangeEventHeader"] = self._header(
                sobject, ids, change_type, transaction, number, commit_ms
            )
            if change_type == "UPDATE":
                body["ChangeEventHeader"]["changedFields"] = changed_fields
            topics = (entity_topic(sobject), ALL_CHANGES)
            published.append(self._append(topics, schema_id, body))
        return published

    def publish_header(
        self,
        sobject: str,
        fields: Mapping[str, FieldInfo],
        change_type: str,
        header: Mapping[str, Any],
    ) -> Event:
        """One header-only change event whose header has ``header``'s values over the usual.

        For odd events: ``recordIds`` with a wildcard (``00Q*``), the placeholder
        ``000000000000000AAA`` or a value that is no Id; a ``commitTimestamp`` out
        of range (a float, e.g. NaN, is sent in a schema typing it ``double``).
        """
        if change_type not in CHANGE_TYPES:
            raise ValueError(f"unknown change type {change_type!r}")
        commit_type = _long_or_double(header.get("commitTimestamp"))
        if commit_type == "long":
            schema_id = self.change_schema_id(sobject, fields)
        else:
            schema_id = self.register_schema(
                change_event_schema(sobject, fields.values(), commit_type)
            )
        values = self._header(
            sobject, [], change_type, uuid.uuid4().hex[:20], 1, int(time.time() * 1000)
        )
        values.update(header)
        body = {"ChangeEventHeader": values}
        return self._append((entity_topic(sobject), ALL_CHANGES), schema_id, body)

    def _header(
        self,
        sobject: str,
        ids: list[str],
        change_type: str,
        transaction: str,
        number: int,
        commit_ms: int,
    ) -> dict[str, Any]:
        return {
            "entityName": sobject,
            "recordIds": ids,
            "changeType": change_type,
            "changeOrigin": "com/salesforce/api/rest/61.0",
            "transactionKey": transaction,
            "sequenceNumber": number,
            "commitTimestamp": commit_ms,
            "commitNumber": next(self._commit),
            "commitUser": USER_ID,
            "nulledFields": [],
            "diffFields": [],
            "changedFields": [],
        }

    def _change_body(
        self,
        sobject: str,
        fields: Mapping[str, FieldInfo],
        values: Mapping[str, Any],
        change_type: str,
    ) -> dict[str, Any]:
        if change_type in ("DELETE",) or change_type.startswith("GAP_"):
            return {}
        compound = "lastname" in fields
        body: dict[str, Any] = {}
        name: dict[str, Any] = {}
        for key, value in values.items():
            if value is None or key in _SKIPPED or key.startswith("_"):
                continue
            if compound and key in _NAME_PARTS:
                name[key] = value
            elif compound and key == "Name":
                continue
            else:
                body[key] = _avro_value(value)
        if name:
            body["Name"] = name
        return body

    def publish_platform(self, topic: str, values: Mapping[str, Any]) -> Event:
        """A platform event with ``RecordId__c`` (any text) and, if given, ``CreatedDate``."""
        created = values.get("CreatedDate", int(time.time() * 1000))
        schema_id = self.register_schema(platform_event_schema(topic, _long_or_double(created)))
        body = {
            "CreatedDate": created,
            "CreatedById": USER_ID,
            "RecordId__c": values.get("RecordId__c"),
        }
        return self._append((topic,), schema_id, body)

    def publish_encoded(self, topic: str, schema_id: str, payload: bytes) -> Event:
        """An event published through the API: already Avro, stored as it came."""
        with self.cond:
            if schema_id not in self._schemas:
                raise KeyError(schema_id)
        event = self._append((topic,), schema_id, {})
        event.payload = payload
        return event

    def _append(self, topics: tuple[str, ...], schema_id: str, values: dict[str, Any]) -> Event:
        with self.cond:
            event = Event(next(self._seq), topics, schema_id, values)
            self._events.append(event)
            for topic in topics:
                self._by_topic.setdefault(topic, []).append(event)
            self.published += 1
            self.cond.notify_all()
        return event

    # ------------------------------------------------------------------ reading

    def payload(self, event: Event) -> bytes:
        if event.payload is None:
            with self.cond:
                schema = self._schemas[event.schema_id]
            out = io.BytesIO()
            fastavro.schemaless_writer(out, schema.parsed, event.values)
            event.payload = out.getvalue()
        return event.payload

    def after(self, topic: str, seq: int, limit: int) -> list[Event]:
        """Up to ``limit`` events of ``topic`` published after ``seq`` (call under ``cond``)."""
        events = self._by_topic.get(topic, [])
        low, high = 0, len(events)
        while low < high:  # the first event with a larger sequence number
            middle = (low + high) // 2
            if events[middle].seq <= seq:
                low = middle + 1
            else:
                high = middle
        return [e for e in events[low : low + limit] if e.seq > self._retained_after]

    def latest_seq(self, topic: str) -> int:
        """The sequence number of the topic's newest event (or of the retention cut)."""
        with self.cond:
            events = self._by_topic.get(topic)
            return max(events[-1].seq if events else 0, self._retained_after)

    def earliest_seq(self) -> int:
        """The position before the oldest retained event."""
        with self.cond:
            return self._retained_after

    def expire(self) -> int:
        """Put every event published so far past retention; return the cut."""
        with self.cond:
            self._retained_after = next(self._seq)  # no event ever gets the cut's number
            return self._retained_after

    def count(self, topic: str | None = None) -> int:
        with self.cond:
            if topic is None:
                return len(self._events)
            return len(self._by_topic.get(topic, []))
