"""Records over REST in the Salesforce emulator: one sObject, its describe, collections updates.

* ``GET``/``PATCH sobjects/{type}/{id}``: every field of one record, or an
  update checked as Salesforce checks it (404 for an Id that is not there).
* ``GET sobjects/{type}/describe``: the fields' metadata.
* ``PATCH composite/sobjects``: at most :data:`COLLECTION_LIMIT` records,
  each on its own (``allOrNone`` false), answered in request order; rows can
  be made to fail ``UNABLE_TO_LOCK_ROW`` (:meth:`RecordsApi.lock_rows`), and
  every call is logged, so tests can see how the write-back batches.
* ``POST composite/sobjects``: the sObject Collections create, the same way:
  each new record checked as Salesforce checks it (no Id, known and createable
  fields, lookups to records that exist), answered ``{id, success, errors}``
  in request order. A created record publishes its own CREATE event; the
  records it looks up (a Task's WhoId) are not changed. The next creates can be
  made to fail with an error code (:meth:`RecordsApi.fail_creates`), and the
  next create calls to succeed with their answer lost: the connection closes
  without one (:meth:`RecordsApi.lose_create_answers`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from syncd.sandbox.sf_reply import Reply, error_reply, json_reply, method_not_allowed, not_found
from syncd.sandbox.sf_soql import to_json_value
from syncd.sandbox.sf_store import FieldUpdateError, RecordError, RecordStore
from syncd.sandbox.sf_writes import RecordWriter

#: Records one sObject Collections call may carry.
COLLECTION_LIMIT = 200


class RecordsApi:
    """The record routes over ``writer``'s store; writes go through ``writer``."""

    def __init__(self, store: RecordStore, writer: RecordWriter) -> None:
        self.store = store
        self.writer = writer
        self._lock = threading.Lock()
        self._write_log: list[dict[str, Any]] = []
        self._locked_ids: set[str] = set()
        self._lock_next = 0
        self._create_failures: list[tuple[str, str]] = []  # (code, message), one per record
        self._lost_answers = 0

    # ------------------------------------------------------------------ one record

    def sobject(
        self, method: str, sobject: str, record_id: str, body: bytes, version: str
    ) -> Reply:
        canonical = self.store.object_name(sobject)
        if canonical is None:
            return error_reply(
                404, "NOT_FOUND", f"The requested resource does not exist: {sobject}"
            )
        if method == "GET":
            return self._get(canonical, record_id, version)
        if method != "PATCH":
            return method_not_allowed(method)
        return self._patch(canonical, record_id, body)

    def _get(self, sobject: str, record_id: str, version: str) -> Reply:
        record = self.store.get(sobject, record_id)
        if record is None:
            return not_found()
        out: dict[str, Any] = {
            "attributes": {
                "type": sobject,
                "url": f"/services/data/v{version}/sobjects/{sobject}/{record['Id']}",
            }
        }
        for info in self.store.fields(sobject).values():
            out[info.name] = to_json_value(record.get(info.name))
        return json_reply(200, out)

    def _patch(self, sobject: str, record_id: str, body: bytes) -> Reply:
        try:
            fields = json.loads(body or b"{}")
        except ValueError:
            return error_reply(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
        if not isinstance(fields, dict):
            return error_reply(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        try:
            self.writer.patch(sobject, record_id, fields)
        except FieldUpdateError as exc:
            if exc.code in ("INVALID_CROSS_REFERENCE_KEY", "MALFORMED_ID"):
                return not_found()
            return json_reply(
                400, [{"message": exc.message, "errorCode": exc.code, "fields": exc.fields}]
            )
        return Reply(204, b"")

    def describe(self, sobject: str, version: str) -> Reply:
        canonical = self.store.object_name(sobject)
        if canonical is None:
            return error_reply(
                404, "NOT_FOUND", f"The requested resource does not exist: {sobject}"
            )
        return json_reply(
            200,
            {
                "name": canonical,
                "updateable": True,
                "queryable": True,
                "urls": {"describe": f"/services/data/v{version}/sobjects/{canonical}/describe"},
                "fields": self.store.describe(canonical),
            },
        )

    # ------------------------------------------------------------------ collections

    def update_collection(self, body: bytes) -> Reply:
        """``PATCH composite/sobjects``: each record on its own (allOrNone false), in order."""
        records = _collection_records(body)
        if isinstance(records, Reply):
            return records
        results = [self._update_one(record) for record in records]
        with self._lock:
            self._log_write("PATCH", results)
        return json_reply(200, results)

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
            self.writer.patch(canonical, str(record_id), fields)
        except FieldUpdateError as exc:
            return {"id": record_id, "success": False, "errors": [exc.as_error()]}
        return {"id": record_id, "success": True, "errors": []}

    def _log_write(self, method: str, results: list[dict[str, Any]]) -> None:
        """One entry of the write log (the caller holds ``_lock``)."""
        self._write_log.append(
            {
                "time": datetime.now(UTC).isoformat(),
                "method": method,
                "records": len(results),
                "succeeded": sum(1 for r in results if r["success"]),
            }
        )

    def create_collection(self, body: bytes) -> Reply:
        """``POST composite/sobjects``: each new record on its own (allOrNone false), in order."""
        records = _collection_records(body)
        if isinstance(records, Reply):
            return records
        results = [self._create_one(record) for record in records]
        with self._lock:
            self._log_write("POST", results)
            lost = self._lost_answers > 0
            self._lost_answers = max(0, self._lost_answers - 1)
        reply = json_reply(200, results)
        reply.lost = lost
        return reply

    def _create_one(self, record: Any) -> dict[str, Any]:
        try:
            if not isinstance(record, dict):
                raise FieldUpdateError("JSON_PARSER_ERROR", "a record must be an object")
            attributes = record.get("attributes")
            sobject_name = attributes.get("type") if isinstance(attributes, dict) else None
            canonical = self.store.object_name(str(sobject_name or ""))
            if canonical is None:
                raise FieldUpdateError(
                    "INVALID_TYPE", f"sObject type '{sobject_name}' is not supported."
                )
            fields = {k: v for k, v in record.items() if k != "attributes"}
            self.store.check_create(canonical, fields)
            failure = self._take_create_failure()
            if failure is not None:
                raise FieldUpdateError(*failure)
            try:
                [record_id] = self.writer.add([{**fields, "sobject": canonical}])
            except RecordError as exc:
                raise FieldUpdateError("INVALID_TYPE_ON_FIELD_IN_RECORD", str(exc)) from exc
        except FieldUpdateError as exc:
            return {"success": False, "errors": [exc.as_error()]}
        return {"id": record_id, "success": True, "errors": []}

    def fail_creates(
        self, count: int = 1, code: str = "UNABLE_TO_LOCK_ROW", message: str = ""
    ) -> None:
        """Refuse the next ``count`` records created (after their checks) with ``code``."""
        text = message or f"{code.lower().replace('_', ' ')} (injected)"
        with self._lock:
            self._create_failures.extend([(code, text)] * max(0, count))

    def _take_create_failure(self) -> tuple[str, str] | None:
        with self._lock:
            return self._create_failures.pop(0) if self._create_failures else None

    def lose_create_answers(self, count: int = 1) -> None:
        """The next ``count`` create calls do their work, then close without an answer."""
        with self._lock:
            self._lost_answers += max(0, count)

    def lock_rows(self, ids: Iterable[str] = (), count: int = 0) -> None:
        """Answer UNABLE_TO_LOCK_ROW once for each of ``ids`` and the next ``count`` records."""
        with self._lock:
            self._locked_ids.update(ids)
            self._lock_next += max(0, count)

    def _take_lock(self, record_id: str) -> bool:
        with self._lock:
            if record_id in self._locked_ids:
                self._locked_ids.discard(record_id)
                return True
            if self._lock_next > 0:
                self._lock_next -= 1
                return True
            return False

    def write_log(self) -> list[dict[str, Any]]:
        """Every sObject Collections call: time, method (PATCH, POST), records, succeeded."""
        with self._lock:
            return [dict(entry) for entry in self._write_log]


def _collection_records(body: bytes) -> list[Any] | Reply:
    """The records of an sObject Collections body, or the error Salesforce answers."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return error_reply(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list) or not records:
        return error_reply(400, "INVALID_FIELD", "records: a non-empty list is required")
    if len(records) > COLLECTION_LIMIT:
        return error_reply(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records "
            "into this call",
        )
    if data.get("allOrNone") not in (None, False):
        return error_reply(400, "INVALID_FIELD", "allOrNone true is not emulated")
    return records
