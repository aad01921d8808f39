"""The call write-back use case: each call outcome of a sync, back on its Salesforce record.

``mode: tasks`` writes one completed call Task per call outcome (WhoId = the
Lead or Contact, else WhatId; Subject, Status ``Completed``, Type and
TaskSubtype ``Call``, CallDisposition, CallDurationInSeconds, ActivityDate,
Description) with an sObject Collections create. ``mode: fields`` PATCHes the
configured fields (outcome, disposition, when called) on the record instead.

**Never a second Task for one call.** The layers that make it so:

* A hook delivered twice is one ``call_outcomes`` row: the receiver stores a
  body once, and the processor keeps one row per (lead, call key).
* Each Task carries the row's ``call_key`` in ``CallObject``.
* A pass marks its rows ``sending`` and commits that *before* the create. A
  row found ``sending`` later was sent by a pass that crashed, or whose answer
  was lost or unreadable: it is *in doubt*. Before anything is created for it,
  ``SELECT Id, CallObject, WhoId, WhatId FROM Task WHERE CallObject IN (...)``
  looks its Task up; a Task found (same call key, same record) ends the row
  ``done`` with that Task's Id, and only a row whose Task is absent is
  created. While the lookup fails, nothing is created.
* A row goes back to ``pending`` (created again without a lookup) only when
  Salesforce said it created nothing: a per-record error, or a whole call
  refused before it ran (4xx, the API limit, a refused login).

So a retried row never makes a second Task, whatever point a crash or a lost
answer hit. (Two syncd processes writing the same row at once cannot happen:
rows are claimed with ``FOR UPDATE SKIP LOCKED`` and the job runs on the
sync's leader only.)

``mode: fields`` needs no lookup: writing the same values twice is harmless.
Within one call it writes each record's newest call only; the older ones are
done without a write.

**Never a change to the poll or the stream.** A Task is a record of its own:
creating it changes neither the Lead's fields nor its ``SystemModstamp``. In
fields mode the record's ``SystemModstamp`` moves, so the next poll reads it
again, but the call fields are not part of the lead's digest and the
configuration refuses a call field that the mapping, routing, rules, cursor or
``where`` read: the record counts ``unchanged`` and nothing is requeued.

Errors: a per-record ``UNABLE_TO_LOCK_ROW`` (and the other transient codes)
retries with backoff (2 s doubling to 5 minutes, with jitter); any other
per-record error ends the row ``failed`` with Salesforce's ``CODE: message``,
as does the :data:`MAX_ATTEMPTS`-th try. A whole call that fails makes the
writer back off (10 s doubling to 10 minutes) as write-back does; the org's
API usage above ``salesforce.max_api_usage_percent`` holds it back; it gives
way to delivery as write-back does.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import call_writeback_store as store
from syncd.adapters.call_writeback_store import CallResult, DueCall
from syncd.adapters.orm import utcnow
from syncd.adapters.salesforce import (
    SalesforceQueryError,
    SalesforceSourceError,
    SalesforceUnavailable,
)
from syncd.config.models import SyncConfig
from syncd.domain.backoff import equal_jitter
from syncd.domain.call_writeback import (
    IN_DOUBT,
    CallFields,
    create_body,
    create_outcomes,
    field_values,
    found_tasks,
    lookup_query,
    task_of,
    task_record,
)
from syncd.domain.writeback import DONE, FAILED, RETRY, classify_all, collection_body
from syncd.logs import get_logger
from syncd.metrics import CALL_WRITEBACKS
from syncd.services.delivery_activity import PROCESS, DeliveryActivity, GiveWay
from syncd.services.writeback import CALL_BACKOFF, RETRY_BACKOFF, usage_forbids

log = get_logger(__name__)

#: Tries of a call before it is failed (each a refusal, never an unknown outcome).
MAX_ATTEMPTS = 8
#: How long a claimed row stays ``sending`` before another pass may take it as in doubt:
#: longer than any call of a live pass.
HOLD = timedelta(minutes=2)
#: ``syncd_call_writebacks_total``'s ``result``.
RESULTS = (DONE, RETRY, IN_DOUBT, FAILED)


class CallTarget(Protocol):
    """What call write-back needs from Salesforce (:class:`SalesforceSource` has it)."""

    def create_collection(self, body: dict[str, Any]) -> Any: ...

    def update_collection(self, body: dict[str, Any]) -> Any: ...

    def query_pages(self, soql: str) -> Any: ...

    def api_usage(self) -> tuple[int, int] | None: ...


@dataclass
class CallWritebackPass:
    """What one pass of one sync did."""

    sync: str
    mode: str
    #: ok; paused (API usage); backoff (waiting after a failed call); error (a call failed)
    status: str = "ok"
    calls: int = 0
    done: int = 0
    retry: int = 0
    in_doubt: int = 0
    failed: int = 0
    error: str | None = None


class CallWriter:
    """Writes one sync's calls back; build one per sync and process, call :meth:`run`."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        target: CallTarget,
        sync: SyncConfig,
        *,
        max_api_usage_percent: int,
        usage: Callable[[], tuple[int, int] | None] | None = None,
        now: Callable[[], datetime] = utcnow,
        rng: Callable[[], float] = random.random,
        activity: DeliveryActivity = PROCESS,
    ) -> None:
        if sync.call_writeback is None:
            raise ValueError(f"sync {sync.name} has no call_writeback section")
        self.session_factory = session_factory
        self.target = target
        self.sync = sync
        self.config = sync.call_writeback
        chosen = self.config.fields
        self.fields = CallFields(chosen.outcome, chosen.disposition, chosen.called_at)
        self.max_api_usage_percent = max_api_usage_percent
        self.usage = usage
        self.now = now
        self.rng = rng
        self.give_way = GiveWay(activity)
        self.call_failures = 0
        self.resume_at: datetime | None = None

    @property
    def mode(self) -> str:
        return self.config.mode

    def over_usage(self) -> str | None:
        """Why the org's API usage forbids a call now, or None (as write-back's guard)."""
        return usage_forbids(self.target, self.usage, self.max_api_usage_percent)

    def run(self, stop: threading.Event | None = None) -> CallWritebackPass:
        """Write due calls until none is due, ``stop`` is set or usage is too high."""
        result = CallWritebackPass(self.sync.name, self.mode)
        self._run(result, stop)
        if result.calls:
            (log.warning if result.failed or result.status == "error" else log.info)(
                "call write-back pass",
                sync=self.sync.name,
                mode=self.mode,
                calls=result.calls,
                done=result.done,
                retry=result.retry,
                in_doubt=result.in_doubt,
                failed=result.failed,
                status=result.status,
                error=result.error,
            )
        return result

    def _run(self, result: CallWritebackPass, stop: threading.Event | None) -> None:
        while stop is None or not stop.is_set():
            self.give_way.before_call(stop)
            if stop is not None and stop.is_set():
                return
            now = self.now()
            if self.resume_at is not None and now < self.resume_at:
                result.status = "backoff"
                return
            reason = self.over_usage()
            if reason is not None:
                with self.session_factory() as session:
                    due = store.any_due(session, self.sync.name, now)
                if due:
                    result.status, result.error = "paused", reason
                    log.warning("call write-back held back", sync=self.sync.name, reason=reason)
                return
            with self.session_factory.begin() as session:
                rows = store.claim(session, self.sync.name, now, now + HOLD)
            if not rows:
                return
            started = time.monotonic()
            results, answered = self._send(rows, result)
            self.give_way.record_call(time.monotonic() - started)
            self._record(results, result)
            if not answered:
                return

    def _send(
        self, rows: Sequence[DueCall], result: CallWritebackPass
    ) -> tuple[list[CallResult], bool]:
        """The rows' results, and False when a whole call failed (the writer backs off)."""
        try:
            if self.mode == "tasks":
                results, answered = self._send_tasks(rows, result)
            else:
                results, answered = self._send_fields(rows, result), True
        except SalesforceSourceError as exc:
            return self._call_failed(exc, rows, result), False
        if answered:
            self.call_failures, self.resume_at = 0, None
        return results, answered

    # ------------------------------------------------------------------ tasks

    def _send_tasks(
        self, rows: Sequence[DueCall], result: CallWritebackPass
    ) -> tuple[list[CallResult], bool]:
        """Look the in-doubt rows' Tasks up, create the others' (one call each, at most);
        False when the create failed as a whole."""
        doubtful = [row for row in rows if row.in_doubt]
        found: dict[tuple[str, str], str] = {}
        if doubtful:
            result.calls += 1
            found = self._lookup(doubtful)
        results: list[CallResult] = []
        creating: list[DueCall] = []
        for row in rows:
            task_id = task_of(found, row.call) if row.in_doubt else None
            if task_id is not None:
                results.append(CallResult(row, DONE, None, task_id))
            else:
                creating.append(row)
        if not creating:
            return results, True
        body = create_body([task_record(row.call, self.config.task_subject) for row in creating])
        result.calls += 1
        try:
            answer = self.target.create_collection(body)
        except SalesforceSourceError as exc:
            # The lookups' results stand; the creates' outcome is the failed call's.
            return results + self._call_failed(exc, creating, result), False
        outcomes = create_outcomes(answer, len(creating))
        for row, (outcome, error, task_id) in zip(creating, outcomes, strict=True):
            results.append(self._settle(row, outcome, error, task_id))
        return results, True

    def _lookup(self, rows: Sequence[DueCall]) -> dict[tuple[str, str], str]:
        """The Tasks already written for these calls, by (CallObject, record Id)."""
        soql = lookup_query([row.call.call_key for row in rows])
        records: list[Any] = []
        for page in self.target.query_pages(soql):
            records.extend(page)
        return found_tasks(records)

    def _settle(
        self,
        row: DueCall,
        outcome: str,
        error: str | None,
        task_id: str | None = None,
        *,
        refused: bool = True,
    ) -> CallResult:
        """A row's result: a retry Salesforce ``refused`` becomes failed on the last try
        (an outage never fails a call); waits get their backoff."""
        tries = row.attempts + 1
        if outcome == RETRY and refused and tries >= MAX_ATTEMPTS:
            outcome, error = FAILED, f"{error} (after {tries} tries)"
        retry_at = None
        if outcome in (RETRY, IN_DOUBT):
            retry_at = self.now() + equal_jitter(tries, RETRY_BACKOFF, self.rng)
        return CallResult(row, outcome, error, task_id, retry_at)

    # ------------------------------------------------------------------ fields

    def _send_fields(self, rows: Sequence[DueCall], result: CallWritebackPass) -> list[CallResult]:
        """One PATCH of each record's newest call; the record's older calls are done."""
        newest: dict[str, DueCall] = {}
        for row in rows:
            key = row.call.salesforce_id[:15]
            held = newest.get(key)
            if held is None or (row.call.called_at, row.id) > (held.call.called_at, held.id):
                newest[key] = row
        sending = list(newest.values())
        results = [CallResult(row, DONE) for row in rows if row not in sending]
        records = [(row.call.salesforce_id, field_values(self.fields, row.call)) for row in sending]
        result.calls += 1
        answer = self.target.update_collection(collection_body(self.sync.object, records))
        for row, (outcome, error) in zip(sending, classify_all(answer, len(sending)), strict=True):
            results.append(self._settle(row, outcome, error))
        return results

    # ------------------------------------------------------------------ outcomes

    def _call_failed(
        self, exc: SalesforceSourceError, rows: Sequence[DueCall], result: CallWritebackPass
    ) -> list[CallResult]:
        """The rows' results after a whole call failed; the writer backs off.

        Salesforce unreachable or a 5xx after a create was sent: in doubt (the
        Tasks may exist). Refused before it ran (4xx, the limit, the login):
        retried, in doubt rows stay in doubt; only a 4xx counts towards
        :data:`MAX_ATTEMPTS`. Fields mode is never in doubt.
        """
        text = f"{type(exc).__name__}: {exc}"
        self.call_failures += 1
        self.resume_at = self.now() + equal_jitter(self.call_failures, CALL_BACKOFF, self.rng)
        result.status, result.error = "error", text
        log.warning(
            "call write-back call failed",
            sync=self.sync.name,
            mode=self.mode,
            error=text,
            rows=len(rows),
            backoff_until=self.resume_at.isoformat(),
        )
        unknown = isinstance(exc, SalesforceUnavailable)
        refused = isinstance(exc, SalesforceQueryError)
        results = []
        for row in rows:
            doubtful = self.mode == "tasks" and (unknown or row.in_doubt)
            outcome = IN_DOUBT if doubtful else RETRY
            results.append(self._settle(row, outcome, text, refused=refused))
        return results

    def _record(self, results: Sequence[CallResult], result: CallWritebackPass) -> None:
        """Commit the results, count them, log each failed call."""
        if not results:
            return
        with self.session_factory.begin() as session:
            store.record(session, results, self.now())
        for outcome in RESULTS:
            count = sum(1 for r in results if r.outcome == outcome)
            if count:
                setattr(result, outcome, getattr(result, outcome) + count)
                CALL_WRITEBACKS.labels(self.sync.name, self.mode, outcome).inc(count)
        for failed in (r for r in results if r.outcome == FAILED):
            log.warning(
                "call write-back failed",
                sync=self.sync.name,
                salesforce_id=failed.row.call.salesforce_id,
                call_key=failed.row.call.call_key,
                error=failed.error,
            )
