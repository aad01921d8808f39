"""``syncd resolve``: record that SimZ confirmed it has uncertain leads (database only)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from syncd.config.loader import DATABASE_ONLY
from syncd.entrypoints.cli_common import config_option, fail, load_or_exit
from syncd.entrypoints.cli_operator_common import (
    confirm_or_exit,
    current_user,
    database,
    query,
    setup_logging,
)
from syncd.entrypoints.cli_text import echo, echo_lines
from syncd.services import operator as ops


def _left_alone(problems: Sequence[str]) -> None:
    """Name each Id that is not resolved, on stderr."""
    echo(f"{len(problems)} Id(s) left alone:", err=True)
    echo_lines((f"  {problem}" for problem in problems), err=True)


@click.command()
@config_option
@click.option("--sync", "sync", required=True, help="The sync of the leads.")
@click.option(
    "--id",
    "ids",
    multiple=True,
    required=True,
    metavar="SALESFORCE_ID",
    help="An uncertain lead SimZ confirmed it has (repeatable).",
)
@click.option(
    "--as",
    "target",
    required=True,
    type=click.Choice(list(ops.RESOLVE_TARGETS)),
    help="What SimZ confirmed: accepted (SimZ has the lead).",
)
@click.option(
    "--reason",
    default=ops.RESOLVE_REASON,
    show_default=True,
    help="Why; written to each lead's audit trail with your user name.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def resolve(
    ctx: click.Context,
    config_path: Path,
    sync: str,
    ids: tuple[str, ...],
    target: str,
    reason: str,
    yes: bool,
) -> None:
    """Record that SimZ has uncertain leads: move them to accepted.

    Use it when SimZ confirmed it has the lead (its request reached SimZ but the
    answer was lost): the lead becomes accepted, is never sent again, and no
    longer counts in syncd_uncertain_leads (the daemon's gauge drops at its next
    refresh). For a lead SimZ does NOT have, use `syncd requeue --id ...`
    instead: it fetches the record again, re-checks every rule and queues it.

    Only uncertain leads of --sync move, in one transaction, each with an
    audit-trail entry (--reason and $USER), its write-back when the sync writes
    accepted back, and one operator_actions row. Any other Id (unknown, of
    another sync, or a lead in another state) is named and left alone; the
    exit status is then 1, as it is when nothing could be resolved. Only the
    database changes, never Salesforce or SimZ.

    It lists the leads and asks for confirmation, unless --yes. If stdin gives
    no answer (e.g. run from a script with stdin closed), it refuses and exits 1.
    """
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    with database(config) as session_factory:
        try:
            preview = query(
                lambda: ops.preview_resolve(session_factory, sync=sync, salesforce_ids=ids)
            )
        except ValueError as exc:
            fail(f"{exc}; give --id SALESFORCE_ID", 2)
        if preview.problems:
            _left_alone(preview.problems)
        if not preview.ready:
            echo("syncd: nothing was resolved: no named lead is uncertain", err=True)
            sys.exit(1)
        echo(
            f"about to mark {len(preview.ready)} uncertain lead(s) of sync {sync} as {target} "
            "(SimZ has them; they will never be sent again):"
        )
        echo_lines(f"  {sf_id}" for sf_id in preview.ready)
        if not yes:
            confirm_or_exit(f"Resolve these leads as {target}?", "resolve", "resolved")
        result = query(
            lambda: ops.resolve(
                session_factory,
                sync=sync,
                salesforce_ids=ids,
                target=target,
                reason=reason,
                actor=current_user(),
            )
        )
    echo(
        f"resolved {len(result.resolved)} lead(s) of sync {sync} as {result.target} "
        f"(reason: {result.reason}; by {result.actor})"
    )
    late = [problem for problem in result.problems if problem not in preview.problems]
    if late:
        _left_alone(late)
    if result.problems or not result.resolved:
        sys.exit(1)
