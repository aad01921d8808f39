"""``syncd release`` and ``syncd discard``: settle the leads the blast-radius guard held.

Both change only the database, never Salesforce or SimZ.
"""

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
from syncd.entrypoints.cli_text import echo, secho
from syncd.services import operator as ops


def _settle_held(
    ctx: click.Context,
    config_path: Path,
    sync: str,
    reason: str | None,
    yes: bool,
    release: bool,
) -> None:
    """Release or discard a sync's held leads (database only, no Salesforce or SimZ)."""
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    verb, done, outcome = (
        ("release", "released", "queued") if release else ("discard", "discarded", "skipped")
    )
    with database(config) as session_factory:
        held = query(lambda: ops.count_held(session_factory, sync))
        if held == 0:
            echo(f"no held leads in sync {sync}; nothing to {verb}")
            return
        echo(f"about to {verb} {held} held lead(s) of sync {sync} (to {outcome})")
        if release:
            secho(
                f"WARNING: SimZ will call these {held} people once each.",
                err=True,
                fg="red",
                bold=True,
            )
        if not yes:
            confirm_or_exit(f"{verb.capitalize()} these leads?", verb, done)
        action = ops.release if release else ops.discard
        chosen = reason or (ops.RELEASE_REASON if release else ops.DISCARD_REASON)
        result = query(
            lambda: action(session_factory, sync=sync, actor=current_user(), reason=chosen)
        )
    echo(
        f"{done} {result.leads} lead(s) of sync {sync} (reason: {result.reason}; by {result.actor})"
    )


@click.command()
@config_option
@click.option("--sync", "sync", required=True, help="The sync whose held leads to release.")
@click.option("--reason", default=None, help="Why; written to each lead's audit trail with $USER.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def release(
    ctx: click.Context, config_path: Path, sync: str, reason: str | None, yes: bool
) -> None:
    """Send the leads the blast-radius guard held: move them to queued.

    Every held lead of the sync moves in one transaction, with an audit-trail
    entry (reason and $USER); delivery then sends each of them once. It shows
    how many and asks for confirmation, unless --yes; with no answer on stdin
    it refuses and exits 1.
    """
    _settle_held(ctx, config_path, sync, reason, yes, release=True)


@click.command()
@config_option
@click.option("--sync", "sync", required=True, help="The sync whose held leads to discard.")
@click.option("--reason", default=None, help="Why; written to each lead's audit trail with $USER.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def discard(
    ctx: click.Context, config_path: Path, sync: str, reason: str | None, yes: bool
) -> None:
    """Never send the leads the blast-radius guard held: move them to skipped.

    Every held lead of the sync moves in one transaction, with an audit-trail
    entry (reason and $USER). The discard is final: a later change of the
    Salesforce record is stored on the lead but never sends it. Confirmation as
    for release.
    """
    _settle_held(ctx, config_path, sync, reason, yes, release=False)
