"""Calls written back to Salesforce, the pure part: a call as a Task, or as record fields.

No I/O. :func:`task_record` builds one record of an sObject Collections
create (a completed call Task); :func:`lookup_query` finds the Tasks already
written for some calls by their ``CallObject``; :func:`create_outcome` reads
one per-record result of a create, where an unreadable one means *in doubt*
(the Task may exist); :func:`field_values` builds the record's fields for
``mode: fields``; :func:`task_problems` and :func:`call_field_problems` check
the fields against describe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncd.domain.writeback import DONE, classify, salesforce_datetime

#: The Task may or may not have been created: look it up before trying again.
IN_DOUBT = "in_doubt"
#: Key prefixes of the records a Task names in WhoId (Lead, Contact); others go in WhatId.
WHO_PREFIXES = ("00Q", "003")
#: Lengths of the Task's text fields in every org.
SUBJECT_LENGTH = 255
DISPOSITION_LENGTH = 255
CALL_OBJECT_LENGTH = 255
DESCRIPTION_LENGTH = 32_000
#: The Task fields syncd writes: describe must list each as createable.
TASK_FIELDS = (
    "WhoId",
    "WhatId",
    "Subject",
    "Status",
    "Type",
    "TaskSubtype",
    "CallDisposition",
    "CallDurationInSeconds",
    "CallObject",
    "ActivityDate",
    "Description",
)
_TEXT_TYPES = frozenset({"string", "textarea", "picklist"})


@dataclass(frozen=True)
class Call:
    """One call outcome, as written back."""

    call_key: str
    salesforce_id: str
    outcome: str | None
    disposition: str | None
    raw_disposition: str | None
    duration_seconds: int | None
    started_at: datetime | None
    ended_at: datetime | None
    recording_url: str | None
    received_at: datetime

    @property
    def called_at(self) -> datetime:
        """When the call started, else when its hook arrived."""
        return self.started_at or self.received_at


@dataclass(frozen=True)
class CallFields:
    """Fields of the synced object that receive the last call (``mode: fields``)."""

    outcome: str | None = None
    disposition: str | None = None
    called_at: str | None = None

    def names(self) -> dict[str, str]:
        found = {"outcome": self.outcome, "disposition": self.disposition}
        found["called_at"] = self.called_at
        return {kind: name for kind, name in found.items() if name is not None}


def subject(template: str, call: Call) -> str:
    """``template`` with ``{outcome}`` and ``{disposition}`` filled in, cut to 255."""
    text = template.replace("{outcome}", call.outcome or "unknown")
    text = text.replace("{disposition}", call.disposition or call.outcome or "unknown")
    return " ".join(text.split())[:SUBJECT_LENGTH] or "Call"


def _moment(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value is not None else None


def description(call: Call) -> str:
    """The Task's Description: every value of the call, one per line."""
    disposition = call.disposition
    if disposition and call.raw_disposition and call.raw_disposition != disposition:
        disposition = f"{disposition} (SimZ: {call.raw_disposition})"
    duration = f"{call.duration_seconds} s" if call.duration_seconds is not None else None
    lines = [
        ("Outcome", call.outcome),
        ("Disposition", disposition),
        ("Duration", duration),
        ("Started", _moment(call.started_at)),
        ("Ended", _moment(call.ended_at)),
        ("Recording", call.recording_url),
        ("SimZ call", call.call_key),
    ]
    return "\n".join(f"{name}: {value}" for name, value in lines if value)[:DESCRIPTION_LENGTH]


def task_record(call: Call, subject_template: str) -> dict[str, Any]:
    """One completed call Task for an sObject Collections create."""
    target = "WhoId" if call.salesforce_id.startswith(WHO_PREFIXES) else "WhatId"
    record: dict[str, Any] = {
        "attributes": {"type": "Task"},
        target: call.salesforce_id,
        "Subject": subject(subject_template, call),
        "Status": "Completed",
        "Type": "Call",
        "TaskSubtype": "Call",
        "CallObject": call.call_key[:CALL_OBJECT_LENGTH],
        "ActivityDate": call.called_at.astimezone(UTC).date().isoformat(),
        "Description": description(call),
    }
    if call.disposition:
        record["CallDisposition"] = call.disposition[:DISPOSITION_LENGTH]
    if call.duration_seconds is not None and call.duration_seconds >= 0:
        record["CallDurationInSeconds"] = call.duration_seconds
    return record


def create_body(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The sObject Collections create body, ``allOrNone`` false: each record on its own."""
    return {"allOrNone": False, "records": list(records)}


def _soql_text(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return "'" + escaped.replace("\n", "\\n").replace("\r", "\\r") + "'"


def lookup_query(call_keys: Sequence[str]) -> str:
    """``SELECT Id, CallObject, WhoId, WhatId FROM Task WHERE CallObject IN (...)``."""
    if not call_keys:
        raise ValueError("no call keys to look up")
    keys = ", ".join(_soql_text(key[:CALL_OBJECT_LENGTH]) for key in dict.fromkeys(call_keys))
    return f"SELECT Id, CallObject, WhoId, WhatId FROM Task WHERE CallObject IN ({keys})"


def found_tasks(records: Sequence[Any]) -> dict[tuple[str, str], str]:
    """(CallObject, the record's Id) -> Task Id, from the lookup's records.

    The record is WhoId or WhatId, compared on its first 15 characters (an Id's
    18-character form only adds a case suffix).
    """
    found: dict[tuple[str, str], str] = {}
    for record in records:
        if not isinstance(record, Mapping):
            continue
        task_id, key = record.get("Id"), record.get("CallObject")
        if not isinstance(task_id, str) or not isinstance(key, str):
            continue
        for target in (record.get("WhoId"), record.get("WhatId")):
            if isinstance(target, str) and target:
                found.setdefault((key, target[:15]), task_id)
    return found


def task_of(found: Mapping[tuple[str, str], str], call: Call) -> str | None:
    """The Task already written for ``call``, if the lookup found one."""
    return found.get((call.call_key[:CALL_OBJECT_LENGTH], call.salesforce_id[:15]))


def create_outcome(result: Any) -> tuple[str, str | None, str | None]:
    """One per-record result of a create: (done | retry | failed | in_doubt, error, Task Id).

    A result that does not say clearly what happened is *in doubt*: the Task
    may exist, so it is looked up before the call is written again.
    """
    if not isinstance(result, Mapping):
        return IN_DOUBT, "unreadable result for this record", None
    if result.get("success") is True:
        task_id = result.get("id")
        if isinstance(task_id, str) and task_id:
            return DONE, None, task_id
        return IN_DOUBT, "created, but the answer has no Id", None
    if not isinstance(result.get("errors"), list) or not result.get("errors"):
        return IN_DOUBT, "unreadable result for this record", None
    outcome, error = classify(result)
    return outcome, error, None


def create_outcomes(answer: Any, count: int) -> list[tuple[str, str | None, str | None]]:
    """The ``count`` per-record outcomes of one create answer, in request order."""
    if not isinstance(answer, list):
        return [(IN_DOUBT, "the answer is not a list of results", None)] * count
    found = [create_outcome(item) for item in answer[:count]]
    missing = count - len(found)
    return found + [(IN_DOUBT, "no result for this record in the answer", None)] * missing


def field_values(fields: CallFields, call: Call) -> dict[str, Any]:
    """The configured fields of the record for the call: field API name -> value."""
    values: dict[str, Any] = {}
    if fields.outcome is not None:
        values[fields.outcome] = call.outcome
    if fields.disposition is not None:
        values[fields.disposition] = call.disposition
    if fields.called_at is not None:
        values[fields.called_at] = salesforce_datetime(call.called_at)
    return values


def task_problems(described: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per Task field syncd writes that is missing or not createable."""
    by_name = {str(f.get("name", "")).lower(): f for f in described}
    problems = []
    for name in TASK_FIELDS:
        found = by_name.get(name.lower())
        if found is None:
            problems.append(f"call_writeback: Task.{name} does not exist")
        elif not found.get("createable", False):
            problems.append(
                f"call_writeback: Task.{name} is not createable by the integration user"
            )
    return problems


def call_field_problems(
    sobject: str, fields: CallFields, described: Sequence[Mapping[str, Any]]
) -> list[str]:
    """One line per configured call field that is missing, not updateable or of the wrong
    type (outcome, disposition: text or picklist; called_at: datetime)."""
    by_name = {str(f.get("name", "")).lower(): f for f in described}
    problems: list[str] = []
    for kind, name in fields.names().items():
        label = f"call_writeback.fields.{kind}: {sobject}.{name}"
        found = by_name.get(name.lower())
        if found is None:
            problems.append(f"{label} does not exist")
            continue
        if not found.get("updateable", False):
            problems.append(f"{label} is not updateable by the integration user")
        allowed = frozenset({"datetime"}) if kind == "called_at" else _TEXT_TYPES
        kind_type = str(found.get("type", ""))
        if kind_type not in allowed:
            problems.append(
                f"{label} is a {kind_type or 'unknown'} field; "
                f"expected {' or '.join(sorted(allowed))}"
            )
    return problems
