"""``syncd writeback retry``: send a sync's failed write-backs to Salesforce again."""

from __future__ import annotations

from pathlib import Path

import click

from syncd.config.loader import DATABASE_ONLY
from syncd.entrypoints.cli_common import config_option, load_or_exit
from syncd.entrypoints.cli_operator_common import (
    confirm_or_exit,
    current_user,
    database,
    query,
    setup_logging,
)
from syncd.entrypoints.cli_text import echo
from syncd.services import operator as ops


@click.group("writeback")
def writeback() -> None:
    """Write-back of lead outcomes to Salesforce records: repair failed writes."""


@writeback.command("retry")
@config_option
@click.option("--sync", "sync", required=True, help="The sync whose failed write-backs to retry.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def writeback_retry(ctx: click.Context, config_path: Path, sync: str, yes: bool) -> None:
    """Move a sync's failed write-backs back to pending; the daemon sends them again.

    A write-back fails when Salesforce refuses the record for good (deleted,
    a field the user may not edit, a value too long). Fix the cause first
    (`syncd leads --history` shows each attempt's error), then retry. Only the
    Salesforce records are written again; no lead is sent to SimZ.

    It shows how many rows would move and asks for confirmation, unless --yes.
    """
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    with database(config) as session_factory:
        count = query(lambda: ops.failed_writebacks(session_factory, sync))
        if count == 0:
            echo(f"sync {sync}: no failed write-back; nothing to retry")
            return
        echo(f"about to retry {count} failed write-back(s) of sync {sync}")
        if not yes:
            confirm_or_exit("Retry these write-backs?", "retry", "retried")
        moved = query(lambda: ops.retry_writebacks(session_factory, sync, actor=current_user()))
    echo(f"retried {moved} write-back(s) of sync {sync}: pending again")
