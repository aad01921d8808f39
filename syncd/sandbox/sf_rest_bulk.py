"""Bulk API 2.0 query jobs over REST in the Salesforce emulator (:mod:`.sf_bulk` keeps the jobs).

``POST jobs/query`` evaluates the query at once, with the same SOQL checks as
the REST query, and logs it (session ``bulk``); ``GET jobs/query/{id}``,
``GET jobs/query/{id}/results`` and ``DELETE jobs/query/{id}`` read and
forget the job; ``PATCH jobs/query/{id}`` with ``{"state": "Aborted"}`` aborts
it. Refusals are Salesforce's error shape with the job's codes.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from syncd.sandbox.sf_bulk import BulkError, BulkQueries, job_rows
from syncd.sandbox.sf_reply import Reply, error_reply, json_reply, method_not_allowed
from syncd.sandbox.sf_rest_query import QueryLog
from syncd.sandbox.sf_soql import SoqlError, compile_query
from syncd.sandbox.sf_store import RecordStore


class BulkApi:
    """Create, status, results and delete of query jobs over ``store``."""

    def __init__(self, store: RecordStore, jobs: BulkQueries, log: QueryLog) -> None:
        self.store = store
        self.jobs = jobs
        self.log = log

    def call(
        self, method: str, version: str, job: str | None, results: bool, query: str, body: bytes
    ) -> Reply:
        """One call on ``jobs/query`` (``job`` None) or on one job (``results``: its rows)."""
        try:
            if job is None and method == "POST":
                return json_reply(200, self._create(version, body))
            if job is not None and results and method == "GET":
                return self._results(job, query)
            if job is not None and not results and method == "GET":
                return json_reply(200, self.jobs.status(job))
            if job is not None and not results and method == "PATCH":
                return json_reply(200, self.jobs.abort(job, _json_body(body).get("state")))
            if job is not None and not results and method == "DELETE":
                self.jobs.delete(job)
                return Reply(204, b"")
        except BulkError as exc:
            return error_reply(exc.status, exc.code, exc.message)
        except ValueError:
            return error_reply(400, "INVALIDJOB", "maxRecords must be a number")
        return method_not_allowed(method)

    def _results(self, job: str, query: str) -> Reply:
        params = parse_qs(query)
        locator = params.get("locator", [""])[0] or None
        max_records = int(params.get("maxRecords", ["0"])[0] or 0) or None
        page, following, count = self.jobs.results(job, locator, max_records)
        return Reply(
            200,
            page,
            content_type="text/csv",
            headers={"Sforce-Locator": following, "Sforce-NumberOfRecords": str(count)},
        )

    def _create(self, version: str, body: bytes) -> dict[str, Any]:
        request = _json_body(body)
        operation = request.get("operation")
        soql = request.get("query")
        if operation not in ("query", "queryAll") or not isinstance(soql, str):
            raise BulkError(400, "INVALIDJOB", "operation (query, queryAll) and query are required")
        try:
            sobject, header, lines = self._evaluate(soql, operation, version)
        except SoqlError as exc:
            raise BulkError(400, exc.code, exc.message) from None
        self.log.log(soql, "bulk", page=False, offset=0, rows=len(lines))
        return self.jobs.create(operation, sobject, version, header, lines)

    def _evaluate(
        self, soql: str, operation: str, version: str
    ) -> tuple[str, list[str], list[list[str]]]:
        """The job's sobject, CSV header and lines; Bulk refuses what it cannot stream."""
        store = self.store
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
            header, lines = job_rows(rows, compiled.paths, lambda r: compiled.project(r, version))
        return compiled.sobject, header, lines


def _json_body(body: bytes) -> dict[str, Any]:
    """A request's JSON object (empty when it is not an object); BulkError if not JSON."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        raise BulkError(400, "INVALIDJOB", "the body is not JSON") from None
    return request if isinstance(request, dict) else {}
