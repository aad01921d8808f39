"""``syncd backfill``: read a past time range of a sync through the normal poll path.

Records go through the same mapping, rules and outbox as a regular poll, so
records already known are skipped and the command can be re-run safely. The
sync's watermark is never moved. A running ``syncd run`` delivers what it
queues.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
from sqlalchemy.exc import SQLAlchemyError

from syncd.config import Config, SyncConfig
from syncd.entrypoints.backfill_progress import Progress
from syncd.entrypoints.cli_common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    config_option,
    describe_db_error,
    fail,
    load_or_exit,
    runtime_or_exit,
    setup,
)
from syncd.entrypoints.cli_operator_common import IsoTime, confirm_or_exit, current_user, table
from syncd.entrypoints.cli_text import echo, echo_lines, secho
from syncd.logs import get_logger

if TYPE_CHECKING:
    from syncd.bootstrap import Runtime
    from syncd.services.backfill import BackfillPlan
    from syncd.services.poll import PollResult

log = get_logger("syncd.backfill")

#: Why, when the operator does not say (the service's default as well).
DEFAULT_REASON = "backfill"


def _sync(config: Config, name: str) -> SyncConfig:
    try:
        return config.sync(name)
    except KeyError:
        names = ", ".join(sync.name for sync in config.syncs)
        fail(f"no sync named {name!r} in the configuration (syncs: {names})", EXIT_CONFIG)


def _report(
    result: PollResult, plan: BackfillPlan, *, dry_run: bool, stopped: bool, actor: str
) -> None:
    """The closing log line and the summary on stdout."""
    log.info(
        "backfill finished",
        sync=result.sync,
        status=result.status,
        dry_run=dry_run,
        since=plan.window.start.isoformat(),
        until=plan.window.end.isoformat(),
        pages=result.pages,
        fetched=result.fetched,
        new=result.new,
        known=result.unchanged,
        updated=result.updated,
        skipped=result.skipped,
        invalid=result.invalid,
        queued=result.queued,
        stopped=stopped,
        actor=actor,
        error=result.error,
    )
    verb = "would queue" if dry_run else "queued"
    echo(
        f"backfill {result.sync}: {result.status}{' (stopped early)' if stopped else ''}: "
        f"{result.pages} page(s), {result.fetched} record(s): new {result.new} "
        f"({verb} {result.queued}, skipped {result.skipped}, invalid {result.invalid}), "
        f"known {result.unchanged}, updated {result.updated}"
        + (
            f"; HELD {result.held} by the blast-radius guard (syncd release --sync {result.sync})"
            if result.held
            else ""
        )
        + (f"; {result.error}" if result.error else "")
    )


def _confirm_release(sync: SyncConfig, total: int | None) -> None:
    """Ask before a backfill may queue more than the guard allows; exit 1 without a yes."""
    many = f"up to {total}" if total is not None else "an unknown number of"
    secho(
        f"WARNING: --release queues every new lead of this backfill ({many} record(s)); "
        "SimZ will call each of them once.",
        err=True,
        fg="red",
        bold=True,
    )
    confirm_or_exit(f"Backfill sync {sync.name} without the blast-radius guard?", "release", "read")


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)


@dataclass(frozen=True)
class _Options:
    """The command's options that shape the backfill."""

    since: datetime
    until: datetime | None
    dry_run: bool
    reason: str
    who: str
    release: bool
    yes: bool


def _run(
    runtime: Runtime, config: Config, sync: SyncConfig, options: _Options, stop: threading.Event
) -> tuple[BackfillPlan, PollResult]:
    """Plan the backfill, say what it reads, ask before ``--release``, then run it."""
    from syncd.services import backfill as service

    salesforce = config.salesforce
    plan = service.plan_backfill(runtime, sync, salesforce, options.since, options.until)
    echo(
        f"backfill {sync.name}{' (dry run)' if options.dry_run else ''}: {plan.range}, "
        f"{plan.total if plan.total is not None else 'unknown number of'} record(s)",
        err=True,
    )
    if options.release and not options.dry_run and not options.yes:
        _confirm_release(sync, plan.total)
    _stop_on_signals(stop)
    progress = Progress(sync.name, plan.total, sys.stderr.isatty())
    if plan.bulk:
        above = salesforce.bulk_query_above
        echo(f"backfill {sync.name}: {plan.total} > {above} records: using Bulk API 2.0", err=True)
    progress.start()
    try:
        result = service.run_backfill(
            runtime,
            plan,
            salesforce,
            who=options.who,
            reason=options.reason,
            dry_run=options.dry_run,
            release=options.release,
            stop=stop,
            on_page=progress,
        )
    finally:
        progress.done()
    return plan, result


def _list_ids(result: PollResult) -> None:
    """``--dry-run --ids``: each record the dry run would change, with what it would become."""
    from syncd.services.poll_report import PREVIEW_LIMIT

    if not result.preview:
        echo("no new or changed records")
        return
    rows = [[r.salesforce_id, r.change, r.state, r.agent_id, r.note] for r in result.preview]
    echo_lines(table(["SALESFORCE ID", "CHANGE", "WOULD BE", "AGENT", "NOTE"], rows))
    if len(result.preview) >= PREVIEW_LIMIT:
        echo(f"(only the first {PREVIEW_LIMIT} are listed; the counts above are exact)")


@click.command()
@config_option
@click.option("--sync", "sync_name", required=True, metavar="NAME", help="The sync to backfill.")
@click.option(
    "--since", required=True, type=IsoTime(), help="Start of the range (cursor field, inclusive)."
)
@click.option(
    "--until",
    type=IsoTime(),
    default=None,
    help="End of the range (exclusive). Default: where the sync's regular poll window starts "
    "(watermark minus lookback).",
)
@click.option("--dry-run", is_flag=True, help="Read and count; write nothing, queue nothing.")
@click.option(
    "--ids",
    "list_ids",
    is_flag=True,
    help="With --dry-run: also list the Salesforce Id of each new or changed record and "
    "what it would become (queued, held, skipped, invalid).",
)
@click.option(
    "--reason", default=DEFAULT_REASON, show_default=True, help="Why, for the audit trail."
)
@click.option("--by", "actor", default=None, metavar="NAME", help="Who (default: your OS user).")
@click.option(
    "--release",
    is_flag=True,
    help="Queue every new lead even above the sync's blast-radius guard (asks for "
    "confirmation; without it, a backfill over the limit holds its leads for `syncd release`).",
)
@click.option("--yes", "-y", is_flag=True, help="With --release: do not ask for confirmation.")
@click.pass_context
def backfill(
    ctx: click.Context,
    config_path: Path,
    sync_name: str,
    since: datetime,
    until: datetime | None,
    dry_run: bool,
    list_ids: bool,
    reason: str,
    actor: str | None,
    release: bool,
    yes: bool,
) -> None:
    """Read a past range of a sync's records and queue the new ones, once each.

    The range is on the sync's cursor field (e.g. SystemModstamp) and the
    sync's own `where` applies. Records go through the sync's mapping and
    rules like a regular poll; records syncd already knows are skipped, so a
    backfill can be re-run, also after it was interrupted. The sync's
    watermark does not move. Queued leads are sent by the running `syncd run`
    (respecting `syncd pause`).

    On a terminal a progress line shows pages, records (of the total from a
    SELECT COUNT() query), new, known and skipped records and an ETA;
    otherwise one log line per page (log lines never cut the progress line).
    --dry-run --ids lists each new or changed record's Id and what it would
    become. Ctrl-C or SIGTERM stops after the current page, or aborts a Bulk
    API job still running, within seconds.
    Exits 1 if Salesforce or the database failed, or Salesforce's API limits
    stopped it (polling is not paused by a backfill).

    The sync's blast-radius guard applies: a backfill that finds more new
    leads than the sync's limit holds them all (`syncd release` or `syncd
    discard` settles them). --release queues them instead, after a
    confirmation (--yes skips it).
    """
    from syncd.services.backfill import NothingToBackfill

    if list_ids and not dry_run:
        fail("--ids lists what a dry run would do: use it with --dry-run", EXIT_CONFIG)
    config = load_or_exit(config_path)
    setup(ctx, config)
    sync = _sync(config, sync_name)
    stop = threading.Event()
    with runtime_or_exit(config, dry_run=dry_run) as runtime:
        try:
            who = (actor or current_user()).strip() or "unknown"
            options = _Options(since, until, dry_run, reason, who, release, yes)
            plan, result = _run(runtime, config, sync, options, stop)
        except NothingToBackfill as exc:
            fail(str(exc), EXIT_CONFIG)
        except SQLAlchemyError as exc:
            fail(f"database error: {describe_db_error(exc)}")
        finally:
            runtime.close()
    _report(result, plan, dry_run=dry_run, stopped=stop.is_set(), actor=who)
    if list_ids:
        _list_ids(result)
    if result.status != "ok" or stop.is_set():
        ctx.exit(EXIT_FAILURE)
