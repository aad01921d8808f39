"""Delivery's check of the Salesforce org it reads from (docs/safety.md#org-identity).

Before a delivery pass, :class:`OrgGate` knows whether Salesforce answers as the
org this database trusts (:func:`syncd.domain.org.judge_org`). It reads the org
(``SELECT Id, Name, IsSandbox FROM Organization``, one API call) at the first
pass and again every ``recheck`` (a minute: 1,440 calls a day, against an org's
daily allowance of 100,000 or more); a refused org is read again every ``retry``,
so that ``syncd trust-org`` or a corrected configuration takes effect without a
restart. The first org met, if it is not a refused sandbox, is trusted and
remembered.

It fails closed: until the org has been read once, nothing is delivered. Once
it has been, a later read that fails (Salesforce unreachable) keeps the last
verdict, so an outage of Salesforce does not stop calls to leads already queued.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import org_store
from syncd.adapters.salesforce import SalesforceSourceError
from syncd.domain.org import Org, judge_org
from syncd.logs import get_logger

log = get_logger(__name__)

ORG_QUERY = "SELECT Id, Name, IsSandbox FROM Organization"


class OrgSource(Protocol):
    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]: ...


class OrgUnreadable(Exception):
    """Salesforce did not say which org it is."""


def read_org(source: OrgSource) -> Org:
    """The org ``source`` is logged in to, from the Organization object."""
    try:
        pages = source.query_pages(ORG_QUERY)
        rows = [row for page in pages for row in page]
    except SalesforceSourceError as exc:
        raise OrgUnreadable(f"cannot read the Salesforce org: {exc}") from exc
    if len(rows) != 1 or not isinstance(rows[0].get("Id"), str):
        raise OrgUnreadable("Salesforce did not answer SELECT Id FROM Organization with one org")
    row = rows[0]
    return Org(row["Id"], row.get("IsSandbox") is True, str(row.get("Name") or ""))


def check_org(
    sessions: sessionmaker[Session], org: Org, sandbox_allowed: bool, now: datetime
) -> str | None:
    """Record ``org`` as met (trusting it when it is the first) and judge it."""
    with sessions.begin() as session:
        trust_first = sandbox_allowed or not org.is_sandbox
        trusted = org_store.meet(session, org, now, trust_first=trust_first)
    return judge_org(org, trusted, sandbox_allowed)


class OrgGate:
    """Whether delivery may run now; thread-safe (every sync's delivery asks)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        source: Callable[[], OrgSource],
        *,
        sandbox_allowed: bool,
        now: Callable[[], datetime],
        recheck: timedelta = timedelta(minutes=1),
        retry: timedelta = timedelta(seconds=10),
    ) -> None:
        self.sessions = sessions
        self.source = source
        self.sandbox_allowed = sandbox_allowed
        self.now = now
        self.recheck = recheck
        self.retry = retry
        self._lock = threading.Lock()
        self._problem: str | None = "the Salesforce org has not been checked yet"
        self._read_once = False
        self._next: datetime | None = None

    def problem(self) -> str | None:
        """Why delivery may not run now, or None."""
        with self._lock:
            current = self.now()
            if self._next is None or current >= self._next:
                self._check(current)
            return self._problem

    def _check(self, now: datetime) -> None:
        try:
            org = read_org(self.source())
            problem = check_org(self.sessions, org, self.sandbox_allowed, now)
        except (OrgUnreadable, SQLAlchemyError) as exc:
            self._next = now + self.retry
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            if self._read_once:
                log.warning(
                    "Salesforce org not checked again; keeping the last verdict", error=reason
                )
                return
            self._set(f"the Salesforce org cannot be checked yet: {reason}")
            return
        self._read_once = True
        self._next = now + (self.recheck if problem is None else self.retry)
        if problem is None and self._problem is not None:
            log.info("Salesforce org trusted: delivery may run", org_id=org.org_id)
        self._set(problem)

    def _set(self, problem: str | None) -> None:
        if problem is not None and problem != self._problem:
            log.error("delivery stopped: Salesforce org not trusted", problem=problem)
        self._problem = problem
