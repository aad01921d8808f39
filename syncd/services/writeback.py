"""The write-back use case: send a sync's pending outcomes to their Salesforce records.

One pass takes the oldest due write-backs of the sync (at most 200, one sObject
Collections call), builds each record's fields from its lead, PATCHes them with
``allOrNone: false`` and records each record's outcome in one transaction:
done; retry later with backoff (``UNABLE_TO_LOCK_ROW``, a 5xx, the API limit,
a network error); or failed with Salesforce's error. It goes on until nothing
is due, ``stop`` is set, or the org's API usage is above
``salesforce.max_api_usage_percent``.

A row stays pending until its outcome is committed, so a crash or a Salesforce
outage loses nothing: the row is sent again (the PATCH sets the same values,
so sending twice is harmless). Write-back runs in its own job with its own
Salesforce session and short transactions, and it gives way to delivery: while
a delivery pass of this process is sending and the process is using the CPU,
it waits, and past 30 s of one such pass it takes a tenth of the time
(:mod:`syncd.services.delivery_activity`).

A whole call that fails (Salesforce down, a 5xx, a network error, a refusal
of the whole request) makes the writer back off before its next call: 10 s,
doubling, at most 10 minutes, with jitter (:data:`CALL_BACKOFF`), so an
outage costs a few calls an hour rather than one per pass. A whole call
refused with a 4xx ends its rows as ``failed`` on their
:data:`MAX_REFUSED_CALLS`-th try. Records refused on a field
(``INVALID_FIELD``: the field was removed or made read-only) mark the sync's
write-back broken: ``syncd_writeback_broken`` is 1 and the pass is logged as
failed until a call writes no such error.
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

from syncd.adapters import writeback_store
from syncd.adapters.orm import utcnow
from syncd.adapters.salesforce import SalesforceQueryError, SalesforceSourceError
from syncd.config.models import SyncConfig
from syncd.domain.api_usage import usage_over_limit
from syncd.domain.backoff import BackoffPolicy, equal_jitter
from syncd.domain.writeback import (
    DEFAULT_ERROR_LENGTH,
    DONE,
    FAILED,
    RETRY,
    classify_all,
    collection_body,
    error_length,
    field_error,
    record_values,
)
from syncd.logs import get_logger
from syncd.metrics import (
    WRITEBACK_BROKEN,
    WRITEBACK_CALLS,
    WRITEBACK_PENDING,
    WRITEBACK_WAITED,
    WRITEBACKS,
)
from syncd.services.delivery_activity import PROCESS, DeliveryActivity, GiveWay

log = get_logger(__name__)

#: Retry waits of a record: 2 s, doubling, at most 5 minutes (with jitter).
RETRY_BACKOFF = BackoffPolicy(timedelta(seconds=2), timedelta(minutes=5))
#: Waits of the writer after a whole call failed: 10 s, doubling, at most 10 minutes.
CALL_BACKOFF = BackoffPolicy(timedelta(seconds=10), timedelta(minutes=10))
#: Tries of a row whose whole call Salesforce refused with a 4xx before it is failed.
MAX_REFUSED_CALLS = 5


def usage_forbids(
    target: UsageReader,
    usage: Callable[[], tuple[int, int] | None] | None,
    max_percent: int,
) -> str | None:
    """Why the org's API usage forbids a write-back call now, or None: the usage the
    target read last, and the process's own reading (``usage``) when there is one."""
    readings = [target.api_usage()]
    if usage is not None:
        readings.append(usage())
    for reading in readings:
        reason = usage_over_limit(reading, max_percent)
        if reason is not None:
            return reason
    return None


class UsageReader(Protocol):
    """A Salesforce client that remembers the API usage of its last answer."""

    def api_usage(self) -> tuple[int, int] | None: ...


class WritebackTarget(Protocol):
    """What write-back needs from Salesforce (:class:`SalesforceSource` has it)."""

    def update_collection(self, body: dict[str, Any]) -> Any: ...

    def describe_fields(self, sobject: str) -> list[dict[str, Any]]: ...

    def api_usage(self) -> tuple[int, int] | None: ...


@dataclass
class WritebackPass:
    """What one pass of one sync did."""

    sync: str
    #: ok; paused (API usage); backoff (waiting after a failed call); error (a whole
    #: call failed); failed (the write-back fields are broken: records refused on a field)
    status: str = "ok"
    calls: int = 0
    done: int = 0
    retry: int = 0
    failed: int = 0
    error: str | None = None


class Writer:
    """Sends one sync's write-backs; build one per sync and process, call :meth:`run`."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        target: WritebackTarget,
        sync: SyncConfig,
        *,
        max_api_usage_percent: int,
        usage: Callable[[], tuple[int, int] | None] | None = None,
        now: Callable[[], datetime] = utcnow,
        rng: Callable[[], float] = random.random,
        activity: DeliveryActivity = PROCESS,
    ) -> None:
        if sync.writeback is None:
            raise ValueError(f"sync {sync.name} has no writeback section")
        self.session_factory = session_factory
        self.target = target
        self.sync = sync
        self.fields = sync.writeback.fields.spec
        self.max_api_usage_percent = max_api_usage_percent
        self.usage = usage
        self.now = now
        self.rng = rng
        self.error_length: int | None = None if self.fields.error else DEFAULT_ERROR_LENGTH
        self.give_way = GiveWay(activity)
        #: Whole calls failed in a row, and no call before ``resume_at`` (the call backoff).
        self.call_failures = 0
        self.resume_at: datetime | None = None
        #: A field error of the last answered call: the sync's write-back is broken.
        self.broken: str | None = None
        WRITEBACK_BROKEN.labels(sync=sync.name).set(0)

    def over_usage(self) -> str | None:
        """Why the org's API usage forbids a call now, or None."""
        return usage_forbids(self.target, self.usage, self.max_api_usage_percent)

    def run(self, stop: threading.Event | None = None) -> WritebackPass:
        """Send due write-backs until none is due, ``stop`` is set or usage is too high."""
        result = WritebackPass(self.sync.name)
        try:
            self._run(result, stop)
        finally:
            self.refresh_pending()
        if self.broken is not None:
            result.status, result.error = "failed", f"write-back fields broken: {self.broken}"
        if result.calls:
            (log.error if result.status == "failed" else log.info)(
                "write-back pass",
                sync=self.sync.name,
                calls=result.calls,
                done=result.done,
                retry=result.retry,
                failed=result.failed,
                status=result.status,
                error=result.error,
            )
        return result

    def _run(self, result: WritebackPass, stop: threading.Event | None) -> None:
        while stop is None or not stop.is_set():
            self._give_way(stop)
            if stop is not None and stop.is_set():
                return
            now = self.now()
            if self.resume_at is not None and now < self.resume_at:
                result.status = "backoff"
                return
            with self.session_factory.begin() as session:
                rows = writeback_store.due(session, self.sync.name, now)
            if not rows:
                return
            reason = self.over_usage()
            if reason is not None:
                result.status, result.error = "paused", reason
                log.warning("write-back held back", sync=self.sync.name, reason=reason)
                return
            if self.error_length is None and not self._describe(result):
                return
            started = time.monotonic()
            sent = self._send(rows, result)
            self.give_way.record_call(time.monotonic() - started)
            if not sent:
                return

    def _give_way(self, stop: threading.Event | None) -> None:
        """Wait while this process is delivering (see :mod:`~syncd.services.delivery_activity`)."""
        before = self.give_way.waited
        self.give_way.before_call(stop)
        waited = self.give_way.waited - before
        if waited > 0:
            WRITEBACK_WAITED.labels(sync=self.sync.name).inc(waited)

    def _describe(self, result: WritebackPass) -> bool:
        """Learn the error field's length; False (try again next pass) if Salesforce fails."""
        try:
            described = self.target.describe_fields(self.sync.object)
        except SalesforceSourceError as exc:
            result.status, result.error = "error", f"describe failed: {exc}"
            log.warning("write-back: describe failed", sync=self.sync.name, error=str(exc))
            return False
        self.error_length = error_length(self.fields, described)
        return True

    def _send(self, rows: Sequence[writeback_store.DueWriteback], result: WritebackPass) -> bool:
        """One collections call for ``rows``; False when the whole call failed."""
        length = self.error_length or DEFAULT_ERROR_LENGTH
        records = [
            (
                row.salesforce_id,
                record_values(
                    self.fields,
                    state=row.state,
                    simz_batch_id=row.simz_batch_id,
                    sent_at=row.sent_at,
                    error_code=row.error_code,
                    error_message=row.error_message,
                    error_length=length,
                ),
            )
            for row in rows
        ]
        body = collection_body(self.sync.object, records)
        result.calls += 1
        whole_call_ok = True
        try:
            answer = self.target.update_collection(body)
            outcomes = classify_all(answer, len(rows))
            WRITEBACK_CALLS.labels(sync=self.sync.name, result="ok").inc()
            self._call_answered(outcomes)
        except SalesforceSourceError as exc:
            whole_call_ok = False
            outcomes = self._call_failed(exc, rows, result)
        now = self.now()
        results = [
            writeback_store.WritebackResult(
                row,
                outcome,
                error,
                now + self._wait(row.attempts + 1) if outcome == RETRY else None,
            )
            for row, (outcome, error) in zip(rows, outcomes, strict=True)
        ]
        with self.session_factory.begin() as session:
            writeback_store.record(session, results, now)
        for outcome, attr in ((DONE, "done"), (RETRY, "retry"), (FAILED, "failed")):
            count = sum(1 for r in results if r.outcome == outcome)
            if count:
                setattr(result, attr, getattr(result, attr) + count)
                WRITEBACKS.labels(sync=self.sync.name, outcome=outcome).inc(count)
        for failed in (r for r in results if r.outcome == FAILED):
            log.warning(
                "write-back failed",
                sync=self.sync.name,
                salesforce_id=failed.row.salesforce_id,
                error=failed.error,
            )
        return whole_call_ok

    def _call_answered(self, outcomes: Sequence[tuple[str, str | None]]) -> None:
        """Salesforce answered the call: no more backoff; broken while a record hit a field."""
        self.call_failures, self.resume_at = 0, None
        refused = next((error for _o, error in outcomes if field_error(error)), None)
        self._set_broken(refused)

    def _call_failed(
        self,
        exc: SalesforceSourceError,
        rows: Sequence[writeback_store.DueWriteback],
        result: WritebackPass,
    ) -> list[tuple[str, str | None]]:
        """The rows' outcomes after a failed whole call; the writer backs off.

        A 4xx refusal (:class:`SalesforceQueryError`) ends a row as failed on its
        :data:`MAX_REFUSED_CALLS`-th try; anything else (5xx, network, limit) retries.
        """
        text = f"{type(exc).__name__}: {exc}"
        self.call_failures += 1
        self.resume_at = self.now() + equal_jitter(self.call_failures, CALL_BACKOFF, self.rng)
        result.status, result.error = "error", text
        WRITEBACK_CALLS.labels(sync=self.sync.name, result="error").inc()
        log.warning(
            "write-back call failed",
            sync=self.sync.name,
            error=text,
            rows=len(rows),
            backoff_until=self.resume_at.isoformat(),
        )
        if not isinstance(exc, SalesforceQueryError):
            return [(RETRY, text)] * len(rows)
        if field_error(text):
            self._set_broken(text)
        return [(FAILED if row.attempts + 1 >= MAX_REFUSED_CALLS else RETRY, text) for row in rows]

    def _set_broken(self, error: str | None) -> None:
        if error is not None and self.broken is None:
            log.error(
                "write-back fields broken: Salesforce refuses a configured field",
                sync=self.sync.name,
                error=error,
                hint="check the fields with `syncd check-config --connect`, then "
                f"`syncd writeback retry --sync {self.sync.name}`",
            )
        self.broken = error
        WRITEBACK_BROKEN.labels(sync=self.sync.name).set(0 if error is None else 1)

    def _wait(self, failures: int) -> timedelta:
        return equal_jitter(failures, RETRY_BACKOFF, self.rng)

    def refresh_pending(self) -> None:
        """Set ``syncd_writeback_pending`` for this sync from the database."""
        with self.session_factory() as session:
            pending = writeback_store.count_pending(session, self.sync.name)
        WRITEBACK_PENDING.labels(sync=self.sync.name).set(pending)
