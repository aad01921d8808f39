"""``syncd requeue``: send uncertain, failed or rejected leads again, after a fresh fetch."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import click
from sqlalchemy.orm import Session, sessionmaker

from syncd.config import Config
from syncd.config.loader import DATABASE_ONLY
from syncd.entrypoints.cli_common import config_option, fail, load_or_exit
from syncd.entrypoints.cli_operator_common import (
    confirm_or_exit,
    current_user,
    database,
    query,
    record_readers,
    setup_logging,
)
from syncd.entrypoints.cli_text import echo, echo_lines, secho
from syncd.services import operator as ops
from syncd.services.operator import REQUEUE_STATES
from syncd.services.refetch import SalesforceUnreachable

#: Held-back leads listed one per line after a requeue.
HELD_SHOWN = 50
#: Exit status when Salesforce cannot be reached to fetch the records again.
EXIT_SALESFORCE_UNREACHABLE = 3


@dataclass(frozen=True)
class _Selection:
    """The leads the operator chose: by sync, states and Salesforce Ids (empty: any)."""

    sync: str | None
    states: tuple[str, ...]
    ids: tuple[str, ...]

    def empty(self) -> bool:
        return self.sync is None and not self.states and not self.ids

    @property
    def state_list(self) -> list[str] | None:
        return list(self.states) or None

    @property
    def id_list(self) -> list[str] | None:
        return list(self.ids) or None


@click.command()
@config_option
@click.option("--sync", "sync", default=None, help="Only leads of this sync.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(list(REQUEUE_STATES)),
    help="Only leads in this state (repeatable). Default: uncertain, failed and rejected.",
)
@click.option(
    "--id",
    "ids",
    multiple=True,
    metavar="SALESFORCE_ID",
    help="Only this record (repeatable). All or nothing: see below.",
)
@click.option(
    "--reason",
    default=ops.DEFAULT_REASON,
    show_default=True,
    help="Why; written to each lead's audit trail with your user name.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only show what would be requeued, from the database alone (no Salesforce fetch: "
    "the real run may still hold some leads back).",
)
@click.pass_context
def requeue(
    ctx: click.Context,
    config_path: Path,
    sync: str | None,
    states: tuple[str, ...],
    ids: tuple[str, ...],
    reason: str,
    yes: bool,
    dry_run: bool,
) -> None:
    """Send uncertain, failed or rejected leads again: move them back to queued.

    Needs at least one of --sync, --state, --id (a bare `syncd requeue` is
    refused). The selected records are first fetched again from Salesforce and
    every rule re-applied: a record that is now DoNotCall, deleted, no longer
    matched by the sync's `where`, a duplicate or invalid becomes skipped or
    invalid with the reason; the others go back to queued with their current
    data. If Salesforce cannot be reached, nothing changes (exit status 3).
    Attempts, retry time and error fields are reset; every moved lead gets an
    audit-trail entry with --reason and $USER. It all happens in one
    transaction, and a lead whose state changed meanwhile is left alone.

    WARNING: an uncertain lead may already be in SimZ's calling queue (its
    request reached SimZ but the answer was lost). Requeueing it may make SimZ
    call that person twice. Check with SimZ first (`syncd leads --state
    uncertain` shows the batches).

    Accepted leads are never requeued. With --id the list is all or nothing:
    if any Id is unknown or names a lead that would not move (accepted, queued,
    or not in the chosen --state), nothing is requeued and each problem is
    named; exit status 1.

    It shows how many leads of which states would move and asks for
    confirmation, unless --yes. If stdin gives no answer (e.g. run from a
    script with stdin closed), it refuses and exits 1.
    """
    # A dry run only reads the database; a real requeue may need Salesforce.
    config = load_or_exit(config_path, uses=DATABASE_ONLY if dry_run else None)
    setup_logging(ctx, config)
    selection = _Selection(sync, states, ids)
    if selection.empty():
        fail(
            "refusing to requeue without a selector: give --sync NAME, --state STATE "
            "or --id SALESFORCE_ID",
            2,
        )
    with database(config) as session_factory:
        preview = query(
            lambda: ops.preview_requeue(
                session_factory,
                sync=selection.sync,
                states=selection.state_list,
                salesforce_ids=selection.id_list,
            )
        )
        if preview.problems:
            _refused(preview.problems)
        if preview.total == 0:
            echo("no lead matches; nothing to requeue")
            return
        _show_preview(preview, dry_run)
        if dry_run:
            echo(
                "dry run: nothing was changed (the records were not fetched again: a real "
                "requeue may still skip some, or find them invalid)"
            )
            return
        if not yes:
            confirm_or_exit("Requeue these leads?", "requeue", "requeued")
        result = _requeue(config, session_factory, selection, reason)
    _report(result)


def _summary(counts: Sequence[ops.RequeueCount]) -> list[str]:
    by_sync: dict[str, list[str]] = {}
    for c in counts:
        by_sync.setdefault(c.sync, []).append(f"{c.state} {c.leads}")
    return [f"  sync {name}: {', '.join(parts)}" for name, parts in by_sync.items()]


def _refused(problems: Sequence[str]) -> NoReturn:
    """Name each problem that stops the requeue, and exit 1."""
    echo("syncd: nothing was requeued:", err=True)
    for problem in problems:
        echo(f"  {problem}", err=True)
    sys.exit(1)


def _show_preview(preview: ops.RequeuePreview, dry_run: bool) -> None:
    """How many leads of which states would move, and the warning for uncertain ones."""
    echo(
        f"{'would requeue' if dry_run else 'about to requeue'} {preview.total} "
        "lead(s) (back to queued):"
    )
    echo_lines(_summary(preview.counts))
    if preview.uncertain:
        secho(
            f"WARNING: {preview.uncertain} of them are uncertain: SimZ may already have "
            "queued them, and sending them again may make SimZ CALL A PERSON TWICE.",
            err=True,
            fg="red",
            bold=True,
        )


def _report(result: ops.RequeueResult) -> None:
    """What moved, what the fresh records held back, what changed meanwhile."""
    echo(f"requeued {result.total} lead(s) (reason: {result.reason}; by {result.actor}):")
    echo_lines(_summary(result.moved))
    if result.held:
        echo(f"{len(result.held)} lead(s) not requeued: their records now fail a rule:")
        for held in result.held[:HELD_SHOWN]:
            echo(
                f"  {held.salesforce_id} ({held.sync}): {held.from_state} -> {held.state}: "
                f"{held.note}"
            )
        if len(result.held) > HELD_SHOWN:
            echo(f"  ... and {len(result.held) - HELD_SHOWN} more (see `syncd leads`)")
    if result.skipped_by_filter:
        echo(f"{result.skipped_by_filter} lead(s) changed state meanwhile and were left alone")


def _requeue(
    config: Config,
    session_factory: sessionmaker[Session],
    selection: _Selection,
    reason: str,
) -> ops.RequeueResult:
    """Run the requeue with a Salesforce source; refusals become messages and exit codes."""
    try:
        with record_readers(config) as readers:
            return query(
                lambda: ops.requeue(
                    session_factory,
                    sources=readers,
                    syncs={item.name: item for item in config.syncs},
                    sync=selection.sync,
                    states=selection.state_list,
                    salesforce_ids=selection.id_list,
                    reason=reason,
                    actor=current_user(),
                )
            )
    except ops.RequeueRefused as exc:
        _refused(exc.problems)
    except SalesforceUnreachable as exc:
        fail(
            "cannot requeue: the records could not be fetched again from Salesforce "
            f"({exc}); nothing was changed",
            EXIT_SALESFORCE_UNREACHABLE,
        )
