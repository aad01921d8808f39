"""What the operator commands share: the database they open, logging, times, tables, confirmation.

The operator commands (``status``, ``leads``, ``requeue``, ``resolve``,
``release``, ``discard``, ``writeback retry``, ``pause``, ``resume``,
``backfill``) each live in their own ``cli_*`` module. ``status`` and ``leads``
read only the database, never Salesforce or SimZ; ``requeue`` changes the
database after fetching the selected records again from Salesforce;
``resolve``, ``release`` and ``discard`` change only the database. ``status``,
``leads``, ``resolve``, ``release``, ``discard`` and ``requeue --dry-run``
(which reads only the database) load the configuration without the
Salesforce and SimZ secrets (unset ones are left unresolved; the database
section is checked as usual). They never migrate: a database that is not at the
latest schema gets "run syncd migrate" and exit 1, an unreachable one a single
line and exit 1. Logs go to stderr so that ``--json`` output on stdout stays
parseable.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from syncd.config import Config
from syncd.entrypoints.cli_common import describe_db_error, fail, open_engine
from syncd.entrypoints.cli_text import printable
from syncd.logs import configure_logging
from syncd.services.operator import iso
from syncd.services.refetch import RecordSource

T = TypeVar("T")


def setup_logging(ctx: click.Context, config: Config) -> None:
    """Configure logging from the global options and the configuration, to stderr."""
    options: dict[str, Any] = ctx.find_root().params
    configure_logging(
        level=options.get("log_level") or config.observability.log_level,
        fmt=options.get("log_format") or config.observability.log_format,
        stream=sys.stderr,
        secrets=config.secret_values(),
    )


@contextmanager
def database(config: Config) -> Iterator[sessionmaker[Session]]:
    """A session factory on a reachable database at the latest schema, or exit 1."""
    from syncd.adapters import migrate, writeback_store
    from syncd.adapters.db import make_session_factory

    url = make_url(config.database.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(str(url.database)).expanduser()
        if not path.is_file():
            fail(f"the database file {path} does not exist; run `syncd migrate` first")
    try:
        engine = open_engine(config)
    except OSError as exc:
        fail(f"cannot open the database: {exc}")
    try:
        try:
            current = migrate.current_revision(engine)
            head = migrate.head_revision(engine)
        except SQLAlchemyError as exc:
            fail(f"cannot reach the database: {describe_db_error(exc)}")
        if current != head:
            fail(
                f"the database schema is at revision {current or 'none'}, not {head}; "
                "run `syncd migrate` first"
            )
        session_factory = make_session_factory(engine)
        # Operator moves (requeue's re-check, resolve, release, discard) queue write-backs too.
        writeback_store.install(session_factory, config.syncs)
        yield session_factory
    finally:
        engine.dispose()


@contextmanager
def record_readers(config: Config) -> Iterator[Callable[[str], RecordSource]]:
    """Sync name -> its records read again from Salesforce, in canonical form.

    For the commands that fetch records before they change a lead (``requeue``,
    ``restore``): one Salesforce login, closed when the block ends.
    """
    from syncd.adapters.canonical_source import CanonicalSource
    from syncd.adapters.salesforce import SalesforceSource

    source = SalesforceSource(config.salesforce)
    readers = {
        sync.name: CanonicalSource(source, source.describe_fields, sync) for sync in config.syncs
    }
    try:
        yield readers.__getitem__
    finally:
        source.close()


def query(action: Callable[[], T]) -> T:
    """Run a database call; a database error becomes one line and exit 1."""
    try:
        return action()
    except SQLAlchemyError as exc:
        fail(f"database error: {describe_db_error(exc)}")


def current_user() -> str:
    """Who runs the command, for the audit trail: $USER, else the login name."""
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def confirm_or_exit(question: str, verb: str, done: str) -> None:
    """Ask ``question``; no answer on stdin or a no exits 1 saying nothing was ``done``."""
    try:
        confirmed = click.confirm(question, default=False, err=True)
    except click.Abort:
        fail(f"no confirmation on stdin; rerun with --yes to {verb} without asking")
    if not confirmed:
        fail(f"not confirmed; nothing was {done}")


def when(value: datetime | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM:SSZ`` (UTC), or ``-``."""
    return (iso(value, "seconds") or "-").replace("T", " ")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> list[str]:
    """Left-aligned columns, two spaces apart."""
    cells = [list(headers)] + [["-" if c is None else printable(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def short(text: str | None, width: int = 60) -> str:
    """One printable line of at most ``width`` characters, or ``-``."""
    if not text:
        return "-"
    line = printable(" ".join(text.split()))
    return line if len(line) <= width else line[: width - 1] + "…"


class IsoTime(click.ParamType):  # type: ignore[type-arg]
    """An ISO 8601 date or time; without an offset it is read as UTC."""

    name = "ISO-TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO time such as 2024-05-01T12:00:00Z", param, ctx)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
