"""``syncd check-config --connect``: try what the configuration points at, one line a check.

* the database: reachable, and its schema revision against the latest one
  (opened read-only; a missing SQLite file is reported, not created);
* Salesforce: the login, then each enabled sync's real poll query with
  ``LIMIT 1``, which checks the object, every mapped field and relationship, the
  cursor field and the ``where`` condition; a refused query is shown with the
  position Salesforce names (``ERROR at Row:1:Column:12``) marked ``>>>``;
* write-back: each object a sync writes outcomes back to is described, and every
  configured field that is missing, not updateable or of the wrong type is one
  failing line (:mod:`syncd.services.writeback_check`);
* call write-back: the Task fields syncd writes (``mode: tasks``) or the
  configured record fields (``mode: fields``), by describe
  (:mod:`syncd.services.call_writeback_check`);
* the Pub/Sub API, for syncs in stream mode: ``GetTopic`` and ``GetSchema`` of
  each topic with the login's session, over TLS trusted as the daemon trusts it
  (:mod:`syncd.services.stream_check`);
* SimZ: a TCP connection and the TLS handshake only. SimZ has no endpoint that
  checks an API key without queueing a call, so the key is checked by the first
  delivery; the output says so.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from syncd.adapters.orm import utcnow
from syncd.config import Config, SyncConfig
from syncd.config.suppression import SuppressionSourceConfig
from syncd.domain.soql import build_poll_query
from syncd.domain.window import PollWindow, floor_second

if TYPE_CHECKING:
    from syncd.adapters.salesforce import SalesforceSource

#: Where Salesforce says a query went wrong, e.g. ``ERROR at Row:1:Column:12``.
_POSITION = re.compile(r"ERROR at Row:(\d+):Column:(\d+)")
#: What goes before the position in the query shown.
MARK = ">>>"


@dataclass(frozen=True)
class Check:
    """One line of the report; ``ok`` False makes ``check-config --connect`` exit 1."""

    ok: bool
    text: str


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe_query_error(soql: str, error: str) -> str:
    """Salesforce's refusal of ``soql`` as one line, with the query and the position marked.

    Salesforce's message repeats the query's line and a caret before the Row and
    Column; those are replaced by the whole query with :data:`MARK` at the spot.
    """
    found = _POSITION.search(error)
    if found is None:
        return f"{_one_line(error)}; query: {soql}"
    row, column = int(found.group(1)), int(found.group(2))
    code = error.split(":", 1)[0].strip() if ":" in error[: found.start()] else ""
    reason = _one_line(re.sub(r"^(?:\s|\\[nr])+", "", error[found.end() :]))
    lines = soql.split("\n")
    offset = sum(len(line) + 1 for line in lines[: row - 1]) + column - 1
    offset = max(0, min(offset, len(soql)))
    marked = soql[:offset] + MARK + soql[offset:]
    prefix = f"{code}: " if code else ""
    return f"{prefix}{reason} (row {row}, column {column}): {_one_line(marked)}"


def check_query(sync: SyncConfig | SuppressionSourceConfig) -> str:
    """The sync's (or suppression source's) query over the last hour, limited to one record."""
    end = floor_second(utcnow())
    return build_poll_query(sync.query_spec, PollWindow(end - timedelta(hours=1), end)) + " LIMIT 1"


def check_salesforce(config: Config, source: SalesforceSource) -> list[Check]:
    """Log in with ``source``, then run each enabled sync's poll query with ``LIMIT 1``.

    The first check is the login's; when it failed, it is the only one.
    """
    from syncd.adapters.salesforce import SalesforceQueryError, SalesforceSourceError

    try:
        source.login()
    except (SalesforceSourceError, OSError, ValueError) as exc:
        return [Check(False, f"salesforce: FAILED: login: {_one_line(str(exc))}")]
    checks = [Check(True, "salesforce: ok (logged in)")]
    queries: list[tuple[str, SyncConfig | SuppressionSourceConfig]] = [
        (f"sync {sync.name}", sync) for sync in config.syncs if sync.enabled
    ]
    queries += [(f"suppression source {s.name}", s) for s in config.suppression.sources]
    for label, reader in queries:
        soql = check_query(reader)
        pages = source.query_pages(soql)
        try:
            next(pages, None)
            what = "poll query" if isinstance(reader, SyncConfig) else "query"
            checks.append(Check(True, f"salesforce: {label}: ok ({what} runs)"))
        except SalesforceQueryError as exc:
            problem = describe_query_error(soql, str(exc))
            checks.append(Check(False, f"salesforce: {label}: FAILED: {problem}"))
        except SalesforceSourceError as exc:
            checks.append(Check(False, f"salesforce: {label}: FAILED: {_one_line(str(exc))}"))
        finally:
            if isinstance(pages, Generator):
                pages.close()  # stops its read-ahead thread
    return checks


def check_database(config: Config) -> Check:
    """Reach the database read-only and compare its schema revision with the latest."""
    from syncd.adapters import migrate
    from syncd.adapters.dry_run_db import read_only_engine

    url = make_url(config.database.url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database)).expanduser()
        if not path.exists():
            parent = next((p for p in path.parents if p.exists()), None)
            if parent is None or not parent.is_dir():
                return Check(False, f"database: FAILED: cannot create {path}")
            return Check(
                True, f"database: ok ({path} does not exist yet; `syncd migrate` creates it)"
            )
    engine = read_only_engine(config.database.url)
    try:
        current = migrate.current_revision(engine)
        head = migrate.head_revision(engine)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        reason = _one_line(str(cause).splitlines()[0] if str(cause).strip() else "")
        return Check(
            False, f"database: FAILED: cannot reach {shown}: {type(cause).__name__}: {reason}"
        )
    finally:
        engine.dispose()
    if current == head:
        return Check(True, f"database: ok ({shown}: schema at revision {head}, the latest)")
    if current is None:
        return Check(True, f"database: ok ({shown}: empty; `syncd migrate` creates the schema)")
    if current in migrate.known_revisions(engine):
        return Check(
            True,
            f"database: ok ({shown}: schema at revision {current}, the latest is {head}; "
            "`syncd migrate` or `syncd run` upgrades it)",
        )
    return Check(
        False,
        f"database: FAILED: {shown}: schema at revision {current}, which this syncd does not "
        f"know (its latest is {head}); a newer syncd migrated it",
    )


def check_simz(config: Config) -> list[Check]:
    """Connect (TCP and TLS) to SimZ's host; say plainly that the API key is not checked."""
    from syncd.adapters.simz import check_simz_reachable

    try:
        line = check_simz_reachable(config.simz)
    except OSError as exc:
        return [
            Check(
                False,
                f"simz: FAILED: cannot connect to {config.simz.base_url}: "
                f"{_one_line(str(exc)) or type(exc).__name__}",
            )
        ]
    return [
        Check(True, line),
        Check(
            True,
            "simz: the API key is not checked: SimZ has no call that checks it without "
            "queueing a lead; the first delivery does (a refused key pauses delivery and "
            "shows in `syncd status`)",
        ),
    ]


def check_writeback(config: Config, source: SalesforceSource) -> list[Check]:
    """The write-back fields of every enabled sync that writes outcomes back."""
    from syncd.services.writeback_check import check_writeback_fields, failure_line

    found = check_writeback_fields(config, source)
    return [Check(True, line) for line in found.ok] + [
        Check(False, failure_line(problem)) for problem in found.problems
    ]


def check_call_writeback(config: Config, source: SalesforceSource) -> list[Check]:
    """The Task fields (or record fields) of every enabled sync that writes calls back."""
    from syncd.services.call_writeback_check import check_call_writeback as check

    return [Check(ok, line) for ok, line in check(config, source)]


def check_pubsub(config: Config, source: SalesforceSource) -> list[Check]:
    """``GetTopic`` and ``GetSchema`` of each streamed sync, with ``source``'s session."""
    from syncd.services.stream_check import check_streams

    return check_streams(config, lambda: source.session())


def check_connections(config: Config) -> list[Check]:
    """Every check, in order: database, Salesforce, write-back fields, Pub/Sub, SimZ.

    Salesforce, write-back and the Pub/Sub API share one login; after a refused
    login neither write-back fields nor Pub/Sub topics are checked (another
    refused login would only bring the user closer to a lockout).
    """
    from syncd.adapters.salesforce import SalesforceSource

    checks = [check_database(config)]
    source = SalesforceSource(config.salesforce)
    try:
        salesforce = check_salesforce(config, source)
        checks += salesforce
        if salesforce[0].ok:
            checks += check_writeback(config, source)
            checks += check_call_writeback(config, source)
            checks += check_pubsub(config, source)
        else:
            if any(s.enabled and s.writeback is not None for s in config.syncs):
                checks.append(Check(False, "writeback: not checked: the Salesforce login failed"))
            if any(s.enabled and s.call_writeback is not None for s in config.syncs):
                checks.append(
                    Check(False, "call_writeback: not checked: the Salesforce login failed")
                )
            if any(s.enabled and s.streamed for s in config.syncs):
                checks.append(Check(False, "pubsub: not checked: the Salesforce login failed"))
    finally:
        source.close()
    return [*checks, *check_simz(config)]
