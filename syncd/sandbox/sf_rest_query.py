"""SOQL over REST in the Salesforce emulator: ``query``, ``queryAll`` and their pages.

A query is evaluated and sorted once; its rows are kept under a query locator
and each page is a slice of them, so paging through a result never sees a
record twice or skips one, whatever changes in between (as with Salesforce's
own cursors). Only the newest :data:`MAX_CURSORS` locators are kept.
Every execution and page fetch is logged, so tests can count what the
client asked for.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncd.sandbox.sf_reply import Reply, error_reply, json_reply
from syncd.sandbox.sf_soql import CompiledQuery, Record, SoqlError, compile_query
from syncd.sandbox.sf_store import RecordStore

MAX_CURSORS = 200


class QueryLog:
    """Every SOQL execution and page fetch: time, soql, session, page, offset, rows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []

    def log(self, soql: str, session: str, *, page: bool, offset: int, rows: int) -> None:
        with self._lock:
            self._entries.append(
                {
                    "time": datetime.now(UTC).isoformat(),
                    "soql": soql,
                    "session": session[-8:],
                    "page": page,
                    "offset": offset,
                    "rows": rows,
                }
            )

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._entries]


@dataclass
class Cursor:
    query: CompiledQuery
    rows: list[Record]
    batch_size: int
    kind: str  # query or queryAll


def batch_size(headers: Mapping[str, str]) -> int:
    """The page size ``Sforce-Query-Options: batchSize=N`` asks for, clamped to 200..2000."""
    value = headers.get("Sforce-Query-Options", "")
    match = re.search(r"batchSize\s*=\s*(\d+)", value)
    if match is None:
        return 2000
    return max(200, min(2000, int(match.group(1))))


class QueryApi:
    """Runs queries against ``store`` and pages their results."""

    def __init__(self, store: RecordStore, log: QueryLog) -> None:
        self.store = store
        self.log = log
        self._lock = threading.Lock()
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()

    def run(self, soql: str, kind: str, version: str, size: int, session: str) -> Reply:
        """The first page of ``soql`` (``kind`` queryAll also sees deleted records)."""
        store = self.store
        try:
            with store.lock:
                compiled = compile_query(soql, store)
                records = store.snapshot(compiled.sobject)
                if kind == "query":
                    records = [r for r in records if not r.get("IsDeleted")]
                rows = compiled.run(records)
        except SoqlError as exc:
            self.log.log(soql, session, page=False, offset=0, rows=0)
            return error_reply(400, exc.code, exc.answer_message(soql))
        self.log.log(soql, session, page=False, offset=0, rows=len(rows))
        if compiled.count:
            return json_reply(200, {"totalSize": len(rows), "done": True, "records": []})
        cursor = Cursor(compiled, rows, size, kind)
        return self._answer_page(cursor, None, 0, version)

    def page(self, locator: str, offset: int, version: str, session: str) -> Reply:
        """The page at ``offset`` of the result kept under ``locator``."""
        with self._lock:
            cursor = self._cursors.get(locator)
        if cursor is None or offset > len(cursor.rows):
            return error_reply(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        count = min(cursor.batch_size, len(cursor.rows) - offset)
        self.log.log(cursor.query.soql, session, page=True, offset=offset, rows=count)
        return self._answer_page(cursor, locator, offset, version)

    def _answer_page(self, cursor: Cursor, locator: str | None, offset: int, version: str) -> Reply:
        end = offset + cursor.batch_size
        chunk = cursor.rows[offset:end]
        with self.store.lock:
            records = [cursor.query.project(r, version) for r in chunk]
        payload: dict[str, Any] = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows)}
        with self._lock:
            if end < len(cursor.rows):
                if locator is None:
                    locator = self._keep(cursor)
                payload["nextRecordsUrl"] = (
                    f"/services/data/v{version}/{cursor.kind}/{locator}-{end}"
                )
            elif locator is not None:
                self._cursors.pop(locator, None)
        payload["records"] = records
        return json_reply(200, payload)

    def _keep(self, cursor: Cursor) -> str:
        """A new locator for ``cursor``; the oldest ones beyond :data:`MAX_CURSORS` go."""
        locator = "01g" + secrets.token_hex(6).upper() + "AAA"
        self._cursors[locator] = cursor
        while len(self._cursors) > MAX_CURSORS:
            self._cursors.popitem(last=False)
        return locator
