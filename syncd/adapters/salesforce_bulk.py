"""Read a query's records with a Bulk API 2.0 query job (large backfills).

A :class:`BulkQuerySource` has the same ``query_pages`` as
:class:`~syncd.adapters.salesforce.SalesforceSource`: it creates a query job,
polls it until ``JobComplete``, then yields the CSV result pages (chained by
``Sforce-Locator``) as records shaped like the REST API's, so the poll path
maps them the same way. Bulk API 2.0 refuses ORDER BY, so the query's is
dropped: pages come in no particular order, which a backfill does not need.

CSV carries text only: an empty value is read as null, a ``Rel.Field`` column
becomes a nested ``{"Rel": {"Field": ...}}``, and numbers, booleans and
datetimes stay text as Bulk writes them ("42", "true", "...Z"); a field may be
as long as Salesforce allows (a long text area: 131,072 characters and more once
quoted), above the csv module's default limit. Readers wrap
this source in a :class:`~syncd.adapters.canonical_source.CanonicalSource`,
which types them as the REST API does, so a record read either way maps to the
same lead (docs/design.md#one-canonical-form-of-a-record).

A ``stop`` event ends the read within a poll interval: a job still running is
aborted (``PATCH`` to ``Aborted``), no page is yielded after it, and the job is
deleted either way.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from syncd.adapters.salesforce import SalesforceSource, SalesforceUnavailable
from syncd.logs import get_logger

log = get_logger(__name__)

_ORDER_BY = re.compile(r"\s+ORDER\s+BY\s+.*$", re.IGNORECASE | re.DOTALL)
_DONE = "JobComplete"
_FAILED = ("Failed", "Aborted")
#: The longest CSV field read (the csv module's default, 131,072, is below what
#: Salesforce stores in a long text area once quotes are doubled).
FIELD_SIZE_LIMIT = 2**31 - 1


def without_order_by(soql: str) -> str:
    """The query without its trailing ORDER BY clause (Bulk API 2.0 refuses it)."""
    return _ORDER_BY.sub("", soql)


def records_from_csv(text: str) -> list[dict[str, Any]]:
    """Bulk CSV rows as REST-shaped records: empty is None, ``A.B`` columns nest."""
    if csv.field_size_limit() < FIELD_SIZE_LIMIT:
        csv.field_size_limit(FIELD_SIZE_LIMIT)
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        return []
    paths = [name.split(".") for name in header]
    records = []
    for row in reader:
        record: dict[str, Any] = {}
        for parts, value in zip(paths, row, strict=False):
            node = record
            for name in parts[:-1]:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = node[name] = {}
                node = child
            node[parts[-1]] = value if value != "" else None
        records.append(record)
    return records


class BulkQuerySource:
    """Runs queries as Bulk API 2.0 query jobs through a logged-in :class:`SalesforceSource`."""

    def __init__(
        self,
        source: SalesforceSource,
        *,
        page_size: int,
        poll_interval: float = 2.0,
        timeout: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
        stop: threading.Event | None = None,
    ) -> None:
        self.source = source
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.sleep = sleep
        self.stop = stop

    def _stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _pause(self) -> None:
        """Wait a poll interval, or less if ``stop`` is set meanwhile."""
        if self.stop is None:
            self.sleep(self.poll_interval)
        else:
            self.stop.wait(self.poll_interval)

    def api_usage(self) -> tuple[int, int] | None:
        return self.source.api_usage()

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        """Create the job, wait for it, yield its result pages; the job is deleted after.

        If ``stop`` is set while the job runs it is aborted and nothing is yielded.
        """
        body = json.dumps({"operation": "query", "query": without_order_by(soql)})
        job = self._json("POST", "query", data=body)
        if not isinstance(job.get("id"), str) or not job["id"]:
            raise SalesforceUnavailable("bulk query job answer has no job id")
        job_id = job["id"]
        log.info("bulk query job created", job=job_id)
        try:
            if not self._wait(job_id):
                return
            locator = ""
            while True:
                params: dict[str, Any] = {"maxRecords": self.page_size}
                if locator:
                    params["locator"] = locator
                response = self.source.bulk_request(
                    "GET", f"query/{job_id}/results", accept="text/csv", params=params
                )
                yield records_from_csv(response.content.decode("utf-8"))
                locator = response.headers.get("Sforce-Locator", "null")
                if not locator or locator == "null":
                    return
        finally:
            self._delete(job_id)

    def _wait(self, job_id: str) -> bool:
        """Until the job is complete (True), or ``stop`` is set: the job aborted (False)."""
        deadline = time.monotonic() + self.timeout
        while True:
            if self._stopped():
                self._abort(job_id)
                return False
            state = self._json("GET", f"query/{job_id}")
            status = state.get("state")
            if status == _DONE:
                return True
            if status in _FAILED:
                raise SalesforceUnavailable(
                    f"bulk query job {job_id} {status}: {state.get('errorMessage') or ''}".strip()
                )
            if time.monotonic() > deadline:
                raise SalesforceUnavailable(f"bulk query job {job_id} not done in time ({status})")
            self._pause()

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A Bulk API call answering a JSON object; anything else is Salesforce unavailable."""
        response = self.source.bulk_request(method, path, **kwargs)
        try:
            answer = response.json()
        except ValueError as exc:  # an HTML error page, a cut answer
            raise SalesforceUnavailable(f"bulk {path} answer is not valid JSON") from exc
        if not isinstance(answer, dict):
            raise SalesforceUnavailable(f"bulk {path} answer is not a JSON object")
        return answer

    def _abort(self, job_id: str) -> None:
        """Stop a running job (it reads nothing more); the read ends without a page."""
        try:
            self._json("PATCH", f"query/{job_id}", json={"state": "Aborted"})
        except Exception:  # the job is deleted next; Salesforce ends old jobs itself
            log.warning("cannot abort the bulk query job", job=job_id, exc_info=True)
            return
        log.info("bulk query job aborted: stop requested", job=job_id)

    def _delete(self, job_id: str) -> None:
        try:
            self.source.bulk_request("DELETE", f"query/{job_id}")
        except Exception:  # cleanup only: Salesforce deletes old jobs itself
            log.warning("cannot delete the bulk query job", job=job_id, exc_info=True)
