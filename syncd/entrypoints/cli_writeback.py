"""``syncd writeback retry`` and ``resync``: queue a sync's write-backs to Salesforce again.

Both change only the database (the running daemon sends the rows), ask for
confirmation unless ``--yes``, and write an ``operator_actions`` row with who
did it (your OS user, or ``--by``) and ``--reason``.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from syncd.config import Config
from syncd.config.loader import DATABASE_ONLY
from syncd.entrypoints.cli_common import EXIT_CONFIG, config_option, fail, load_or_exit
from syncd.entrypoints.cli_operator_common import (
    IsoTime,
    confirm_or_exit,
    current_user,
    database,
    query,
    setup_logging,
    when,
)
from syncd.entrypoints.cli_text import echo
from syncd.services.operator import writeback_retry as wb

_by_option = click.option(
    "--by",
    "actor",
    default=None,
    metavar="NAME",
    help="Who does it, for the audit trail. Default: your OS user name.",
)


_retry_reason = click.option(
    "--reason", default=wb.RETRY_REASON, show_default=True, help="Why; for the audit trail."
)
_resync_reason = click.option(
    "--reason", default=wb.RESYNC_REASON, show_default=True, help="Why; for the audit trail."
)


def _known(config: Config, sync: str) -> None:
    """Refuse a sync the configuration does not have, or one without write-back."""
    found = next((s for s in config.syncs if s.name == sync), None)
    if found is None:
        known = ", ".join(s.name for s in config.syncs) or "none"
        fail(f"no sync {sync!r} in the configuration (known: {known})", EXIT_CONFIG)
    if found.writeback is None or not found.enabled:
        fail(f"sync {sync} has no writeback section (or is disabled); nothing to do", EXIT_CONFIG)


@click.group("writeback")
def writeback() -> None:
    """Write-back of lead outcomes to Salesforce records: repair failed writes, resync."""


@writeback.command("retry")
@config_option
@click.option("--sync", "sync", required=True, help="The sync whose failed write-backs to retry.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_retry_reason
@_by_option
@click.pass_context
def writeback_retry(
    ctx: click.Context,
    config_path: Path,
    sync: str,
    yes: bool,
    reason: str,
    actor: str | None,
) -> None:
    """Move a sync's failed write-backs back to pending; the daemon sends them again.

    A write-back fails when Salesforce refuses the record for good (deleted,
    a field the user may not edit, a value too long). Fix the cause first
    (`syncd leads --history` shows each attempt's error), then retry. Only the
    Salesforce records are written again; no lead is sent to SimZ.

    It shows how many rows would move and asks for confirmation, unless --yes.
    The move is recorded in the audit trail with who (--by) and --reason.
    """
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    who = (actor or current_user()).strip() or "unknown"
    with database(config) as session_factory:
        count = query(lambda: wb.failed_writebacks(session_factory, sync))
        if count == 0:
            echo(f"sync {sync}: no failed write-back; nothing to retry")
            return
        echo(f"about to retry {count} failed write-back(s) of sync {sync}")
        if not yes:
            confirm_or_exit("Retry these write-backs?", "retry", "retried")
        moved = query(lambda: wb.retry_writebacks(session_factory, sync, actor=who, reason=reason))
    echo(f"retried {moved} write-back(s) of sync {sync}: pending again")


class _Progress:
    """``resync SYNC: queued N/M`` updating in place on a terminal; nothing otherwise."""

    def __init__(self, sync: str, terminal: bool) -> None:
        self.sync = sync
        self.terminal = terminal
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if self.terminal:
            click.echo(f"\rresync {self.sync}: queued {done}/{total}\033[K", nl=False, err=True)
            self.shown = True

    def done(self) -> None:
        if self.shown:
            click.echo("", err=True)


@writeback.command("resync")
@config_option
@click.option("--sync", "sync", required=True, help="The sync whose outcomes to write again.")
@click.option(
    "--since",
    type=IsoTime(),
    default=None,
    help="Every lead in a written state that changed state at or after this time "
    "(ISO 8601, UTC unless it has an offset). Default: the leads never queued.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_resync_reason
@_by_option
@click.pass_context
def writeback_resync(
    ctx: click.Context,
    config_path: Path,
    sync: str,
    since: datetime | None,
    yes: bool,
    reason: str,
    actor: str | None,
) -> None:
    """Queue the current outcome of a sync's leads for write-back; the daemon sends them.

    Without --since: the leads that reached their outcome before write-back was
    turned on (they have never been queued). With --since T: every lead in a
    state the sync writes back whose state changed at or after T, written
    before or not. Only the Salesforce records are written; no lead is sent to
    SimZ. Shows how many leads, asks for confirmation unless --yes, shows
    progress on a terminal, and records the action in the audit trail.
    """
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    _known(config, sync)
    who = (actor or current_user()).strip() or "unknown"
    scope = f"changed state since {when(since)}" if since else "never queued"
    with database(config) as session_factory:
        leads = query(lambda: wb.resync_candidates(session_factory, sync, since))
        if not leads:
            echo(f"sync {sync}: no lead to resync ({scope}); nothing queued")
            return
        echo(f"about to queue the outcome of {len(leads)} lead(s) of sync {sync} ({scope})")
        if not yes:
            confirm_or_exit("Queue these write-backs?", "resync", "queued")
        progress = _Progress(sync, sys.stderr.isatty())
        queued = query(
            lambda: wb.resync_writebacks(
                session_factory,
                sync,
                leads,
                actor=who,
                since=since,
                reason=reason,
                progress=progress,
            )
        )
        progress.done()
    echo(f"queued {queued} write-back(s) of sync {sync}: pending")
