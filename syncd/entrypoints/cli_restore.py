"""``syncd restore``: bring back discarded leads, after fetching their records again."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from sqlalchemy.orm import Session, sessionmaker

from syncd.config import Config
from syncd.entrypoints.cli_common import config_option, fail, load_or_exit
from syncd.entrypoints.cli_operator_common import (
    confirm_or_exit,
    current_user,
    database,
    query,
    record_readers,
    setup_logging,
)
from syncd.entrypoints.cli_requeue import EXIT_SALESFORCE_UNREACHABLE, HELD_SHOWN
from syncd.entrypoints.cli_text import echo, echo_lines
from syncd.services import operator as ops
from syncd.services.refetch import SalesforceUnreachable


@click.command()
@config_option
@click.option("--sync", "sync", required=True, help="The sync whose discarded leads to restore.")
@click.option(
    "--id",
    "ids",
    multiple=True,
    metavar="SALESFORCE_ID",
    help="Only this discarded lead (repeatable); default: every discarded lead of --sync.",
)
@click.option(
    "--reason",
    default=ops.RESTORE_REASON,
    show_default=True,
    help="Why; written to each lead's audit trail with your user name.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def restore(
    ctx: click.Context,
    config_path: Path,
    sync: str,
    ids: tuple[str, ...],
    reason: str,
    yes: bool,
) -> None:
    """Bring back leads an operator discarded: re-check them, then hold them for release.

    A discard is final: no change of the Salesforce record brings the lead
    back. This command does, and never straight to a call: it fetches every
    selected record again from Salesforce and re-applies every rule, then
    moves each lead whose record passes to held, where the blast-radius guard
    keeps it until `syncd release --sync NAME`. A record that is now
    DoNotCall, deleted, no longer matched, a duplicate or invalid stays skipped
    (or becomes invalid) with the reason. Either way the discard is lifted.

    One transaction, an audit-trail entry per lead (--reason and $USER). If
    Salesforce cannot be reached nothing changes (exit status 3). It lists the
    leads and asks for confirmation unless --yes; with no answer on stdin it
    refuses and exits 1.
    """
    config = load_or_exit(config_path)
    setup_logging(ctx, config)
    if sync not in {item.name for item in config.syncs}:
        fail(f"sync {sync!r} is not in the configuration", 2)
    with database(config) as session_factory:
        found = query(lambda: ops.discarded(session_factory, sync=sync, salesforce_ids=ids))
        missing = [sf_id for sf_id in dict.fromkeys(ids) if sf_id not in found]
        if missing:
            echo(f"not discarded leads of sync {sync}, left alone:", err=True)
            echo_lines((f"  {sf_id}" for sf_id in missing), err=True)
        if not found:
            echo(f"syncd: nothing to restore: sync {sync} has no such discarded lead", err=True)
            sys.exit(1)
        echo(
            f"about to restore {len(found)} discarded lead(s) of sync {sync} (records fetched "
            "again; those that pass every rule go to held, for `syncd release`):"
        )
        echo_lines(f"  {sf_id}" for sf_id in found[:HELD_SHOWN])
        if len(found) > HELD_SHOWN:
            echo(f"  ... and {len(found) - HELD_SHOWN} more")
        if not yes:
            confirm_or_exit("Restore these leads?", "restore", "restored")
        result = _restore(config, session_factory, sync, found, reason)
    _report(result)
    if missing:
        sys.exit(1)


def _restore(
    config: Config,
    session_factory: sessionmaker[Session],
    sync: str,
    ids: list[str],
    reason: str,
) -> ops.RestoreResult:
    """Run the restore with a Salesforce source; an unreachable Salesforce exits 3."""
    try:
        with record_readers(config) as readers:
            return query(
                lambda: ops.restore(
                    session_factory,
                    sources=readers,
                    syncs={item.name: item for item in config.syncs},
                    sync=sync,
                    salesforce_ids=ids,
                    reason=reason,
                    actor=current_user(),
                )
            )
    except SalesforceUnreachable as exc:
        fail(
            "cannot restore: the records could not be fetched again from Salesforce "
            f"({exc}); nothing was changed",
            EXIT_SALESFORCE_UNREACHABLE,
        )


def _report(result: ops.RestoreResult) -> None:
    echo(
        f"restored {len(result.leads)} lead(s) of sync {result.sync} "
        f"(reason: {result.reason}; by {result.actor}): {len(result.held)} held"
    )
    if result.held:
        echo(f"send them with `syncd release --sync {result.sync}` (or discard them again)")
    for lead in result.not_restored[:HELD_SHOWN]:
        echo(f"  {lead.salesforce_id}: {lead.state}: {lead.note}")
    if result.changed_meanwhile:
        echo(f"{result.changed_meanwhile} lead(s) changed meanwhile and were left alone")
