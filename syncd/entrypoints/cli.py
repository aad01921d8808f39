"""The ``syncd`` command line.

Every command that reads the configuration takes ``-c/--config`` (default
``$SYNCD_CONFIG`` or ``./config.yaml``). A configuration problem prints one
line per problem to stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from syncd import __version__
from syncd.config import Config, ConfigError, load_config
from syncd.config.loader import DATABASE_ONLY
from syncd.config.types import format_duration
from syncd.entrypoints.cli_text import echo, echo_json
from syncd.logs import configure_logging, get_logger

EXIT_CONFIG = 2
EXIT_FAILURE = 1

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# Annotated so that command modules imported at the bottom (an import cycle) see its type.
config_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SYNCD_CONFIG",
    default="config.yaml",
    show_default="$SYNCD_CONFIG or ./config.yaml",
    help="The YAML configuration file.",
)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    echo(f"syncd: {message}", err=True)
    sys.exit(code)


def load_or_exit(path: Path, uses: frozenset[str] | None = None) -> Config:
    """Load the configuration, or print its problems and exit 2.

    ``uses``: the credential sections the command talks to (default: all); the
    secrets of the others may be missing (see :func:`syncd.config.parse_config`).
    """
    try:
        return load_config(path, uses=uses)
    except ConfigError as exc:
        for line in exc.lines:
            echo(line, err=True)
        sys.exit(EXIT_CONFIG)


def setup(ctx: click.Context, config: Config | None = None) -> None:
    """Configure logging from the global options and the configuration."""
    options: dict[str, Any] = ctx.find_root().params
    fmt = options.get("log_format") or (config.observability.log_format if config else "auto")
    level = options.get("log_level") or (config.observability.log_level if config else "info")
    configure_logging(level=level, fmt=fmt, secrets=config.secret_values() if config else ())


def freeze_startup_objects() -> None:
    """Move everything allocated so far (modules, config, engine) out of the GC's way.

    For the long-running commands (``run``, ``once``), once wiring is done: the
    ~120,000 objects of a started syncd otherwise get walked by every full
    collection, which cost about 5 us per polled record. Frozen objects are still
    freed by reference counting; only the cycle collector stops visiting them.
    """
    gc.freeze()


def describe_db_error(exc: SQLAlchemyError) -> str:
    """One line for a database error, without SQLAlchemy's multi-line background."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}"


def open_engine(config: Config) -> Engine:
    from syncd.adapters.db import make_engine

    return make_engine(config.database.url, pool_size=config.database.pool_size)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="syncd")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default=None,
    help="Log rendering; overrides observability.log_format. auto: console on a terminal.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Log level; overrides observability.log_level.",
)
def main(log_format: str | None, log_level: str | None) -> None:
    """syncd moves new Salesforce records into SimZ calling agents: never twice, never lost.

    Start with `syncd check-config -c config.yaml`, then `syncd migrate`.
    """


@main.command("check-config")
@config_option
@click.option(
    "--connect",
    is_flag=True,
    help="Also reach the database (read-only; reports its schema revision), log in to "
    "Salesforce and run each sync's poll query with LIMIT 1, check the write-back fields "
    "against the object's describe, and open a TLS connection to SimZ (no lead is sent, so "
    "the API key is not checked). Exits 1 if any check fails.",
)
@click.pass_context
def check_config(ctx: click.Context, config_path: Path, connect: bool) -> None:
    """Validate the configuration file and summarise its syncs.

    Exits 0 when the file is valid and 2 with one line per problem otherwise
    (files it names, such as ca_bundle, must exist). With --connect, one line per
    check (database, Salesforce login, each sync's query, write-back fields, SimZ)
    and exit 1 if any fails.
    """
    config = load_or_exit(config_path)
    setup(ctx, config)
    echo(f"{config_path}: ok, {len(config.syncs)} sync(s)")
    for sync in config.syncs:
        schedule = (
            f"every {format_duration(sync.schedule.every)}"
            if sync.schedule.every is not None
            else f"cron '{sync.schedule.cron}' ({sync.schedule.timezone})"
        )
        start = "now" if sync.start_at == "now" else sync.start_at.isoformat()
        echo(
            f"  {sync.name}{'' if sync.enabled else ' (disabled)'}: {sync.object} -> "
            f"{', '.join(sync.agents)}; poll {schedule}; start_at {start}; "
            f"lookback {format_duration(sync.lookback)}"
        )
    if connect:
        from syncd.services.connect_check import check_connections

        checks = check_connections(config)
        for check in checks:
            echo(check.text, err=not check.ok)
        sys.exit(EXIT_FAILURE if any(not check.ok for check in checks) else 0)


@main.command("config-schema")
def config_schema() -> None:
    """Print the JSON Schema of the configuration file.

    Point your editor's YAML language server at it to get completion and
    validation while you write config.yaml.
    """
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "syncd configuration"
    echo_json(schema)


@main.command()
@config_option
@click.pass_context
def migrate(ctx: click.Context, config_path: Path) -> None:
    """Create or upgrade the database schema to the latest version.

    Safe to run on every start: an up-to-date database is left alone. Needs only
    the database settings: Salesforce and SimZ secrets may be unset.
    """
    from syncd.adapters import migrate as migrations

    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup(ctx, config)
    log = get_logger("syncd.migrate")
    try:
        engine = open_engine(config)
    except OSError as exc:  # e.g. the SQLite file's folder cannot be created
        fail(f"cannot open the database: {exc}")
    try:
        result = migrations.upgrade(engine)
    except SQLAlchemyError as exc:
        fail(f"cannot migrate the database: {describe_db_error(exc)}")
    except OSError as exc:
        fail(f"cannot migrate the database: {exc}")
    finally:
        engine.dispose()
    if result.changed:
        log.info("database migrated", from_revision=result.before, to_revision=result.after)
        echo(f"migrated the database from {result.before or 'empty'} to {result.after}")
    else:
        echo(f"the database is up to date (revision {result.after})")


from syncd.entrypoints.cli_sandbox import sandbox  # noqa: E402

main.add_command(sandbox)

from syncd.entrypoints.cli_operator import (  # noqa: E402
    discard,
    leads,
    release,
    requeue,
    status,
    writeback,
)

for _operator_command in (status, leads, requeue, release, discard, writeback):
    main.add_command(_operator_command)

from syncd.entrypoints.cli_pause import pause, resume  # noqa: E402

main.add_command(pause)
main.add_command(resume)

from syncd.entrypoints.cli_run import run  # noqa: E402

main.add_command(run)

from syncd.entrypoints.cli_once import once  # noqa: E402

main.add_command(once)

from syncd.entrypoints.cli_demo import demo  # noqa: E402

main.add_command(demo)

from syncd.entrypoints.cli_backfill import backfill  # noqa: E402

main.add_command(backfill)
