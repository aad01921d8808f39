"""The REST API of the Salesforce emulator: counting, authentication, faults, then a route.

Every call under ``/services/data/vXX.X`` counts one API request (refused
ones too, as Salesforce counts them), needs a valid session (401
``INVALID_SESSION_ID`` otherwise), may meet an injected fault
(:mod:`.sf_faults`), and its answer carries ``Sforce-Limit-Info:
api-usage=N/M``. Routes are tried in :attr:`RestApi.routes` order; a route
that names methods is skipped for the others, so a path falls through to the
next pattern as it did when this was one ``if`` chain.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from syncd.sandbox.sf_auth import Sessions
from syncd.sandbox.sf_faults import INVALID_SESSION, FaultQueue, fault_reply, spoil
from syncd.sandbox.sf_reply import Reply, json_reply, method_not_allowed, not_found
from syncd.sandbox.sf_rest_bulk import BulkApi
from syncd.sandbox.sf_rest_query import QueryApi, batch_size
from syncd.sandbox.sf_rest_records import RecordsApi

DATA_PATH = re.compile(r"^/services/data/v(?P<version>\d+\.\d)(?P<rest>/.*)?$")
_QUERY_PATH = re.compile(r"^/(?P<kind>query|queryAll)/*$")
_PAGE_PATH = re.compile(r"^/(?P<kind>query|queryAll)/(?P<locator>01g[A-Za-z0-9]+)-(?P<offset>\d+)$")
_LIMITS_PATH = re.compile(r"^/limits/*$")
_BULK_PATH = re.compile(r"^/jobs/query(?:/(?P<job>750[A-Za-z0-9]+)(?P<results>/results)?)?/?$")
_COLLECTION_PATH = re.compile(r"^/composite/sobjects/*$")
_DESCRIBE_PATH = re.compile(r"^/sobjects/(?P<type>[A-Za-z][A-Za-z0-9_]*)/describe/?$")
_SOBJECT_PATH = re.compile(r"^/sobjects/(?P<type>[A-Za-z][A-Za-z0-9_]*)/(?P<id>[A-Za-z0-9]+)/?$")


@dataclass(frozen=True)
class RestCall:
    """One authenticated REST call; ``rest`` is the path after ``/services/data/vXX.X``."""

    method: str
    version: str
    rest: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    session: str


Handler = Callable[[RestCall, re.Match[str]], Reply]


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    #: The methods the route answers; None: all (it answers 405 itself where it must).
    methods: frozenset[str] | None
    handler: Handler


class ApiUsage:
    """The numbers of ``Sforce-Limit-Info`` and ``limits``: requests used, daily maximum."""

    def __init__(self, most: int) -> None:
        self._lock = threading.Lock()
        self._used = 0
        self._most = most

    def count(self) -> None:
        with self._lock:
            self._used += 1

    def set(self, used: int, most: int | None = None) -> None:
        with self._lock:
            self._used = used
            if most is not None:
                self._most = most

    def get(self) -> tuple[int, int]:
        with self._lock:
            return self._used, self._most


class RestApi:
    """Everything under ``/services/data/vXX.X``."""

    def __init__(
        self,
        sessions: Sessions,
        faults: FaultQueue,
        usage: ApiUsage,
        query: QueryApi,
        bulk: BulkApi,
        records: RecordsApi,
    ) -> None:
        self.sessions = sessions
        self.faults = faults
        self.usage = usage
        self.query = query
        self.bulk = bulk
        self.records = records
        get = frozenset({"GET"})
        self.routes = (
            Route(_QUERY_PATH, None, self._query),
            Route(_PAGE_PATH, get, self._page),
            Route(_LIMITS_PATH, get, self._limits),
            Route(_BULK_PATH, None, self._bulk),
            Route(_COLLECTION_PATH, None, self._collection),
            Route(_DESCRIBE_PATH, get, self._describe),
            Route(_SOBJECT_PATH, None, self._sobject),
        )

    def call(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        """One REST call: count it, authenticate, apply injected faults, then answer."""
        reply = self._call(method, path, query, headers, body)
        used, most = self.usage.get()
        reply.headers["Sforce-Limit-Info"] = f"api-usage={used}/{most}"
        return reply

    def _call(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        match = DATA_PATH.match(path)
        assert match is not None
        version, rest = match.group("version"), match.group("rest") or "/"
        self.usage.count()
        session = self.sessions.of(headers)
        if session is None:
            return json_reply(401, INVALID_SESSION)
        fault = self.faults.take(rest)
        if fault is not None:
            replaced = fault_reply(fault)
            if replaced is not None:
                return replaced
        reply = self._route(RestCall(method, version, rest, query, headers, body, session))
        return reply if fault is None else spoil(fault, reply)

    def _route(self, call: RestCall) -> Reply:
        for route in self.routes:
            if route.methods is not None and call.method not in route.methods:
                continue
            match = route.pattern.match(call.rest)
            if match is not None:
                return route.handler(call, match)
        return not_found()

    # ------------------------------------------------------------------ routes

    def _query(self, call: RestCall, match: re.Match[str]) -> Reply:
        if call.method != "GET":
            return method_not_allowed(call.method)
        soql = parse_qs(call.query).get("q", [""])[0]
        size = batch_size(call.headers)
        return self.query.run(soql, match.group("kind"), call.version, size, call.session)

    def _page(self, call: RestCall, match: re.Match[str]) -> Reply:
        offset = int(match.group("offset"))
        return self.query.page(match.group("locator"), offset, call.version, call.session)

    def _limits(self, call: RestCall, match: re.Match[str]) -> Reply:
        used, most = self.usage.get()
        return json_reply(
            200, {"DailyApiRequests": {"Max": most, "Remaining": max(0, most - used)}}
        )

    def _bulk(self, call: RestCall, match: re.Match[str]) -> Reply:
        job, results = match.group("job"), bool(match.group("results"))
        return self.bulk.call(call.method, call.version, job, results, call.query, call.body)

    def _collection(self, call: RestCall, match: re.Match[str]) -> Reply:
        if call.method == "POST":
            return self.records.create_collection(call.body)
        if call.method != "PATCH":
            return method_not_allowed(call.method)
        return self.records.update_collection(call.body)

    def _describe(self, call: RestCall, match: re.Match[str]) -> Reply:
        return self.records.describe(match.group("type"), call.version)

    def _sobject(self, call: RestCall, match: re.Match[str]) -> Reply:
        sobject, record_id = match.group("type"), match.group("id")
        return self.records.sobject(call.method, sobject, record_id, call.body, call.version)
