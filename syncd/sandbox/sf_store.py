"""The Salesforce emulator's records: Ids, field types, timestamps and lookups.

An object's fields are its standard fields (``Id``, ``CreatedDate``,
``LastModifiedDate``, ``SystemModstamp``, ``IsDeleted``), a short built-in list
of common standard fields for Lead, Contact, Account, User and Opportunity (so
that a query on an empty org is not refused), and every field seen in its
records. A new field's type is inferred from its values: booleans, numbers,
strings shaped like Salesforce datetimes (with a zone) or dates, other strings;
a field named ``...Id`` holding Ids is a reference, its target read from the
Ids' key prefix. A value that does not fit its field's type is refused with a
clear error rather than stored.

A new record gets what an org gives one: the standard fields it leaves out take
their defaults (``IsDeleted``, and for Lead ``IsConverted``, ``Status`` and the
opt-out checkboxes; for Contact its checkboxes: :mod:`.sf_objects`), and a
built-in checkbox is never null. A configuration that filters on
``IsConverted = false`` then reads the records it would read in an org, and
describe says which fields are defaulted on create.

Records are replaced, never changed in place, so a query locator keeps the
snapshot it was created with (as a Salesforce query cursor does).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from syncd.sandbox.sf_objects import (
    DEFAULTS,
    KEY_PREFIXES,
    PICKLISTS,
    READ_ONLY,
    built_in_fields,
    default_of,
)
from syncd.sandbox.sf_soql import (
    TYPE_KEY,
    FieldInfo,
    FieldType,
    Record,
    id_suffix,
    normalize_id,
    relationship_name,
    truncate_ms,
)

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class RecordError(ValueError):
    """A record the emulator will not store (bad Id, unknown object, wrong value type)."""


class FieldUpdateError(ValueError):
    """An update Salesforce would refuse for one record, with its status code and fields."""

    def __init__(self, code: str, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = list(fields)

    def as_error(self) -> dict[str, Any]:
        """The error as a per-record result of the sObject Collections API lists it."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


#: Describe types a declared (custom) field may have, and the query engine's type for each.
DECLARED_TYPES: dict[str, FieldType] = {
    "string": "string",
    "textarea": "string",
    "picklist": "string",
    "datetime": "datetime",
    "date": "date",
    "boolean": "boolean",
    "double": "number",
}
#: Describe type of each query-engine type, for fields that were not declared.
_DESCRIBE_TYPE = {"number": "double"}


@dataclass(frozen=True)
class DeclaredField:
    """A field declared with its describe metadata (a custom field such as SimZ_Status__c)."""

    sobject: str
    name: str
    type: str
    length: int | None = None
    updateable: bool = True
    values: tuple[str, ...] = ()  # a restricted picklist's values; empty: any value


def parse_field_spec(spec: str) -> DeclaredField:
    """``Lead.SimZ_Status__c:string:255`` (``:readonly`` may follow) as a declared field.

    Types: string, textarea, picklist (``picklist:255:a|b|c`` restricts the values),
    datetime, date, boolean, double. A string-like field without a length gets 255.
    """
    head, _, rest = spec.partition(":")
    sobject, dot, name = head.partition(".")
    if not dot or not _NAME.match(sobject) or not _NAME.match(name):
        raise RecordError(f"{spec!r}: expected Object.Field:type[:length][:readonly]")
    parts = [part for part in rest.split(":") if part] if rest else ["string"]
    kind = parts[0]
    values: tuple[str, ...] = ()
    if kind not in DECLARED_TYPES:
        raise RecordError(f"{spec!r}: type must be one of {', '.join(DECLARED_TYPES)}")
    length: int | None = None
    updateable = True
    for part in parts[1:]:
        if part == "readonly":
            updateable = False
        elif part.isdigit() and int(part) > 0:
            length = int(part)
        elif kind == "picklist":
            values = tuple(value for value in part.split("|") if value)
        else:
            raise RecordError(f"{spec!r}: {part!r} is neither a length nor readonly")
    if length is None and DECLARED_TYPES[kind] == "string":
        length = 255
    return DeclaredField(sobject, name, kind, length, updateable, values)


def now_ms() -> datetime:
    return truncate_ms(datetime.now(UTC))


def parse_datetime(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and _DATETIME.match(value):
        parsed = datetime.fromisoformat(value)
    else:
        raise RecordError(
            f"{field}: {value!r} is not a datetime with a zone (2024-01-01T00:00:00Z)"
        )
    if parsed.tzinfo is None:
        raise RecordError(f"{field}: {value!r} has no time zone")
    return truncate_ms(parsed.astimezone(UTC))


def _infer(name: str, values: list[Any]) -> tuple[FieldType, str | None]:
    """The type of a new field from the values of one batch of records."""
    present = [v for v in values if v is not None]
    if not present:
        return "string", None
    if all(isinstance(v, bool) for v in present):
        return "boolean", None
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "number", None
    if all(isinstance(v, str) for v in present):
        if all(_DATETIME.match(v) for v in present):
            return "datetime", None
        if all(_DATE.match(v) for v in present):
            return "date", None
        if (name.endswith("Id") or name.endswith("__c")) and all(normalize_id(v) for v in present):
            return "reference", None  # target filled in from the key prefixes
        return "string", None
    raise RecordError(
        f"{name}: values of mixed types {sorted({type(v).__name__ for v in present})}"
    )


class RecordStore:
    """Every record by sobject and by Id; implements :class:`sf_soql.Catalog`. Thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._objects: dict[str, dict[str, dict[str, Any]]] = {}  # sobject -> Id -> record
        self._by_id: dict[str, dict[str, Any]] = {}
        self._fields: dict[str, dict[str, FieldInfo]] = {}  # sobject -> lower name -> info
        self._names: dict[str, str] = {}  # lower sobject -> canonical
        self._prefixes: dict[str, str] = {}  # key prefix -> sobject
        self._prefix_for: dict[str, str] = {}  # sobject -> key prefix
        self._counter = itertools.count(1)
        self._declared: dict[str, dict[str, DeclaredField]] = {}  # sobject -> lower -> field
        for sobject in KEY_PREFIXES:
            self._ensure_object(sobject)

    # ------------------------------------------------------------------ Catalog

    def object_name(self, name: str) -> str | None:
        return self._names.get(name.lower())

    def fields(self, sobject: str) -> Mapping[str, FieldInfo]:
        return self._fields.get(sobject, {})

    def lookup(self, record_id: str) -> Record | None:
        return self._by_id.get(record_id)

    # ------------------------------------------------------------------ reads

    def snapshot(self, sobject: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self._objects.get(sobject, {}).values())

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        normalized = normalize_id(record_id)
        with self.lock:
            record = self._by_id.get(normalized or "")
            return record if record is not None and record[TYPE_KEY] == sobject else None

    def count(self) -> int:
        return len(self._by_id)

    # ------------------------------------------------------------------ writes

    def add(self, records: Iterable[Mapping[str, Any]]) -> list[str]:
        """Insert records, or replace the fields they name when their Id exists; return Ids.

        Each record names its object in ``sobject``. The whole batch is checked
        before anything is stored.
        """
        batch = [dict(r) for r in records]
        with self.lock:
            by_object: dict[str, list[dict[str, Any]]] = {}
            for number, record in enumerate(batch, start=1):
                sobject = record.pop("sobject", None)
                if not isinstance(sobject, str) or not _NAME.match(sobject):
                    raise RecordError(f"record {number}: 'sobject' must name an object")
                canonical = self._names.get(sobject.lower(), sobject)
                by_object.setdefault(canonical, []).append(record)
            prepared: list[tuple[str, dict[str, Any]]] = []
            for sobject, group in by_object.items():
                self._learn_fields(sobject, group)
                prepared.extend((sobject, r) for r in group)
            stored = [self._prepare(sobject, record) for sobject, record in prepared]
            ids = []
            for record in stored:
                self._put(record)
                ids.append(record["Id"])
            return ids

    def update(
        self,
        sobject: str,
        record_id: str,
        fields: Mapping[str, Any],
        system_modstamp: datetime | str | None = None,
        *,
        allow_new_fields: bool = True,
    ) -> dict[str, Any]:
        """Change fields of a record and stamp it modified (now, or ``system_modstamp``)."""
        with self.lock:
            current = self.get(sobject, record_id)
            if current is None:
                raise KeyError(record_id)
            unknown = [f for f in fields if f.lower() not in self._fields[sobject]]
            if unknown and not allow_new_fields:
                raise RecordError(f"No such column '{unknown[0]}' on sobject of type {sobject}")
            read_only = [f for f in fields if f.lower() in READ_ONLY]
            if read_only:
                raise RecordError(f"Unable to create/update fields: {', '.join(read_only)}")
            self._learn_fields(sobject, [dict(fields)])
            stamp = (
                parse_datetime(system_modstamp, "SystemModstamp")
                if system_modstamp is not None
                else now_ms()
            )
            changed = dict(current)
            for name, value in fields.items():
                info = self._fields[sobject][name.lower()]
                changed[info.name] = self._coerce(info, value)
            self._fill_defaults(sobject, changed, created=False)  # a checkbox set to null
            changed["LastModifiedDate"] = stamp
            changed["SystemModstamp"] = stamp
            self._put(changed)
            return changed

    # ------------------------------------------------------------------ declared fields

    def declare_field(self, field: DeclaredField) -> None:
        """Add (or redefine) a field with its describe metadata, e.g. a custom field."""
        with self.lock:
            self._ensure_object(field.sobject)
            sobject = self._names[field.sobject.lower()]
            lower = field.name.lower()
            if lower in READ_ONLY:
                raise RecordError(f"{field.name} is a standard field")
            self._fields[sobject][lower] = FieldInfo(field.name, DECLARED_TYPES[field.type])
            declared = DeclaredField(
                sobject, field.name, field.type, field.length, field.updateable, field.values
            )
            self._declared.setdefault(sobject, {})[lower] = declared

    def describe(self, sobject: str) -> list[dict[str, Any]]:
        """Every field of the object as describe lists it (name, type, length, updateable)."""
        with self.lock:
            declared = self._declared.get(sobject, {})
            return [
                self._describe_field(sobject, lower, info, declared.get(lower))
                for lower, info in self._fields.get(sobject, {}).items()
            ]

    @staticmethod
    def _describe_field(
        sobject: str, lower: str, info: FieldInfo, field: DeclaredField | None
    ) -> dict[str, Any]:
        """One field's describe entry; a standard default shows as ``defaultedOnCreate``."""
        default = None if field else default_of(sobject, info.name)
        values = field.values if field else PICKLISTS.get((sobject, lower), ())
        kind = field.type if field else _DESCRIBE_TYPE.get(info.type, info.type)
        if values and field is None:
            kind = "picklist"
        length = field.length if field else (255 if info.type == "string" else 0)
        updateable = field.updateable if field else lower not in READ_ONLY
        entry: dict[str, Any] = {
            "name": info.name,
            "type": kind,
            "length": length or 0,
            "updateable": updateable,
            "createable": updateable,
            "custom": info.name.endswith("__c"),
            # A field the org always fills in (a checkbox, Lead.Status) is never null.
            "nillable": lower not in READ_ONLY and default is None,
            "defaultedOnCreate": default is not None,
            "defaultValue": default if isinstance(default, bool) else None,
        }
        if values:
            entry["picklistValues"] = [
                {"value": value, "label": value, "active": True, "defaultValue": value == default}
                for value in values
            ]
        if info.target is not None:
            entry["referenceTo"] = [info.target]
            entry["relationshipName"] = relationship_name(info.name)
        return entry

    def delete(self, sobject: str, record_id: str) -> None:
        """Move a record to the recycle bin: ``IsDeleted`` true, gone from ``query``."""
        self.set_deleted(sobject, record_id, True)

    def patch(self, sobject: str, record_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """An API user's update: checked as Salesforce checks it, else :class:`FieldUpdateError`."""
        with self.lock:
            normalized = normalize_id(record_id) if isinstance(record_id, str) else None
            if normalized is None:
                raise FieldUpdateError("MALFORMED_ID", f"malformed id {record_id}", ["Id"])
            current = self._by_id.get(normalized)
            if current is None or current[TYPE_KEY] != sobject:
                raise FieldUpdateError(
                    "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["Id"]
                )
            if current.get("IsDeleted"):
                raise FieldUpdateError("ENTITY_IS_DELETED", "entity is deleted")
            for name, value in fields.items():
                self._check_value(sobject, name, value)
            try:
                return self.update(sobject, normalized, fields, allow_new_fields=False)
            except RecordError as exc:
                raise FieldUpdateError("INVALID_TYPE_ON_FIELD_IN_RECORD", str(exc)) from exc

    def check_create(self, sobject: str, fields: Mapping[str, Any]) -> None:
        """Refuse a new record as Salesforce would (:class:`FieldUpdateError`): an Id, an
        unknown or read-only field, a bad value, a lookup to no record (WhoId: a Lead or
        Contact)."""
        with self.lock:
            for name, value in fields.items():
                if name.lower() == "id":
                    raise FieldUpdateError(
                        "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"]
                    )
                self._check_value(sobject, name, value)
                info = self._fields[sobject][name.lower()]
                if info.type == "reference" and value is not None:
                    self._check_lookup(info.name, value)

    def _check_lookup(self, name: str, value: Any) -> None:
        target = self._by_id.get(normalize_id(value) or "") if isinstance(value, str) else None
        if target is None or target.get("IsDeleted"):
            raise FieldUpdateError(
                "INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {name}", [name]
            )
        if name == "WhoId" and target[TYPE_KEY] not in ("Lead", "Contact"):
            raise FieldUpdateError(
                "FIELD_INTEGRITY_EXCEPTION", "Contact/Lead ID: id value of incorrect type", [name]
            )

    def _check_value(self, sobject: str, name: str, value: Any) -> None:
        lower = name.lower()
        info = self._fields[sobject].get(lower)
        if info is None:
            raise FieldUpdateError(
                "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}", [name]
            )
        field = self._declared.get(sobject, {}).get(lower)
        if lower in READ_ONLY or (field is not None and not field.updateable):
            raise FieldUpdateError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {info.name}. Please check the security "
                "settings of this field and verify that it is read/write for your profile "
                "or permission set.",
                [info.name],
            )
        if field is None or value is None:
            return
        if info.type == "string":
            if not isinstance(value, str):
                raise FieldUpdateError(
                    "INVALID_TYPE_ON_FIELD_IN_RECORD",
                    f"{info.name}: value not of required type: {value!r}",
                    [info.name],
                )
            if field.length is not None and len(value) > field.length:
                raise FieldUpdateError(
                    "STRING_TOO_LONG",
                    f"{info.name}: data value too large: {value[:40]} (max length={field.length})",
                    [info.name],
                )
            if field.values and value not in field.values:
                raise FieldUpdateError(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{info.name}: bad value for restricted picklist field: {value}",
                    [info.name],
                )

    def set_deleted(self, sobject: str, record_id: str, deleted: bool) -> dict[str, Any]:
        """Move a record to the recycle bin (``IsDeleted``) or back, stamping it modified."""
        with self.lock:
            current = self.get(sobject, record_id)
            if current is None:
                raise KeyError(record_id)
            stamp = now_ms()
            changed = {**current, "IsDeleted": deleted}
            changed["LastModifiedDate"] = changed["SystemModstamp"] = stamp
            self._put(changed)
            return changed

    # ------------------------------------------------------------------ internals

    def _ensure_object(self, sobject: str) -> None:
        if sobject in self._fields:
            return
        self._names[sobject.lower()] = sobject
        prefix = KEY_PREFIXES.get(sobject)
        if prefix is None:
            prefix = f"a{len(self._prefixes):02d}"
        self._prefixes[prefix] = sobject
        self._prefix_for[sobject] = prefix
        self._fields[sobject] = built_in_fields(sobject)
        self._objects[sobject] = {}

    def _learn_fields(self, sobject: str, records: list[dict[str, Any]]) -> None:
        self._ensure_object(sobject)
        fields = self._fields[sobject]
        new_names: dict[str, str] = {}
        for record in records:
            for name in record:
                if not _NAME.match(name):
                    raise RecordError(f"{sobject}: {name!r} is not a field name")
                if name.lower() not in fields:
                    new_names.setdefault(name.lower(), name)
        for lower, name in new_names.items():
            values = [r.get(name) for r in records]
            kind, _ = _infer(name, values)
            target = None
            if kind == "reference":
                target = self._target_of(values)
                if target is None:
                    kind = "string"
            fields[lower] = FieldInfo(name, kind, target)

    def _target_of(self, values: list[Any]) -> str | None:
        for value in values:
            if isinstance(value, str):
                found = self._prefixes.get(value[:3])
                if found is not None:
                    return found
        return None

    def _coerce(self, info: FieldInfo, value: Any) -> Any:
        if value is None:
            return None
        kind = info.type
        if kind == "datetime":
            return parse_datetime(value, info.name)
        if kind == "date":
            if isinstance(value, date):
                return value
            if isinstance(value, str) and _DATE.match(value):
                return date.fromisoformat(value)
            raise RecordError(f"{info.name}: {value!r} is not a date (2024-01-01)")
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            raise RecordError(f"{info.name}: {value!r} is not true or false")
        if kind == "number":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
            raise RecordError(f"{info.name}: {value!r} is not a number")
        if kind in ("id", "reference"):
            normalized = normalize_id(value) if isinstance(value, str) else None
            if normalized is None:
                raise RecordError(f"{info.name}: {value!r} is not a Salesforce Id")
            return normalized
        if not isinstance(value, str):
            raise RecordError(f"{info.name}: {value!r} is not a string")
        return value

    def _prepare(self, sobject: str, raw: dict[str, Any]) -> dict[str, Any]:
        fields = self._fields[sobject]
        record: dict[str, Any] = {}
        for name, value in raw.items():
            info = fields[name.lower()]
            record[info.name] = self._coerce(info, value)
        record_id = record.get("Id")
        existing = self._by_id.get(record_id) if record_id else None
        if existing is not None:
            if existing[TYPE_KEY] != sobject:
                raise RecordError(f"Id {record_id} belongs to a {existing[TYPE_KEY]}")
            merged = {**existing, **record}
            if "LastModifiedDate" not in record and "SystemModstamp" not in record:
                stamp = now_ms()
                merged["LastModifiedDate"] = merged["SystemModstamp"] = stamp
            return self._fill_defaults(sobject, merged, created=False)
        if record_id is None:
            record["Id"] = self._new_id(sobject)
        elif self._prefixes.get(record_id[:3], sobject) != sobject:
            raise RecordError(f"Id {record_id} has the key prefix of another object")
        created = record.get("CreatedDate") or now_ms()
        record["CreatedDate"] = created
        record.setdefault("LastModifiedDate", record.get("SystemModstamp") or created)
        record.setdefault("SystemModstamp", record["LastModifiedDate"])
        record.setdefault("IsDeleted", False)
        record[TYPE_KEY] = sobject
        return self._fill_defaults(sobject, record, created=True)

    def _fill_defaults(
        self, sobject: str, record: dict[str, Any], *, created: bool
    ) -> dict[str, Any]:
        """Give the standard fields their defaults: all left out of a new record, and any
        checkbox that is null (a field redeclared with another type keeps what it has)."""
        fields = self._fields[sobject]
        for name, default in DEFAULTS.get(sobject, {}).items():
            info = fields.get(name.lower())
            kind = "boolean" if isinstance(default, bool) else "string"
            if info is None or info.type != kind:
                continue
            if (created and name not in record) or (kind == "boolean" and record.get(name) is None):
                record[name] = default
        return record

    def _new_id(self, sobject: str) -> str:
        while True:
            number = next(self._counter)
            body = _base62(number).rjust(9, "0")
            id15 = f"{self._prefix_for[sobject]}8d0{body}"
            candidate = id15 + id_suffix(id15)
            if candidate not in self._by_id:
                return candidate

    def _put(self, record: dict[str, Any]) -> None:
        self._objects[record[TYPE_KEY]][record["Id"]] = record
        self._by_id[record["Id"]] = record


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _base62(number: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    return "".join(reversed(digits)) or "0"
