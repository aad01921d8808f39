"""``syncd migrate``: create or upgrade the database schema."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from syncd.config.loader import DATABASE_ONLY
from syncd.entrypoints.cli_common import (
    config_option,
    describe_db_error,
    fail,
    load_or_exit,
    open_engine,
    setup,
)
from syncd.entrypoints.cli_text import echo
from syncd.logs import get_logger


@click.command()
@config_option
@click.pass_context
def migrate(ctx: click.Context, config_path: Path) -> None:
    """Create or upgrade the database schema to the latest version.

    Safe to run on every start: an up-to-date database is left alone. Safe to
    run from several replicas at once: each waits for the database's migration
    lock, so the first migrates and the others find nothing to do. Needs only
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
