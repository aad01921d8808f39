"""A minimal Bulk API 2.0 query job for the Salesforce emulator.

``POST jobs/query`` evaluates the query at once against a snapshot (no ORDER
BY, LIMIT, OFFSET or COUNT(), which Bulk API 2.0 refuses) and answers
``UploadComplete``; the job answers ``InProgress`` to its first status check
and ``JobComplete`` afterwards, so a client has to poll. ``GET
jobs/query/{id}/results`` serves CSV pages of ``maxRecords`` rows with the
``Sforce-Locator`` of the next page (``null`` on the last) and
``Sforce-NumberOfRecords``; ``PATCH`` with ``{"state": "Aborted"}`` aborts a job;
``DELETE`` forgets it. Values are written as Bulk writes them: text, empty for
null, datetimes ending in ``Z``. With :attr:`BulkQueries.slow` set, jobs stay
``InProgress`` (a large job's long wait, to rehearse stopping a backfill).
"""

from __future__ import annotations

import csv
import io
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Rows per results page when the client gives no maxRecords.
DEFAULT_MAX_RECORDS = 50_000


class BulkError(Exception):
    """A request the emulator refuses: HTTP status, Salesforce error code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class _Job:
    id: str
    operation: str
    sobject: str
    version: str
    header: list[str]
    rows: list[list[str]]
    created: str
    polled: bool = False
    aborted: bool = False

    @property
    def state(self) -> str:
        if self.aborted:
            return "Aborted"
        return "JobComplete" if self.polled else "InProgress"

    def info(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject,
            "createdDate": self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.version),
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }
        if self.polled:
            body["numberRecordsProcessed"] = len(self.rows)
        return body


def csv_value(value: Any, kind: str = "string") -> str:
    """A JSON field value as Bulk API 2.0 writes it in CSV: null is empty.

    A datetime (``kind``) ends in ``Z`` where the REST API's JSON has ``+0000``.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "datetime" and isinstance(value, str) and value.endswith("+0000"):
        return value[:-5] + "Z"
    return str(value)


def flatten(record: dict[str, Any], names: Sequence[str]) -> Any:
    """The value at a relationship path of a projected JSON record (None past a null)."""
    node: Any = record
    for name in names:
        if not isinstance(node, dict):
            return None
        node = node.get(name)
    return node


class BulkQueries:
    """The query jobs of one emulator."""

    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        #: Jobs stay ``InProgress`` while this is set (a test or rehearsal sets it).
        self.slow = False
        #: The ids of the jobs aborted, in order.
        self.aborted: list[str] = []

    def create(
        self,
        operation: str,
        sobject: str,
        version: str,
        header: list[str],
        rows: list[list[str]],
    ) -> dict[str, Any]:
        job = _Job(
            id="750" + secrets.token_hex(6).upper() + "AAA",
            operation=operation,
            sobject=sobject,
            version=version,
            header=header,
            rows=rows,
            created=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        )
        with self._lock:
            self._jobs[job.id] = job
        return {**job.info(), "state": "UploadComplete"}

    def _job(self, job_id: str) -> _Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise BulkError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def status(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        info = job.info()
        if not self.slow:
            job.polled = True
        return info

    def abort(self, job_id: str, state: Any) -> dict[str, Any]:
        """``PATCH`` a job with ``{"state": "Aborted"}``: it stops, its results are gone."""
        job = self._job(job_id)
        if state != "Aborted":
            raise BulkError(400, "INVALIDJOB", "a query job can only be set to Aborted")
        if job.state == "JobComplete":
            raise BulkError(400, "INVALIDJOB", f"job {job_id} is complete: it cannot be aborted")
        job.aborted = True
        with self._lock:
            self.aborted.append(job_id)
        return job.info()

    def delete(self, job_id: str) -> None:
        self._job(job_id)
        with self._lock:
            self._jobs.pop(job_id, None)

    def results(
        self, job_id: str, locator: str | None, max_records: int | None
    ) -> tuple[bytes, str, int]:
        """One CSV page, the next page's locator ("null" for none) and its row count."""
        job = self._job(job_id)
        if job.state != "JobComplete":
            raise BulkError(400, "API_ERROR", f"job {job_id} is not complete ({job.state})")
        try:
            offset = int(locator, 16) if locator else 0
        except ValueError:
            raise BulkError(400, "INVALIDLOCATOR", "invalid locator") from None
        if offset < 0 or offset > len(job.rows):
            raise BulkError(400, "INVALIDLOCATOR", "invalid locator")
        size = max_records or DEFAULT_MAX_RECORDS
        page = job.rows[offset : offset + size]
        end = offset + len(page)
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(job.header)
        writer.writerows(page)
        following = format(end, "x") if end < len(job.rows) else "null"
        return out.getvalue().encode("utf-8"), following, len(page)


def job_rows(
    records: Sequence[Any],
    paths: Sequence[Any],
    project: Callable[[Any], dict[str, Any]],
) -> tuple[list[str], list[list[str]]]:
    """The CSV header (field paths as queried) and one row per record."""
    header = [".".join(path.names) for path in paths]
    rows = []
    for record in records:
        projected = project(record)
        rows.append([csv_value(flatten(projected, path.names), path.field.type) for path in paths])
    return header, rows
