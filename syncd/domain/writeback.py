"""Write-back, the pure part: a lead's outcome as record fields, and Salesforce's answer.

No I/O. :func:`record_values` builds one record of an sObject Collections
update; :func:`classify` reads one per-record result (done, retry or failed);
:func:`field_problems` checks the configured fields against the object's
describe.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DONE = "done"
RETRY = "retry"
FAILED = "failed"

#: Field length used for the error when describe could not tell it.
DEFAULT_ERROR_LENGTH = 255

#: Per-record error codes that clear up by themselves: try the record again later.
RETRY_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "REQUEST_LIMIT_EXCEEDED",
        "SERVER_UNAVAILABLE",
        "UNKNOWN_EXCEPTION",
        "TXN_SECURITY_METERING_ERROR",
    }
)

#: Error codes that mean a configured field is missing or may not be written: every
#: write of the sync fails the same way until the field or the config is fixed.
FIELD_ERROR_CODES = ("INVALID_FIELD_FOR_INSERT_UPDATE", "INVALID_FIELD")


def field_error(text: str | None) -> bool:
    """Whether an error text (``CODE: message``, perhaps after a prefix) is a field error."""
    return bool(text) and any(code in str(text) for code in FIELD_ERROR_CODES)


#: Describe types each write-back value may go into.
ALLOWED_TYPES: dict[str, frozenset[str]] = {
    "status": frozenset({"string", "textarea", "picklist"}),
    "batch_id": frozenset({"string", "textarea", "picklist"}),
    "error": frozenset({"string", "textarea", "picklist"}),
    "sent_at": frozenset({"datetime"}),
}


@dataclass(frozen=True)
class WritebackFields:
    """Fields of the synced object that receive a lead's outcome; any subset."""

    status: str | None = None
    batch_id: str | None = None
    sent_at: str | None = None
    error: str | None = None

    def names(self) -> dict[str, str]:
        """Value kind -> field API name, for the fields that are set."""
        found = {
            "status": self.status,
            "batch_id": self.batch_id,
            "sent_at": self.sent_at,
            "error": self.error,
        }
        return {kind: name for kind, name in found.items() if name is not None}


@functools.lru_cache(maxsize=256)
def salesforce_datetime(value: datetime) -> str:
    """Salesforce's JSON datetime in UTC, e.g. ``2024-01-31T12:00:00.000+0000``."""
    if value.tzinfo is None:
        raise ValueError("a Salesforce datetime needs an aware datetime")
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def error_text(code: str | None, message: str | None, length: int) -> str | None:
    """``code: message`` (or whichever is set), cut to ``length`` characters."""
    parts = [part.strip() for part in (code, message) if part and part.strip()]
    if not parts:
        return None
    return ": ".join(parts)[: max(1, length)]


def record_values(
    fields: WritebackFields,
    *,
    state: str,
    simz_batch_id: str | None,
    sent_at: datetime | None,
    error_code: str | None,
    error_message: str | None,
    error_length: int = DEFAULT_ERROR_LENGTH,
) -> dict[str, Any]:
    """The configured fields of one record: field API name -> value (None clears it)."""
    values: dict[str, Any] = {}
    if fields.status is not None:
        values[fields.status] = state
    if fields.batch_id is not None:
        values[fields.batch_id] = simz_batch_id
    if fields.sent_at is not None:
        values[fields.sent_at] = salesforce_datetime(sent_at) if sent_at is not None else None
    if fields.error is not None:
        values[fields.error] = error_text(error_code, error_message, error_length)
    return values


def collection_body(
    sobject: str, records: Sequence[tuple[str, Mapping[str, Any]]]
) -> dict[str, Any]:
    """The sObject Collections update body for (Id, values) pairs, ``allOrNone`` false."""
    return {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": sobject}, "id": record_id, **values}
            for record_id, values in records
        ],
    }


def classify(result: Any) -> tuple[str, str | None]:
    """One per-record result as (done | retry | failed, ``CODE: message`` or None)."""
    if not isinstance(result, Mapping):
        return RETRY, "unreadable result for this record"
    if result.get("success") is True:
        return DONE, None
    errors = result.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else {}
    if not isinstance(first, Mapping):
        first = {}
    code = str(first.get("statusCode") or "UNKNOWN")
    message = str(first.get("message") or "").strip()
    fields = first.get("fields")
    if isinstance(fields, list) and fields:
        message = f"{message} (fields: {', '.join(str(f) for f in fields)})".strip()
    text = f"{code}: {message}" if message else code
    return (RETRY if code in RETRY_CODES else FAILED), text


def classify_all(results: Any, count: int) -> list[tuple[str, str | None]]:
    """The ``count`` per-record outcomes of one answer, in request order.

    An answer that is not a list, or is shorter than the request, leaves the
    records it does not cover to be retried: nothing is taken as written
    without Salesforce saying so.
    """
    if not isinstance(results, list):
        return [(RETRY, "the answer is not a list of results")] * count
    found = [classify(item) for item in results[:count]]
    missing = count - len(found)
    return found + [(RETRY, "no result for this record in the answer")] * missing


def field_problems(
    sobject: str, fields: WritebackFields, described: Sequence[Mapping[str, Any]]
) -> list[str]:
    """One line per configured field that is missing, not updateable or of the wrong type."""
    by_name = {str(f.get("name", "")).lower(): f for f in described}
    problems: list[str] = []
    for kind, name in fields.names().items():
        found = by_name.get(name.lower())
        if found is None:
            problems.append(f"writeback.fields.{kind}: {sobject}.{name} does not exist")
            continue
        if not found.get("updateable", False):
            problems.append(
                f"writeback.fields.{kind}: {sobject}.{name} is not updateable "
                "by the integration user"
            )
        kind_type = str(found.get("type", ""))
        allowed = ALLOWED_TYPES[kind]
        if kind_type not in allowed:
            problems.append(
                f"writeback.fields.{kind}: {sobject}.{name} is a {kind_type or 'unknown'} "
                f"field; expected {' or '.join(sorted(allowed))}"
            )
    return problems


def error_length(fields: WritebackFields, described: Sequence[Mapping[str, Any]]) -> int:
    """The length of the configured error field from describe, else the default."""
    if fields.error is None:
        return DEFAULT_ERROR_LENGTH
    for found in described:
        if str(found.get("name", "")).lower() == fields.error.lower():
            length = found.get("length")
            if isinstance(length, int) and length > 0:
                return length
    return DEFAULT_ERROR_LENGTH
