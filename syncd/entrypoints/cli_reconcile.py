"""``syncd reconcile``: compare every record the sync's query matches with the sync's leads.

The poll reads what changed; this reads the Ids of everything the query
matches over a range and names what no poll read (missed), the leads whose
records no longer match, and the states of the rest. ``--queue`` takes the
missed records in through the ordinary intake (mapping, rules, guard, ledger);
the running ``syncd run`` sends them through the send gate.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy.exc import SQLAlchemyError

from syncd.config import Config, SyncConfig
from syncd.entrypoints.backfill_progress import Progress, SweepProgress
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
from syncd.entrypoints.cli_operator_common import IsoTime, current_user
from syncd.entrypoints.cli_text import echo, echo_json
from syncd.logs import get_logger

if TYPE_CHECKING:
    from syncd.bootstrap import Runtime
    from syncd.services.poll import PollResult
    from syncd.services.reconcile import ReconcilePlan, ReconcileResult

log = get_logger("syncd.reconcile")

#: Why, when the operator does not say (the service's default as well).
DEFAULT_REASON = "reconcile"
#: Ids named on the summary's lines (``--json`` lists them all).
SHOWN = 10


def _sync(config: Config, name: str) -> SyncConfig:
    try:
        return config.sync(name)
    except KeyError:
        names = ", ".join(sync.name for sync in config.syncs)
        fail(f"no sync named {name!r} in the configuration (syncs: {names})", EXIT_CONFIG)


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)


@dataclass(frozen=True)
class _Options:
    since: datetime | None
    until: datetime | None
    queue: bool
    dry_run: bool
    reason: str
    who: str


def _ids(ids: list[str]) -> str:
    shown = " ".join(ids[:SHOWN])
    return shown + (f" ... ({len(ids) - SHOWN} more; --json lists all)" if len(ids) > SHOWN else "")


def _intake_words(intake: PollResult, dry_run: bool) -> str:
    verb = "would queue" if dry_run else "queued"
    return (
        f"taken in {intake.status}: read {intake.fetched} of them: new {intake.new} "
        f"({verb} {intake.queued}, skipped {intake.skipped}, invalid {intake.invalid}), "
        f"known {intake.unchanged}"
        + (
            f"; HELD {intake.held} by the blast-radius guard (syncd release --sync {intake.sync})"
            if intake.held
            else ""
        )
        + (f"; {intake.error}" if intake.error else "")
    )


def _summary(result: ReconcileResult, options: _Options) -> list[str]:
    """The summary's lines: totals, the missed and no-longer-matched Ids, the intake."""
    states = ", ".join(f"{state} {n}" for state, n in result.states.items()) or "none"
    head = (
        f"reconcile {result.sync}: {result.status}: {result.fetched} record(s) matched by the "
        f"query, missed {len(result.missed)}, no longer matched {len(result.unmatched)}; "
        f"leads by state: {states}" + (f"; {result.error}" if result.error else "")
    )
    lines = [head]
    if result.missed:
        lines.append(f"missed (matched, no lead): {_ids(result.missed)}")
    if result.unmatched:
        lines.append(f"no longer matched (lead, record not matched): {_ids(result.unmatched)}")
    if result.intake is not None:
        lines.append(_intake_words(result.intake, options.dry_run))
    elif result.missed and not options.queue and result.status == "ok":
        lines.append(f"take them in with: syncd reconcile --sync {result.sync} --queue")
    return lines


def _as_json(result: ReconcileResult, plan: ReconcilePlan, options: _Options) -> dict[str, Any]:
    intake = result.intake
    return {
        "sync": result.sync,
        "status": result.status,
        "error": result.error,
        "since": plan.window.start.isoformat(),
        "until": plan.window.end.isoformat(),
        "bulk": plan.bulk,
        "dry_run": options.dry_run,
        "records": result.fetched,
        "missed": result.missed,
        "no_longer_matched": result.unmatched,
        "states": result.states,
        "intake": None
        if intake is None
        else {
            "status": intake.status,
            "read": intake.fetched,
            "new": intake.new,
            "queued": intake.queued,
            "held": intake.held,
            "skipped": intake.skipped,
            "invalid": intake.invalid,
            "known": intake.unchanged,
            "error": intake.error,
        },
    }


def _run(
    runtime: Runtime, config: Config, sync: SyncConfig, options: _Options, stop: threading.Event
) -> tuple[ReconcilePlan, ReconcileResult]:
    """Plan the sweep, say what it reads, then run it with progress on stderr."""
    from syncd.services import reconcile as service

    salesforce = config.salesforce
    plan = service.plan_reconcile(
        runtime, sync, salesforce, since=options.since, until=options.until
    )
    echo(
        f"reconcile {sync.name}{' (dry run)' if options.dry_run else ''}: {plan.range}, "
        f"{plan.total if plan.total is not None else 'unknown number of'} record(s)",
        err=True,
    )
    if plan.bulk:
        above = salesforce.bulk_query_above
        echo(f"reconcile {sync.name}: {plan.total} > {above} records: using Bulk API 2.0", err=True)
    _stop_on_signals(stop)
    progress = Progress(sync.name, plan.total, sys.stderr.isatty(), word="reconcile")
    sweep_progress = SweepProgress(progress)
    progress.start()
    try:
        result = service.run_reconcile(
            runtime,
            plan,
            salesforce,
            queue=options.queue,
            dry_run=options.dry_run,
            who=options.who,
            reason=options.reason,
            stop=stop,
            on_page=sweep_progress,
            on_intake=sweep_progress.intake,
        )
    finally:
        progress.done()
    return plan, result


@click.command()
@config_option
@click.option("--sync", "sync_name", required=True, metavar="NAME", help="The sync to reconcile.")
@click.option(
    "--since",
    type=IsoTime(),
    default=None,
    help="Start of the range (cursor field, inclusive). Default: the sync's start_at.",
)
@click.option(
    "--until",
    type=IsoTime(),
    default=None,
    help="End of the range (exclusive). Default: where the sync's regular poll window starts "
    "(watermark minus lookback); records after it are read by the next poll anyway.",
)
@click.option(
    "--queue",
    is_flag=True,
    help="Take the missed records in through the ordinary intake (mapping, rules, the "
    "blast-radius guard); `syncd run` then sends them through the send gate.",
)
@click.option(
    "--dry-run", is_flag=True, help="Change nothing; with --queue, show what it would take in."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON (every Id) on stdout."
)
@click.option(
    "--reason", default=DEFAULT_REASON, show_default=True, help="Why, for the audit trail."
)
@click.option("--by", "actor", default=None, metavar="NAME", help="Who (default: your OS user).")
@click.pass_context
def reconcile(
    ctx: click.Context,
    config_path: Path,
    sync_name: str,
    since: datetime | None,
    until: datetime | None,
    queue: bool,
    dry_run: bool,
    as_json: bool,
    reason: str,
    actor: str | None,
) -> None:
    """Compare every record the sync's query matches with the sync's leads.

    A poll reads the records whose cursor (e.g. SystemModstamp) moved; a record
    can come to match the query without that (a formula field in the sync's
    `where`, a sharing or owner change, a commit older than the lookback, a
    stream gap longer than Salesforce keeps events) and no poll reads it. This
    reads the Ids of every record the query matches over the range (a Bulk
    API 2.0 job above salesforce.bulk_query_above) and reports:

    \b
      missed             the record matches, the sync has no lead for it
      no longer matched  a lead stored in the range whose record the query no
                         longer matches (deleted, left the where, not visible)
      leads by state     the states of the matched records' leads

    Nothing is written unless --queue is given: then the missed records are
    read by Id and go through the sync's mapping and rules like a backfill
    (the blast-radius guard holds them when they are more than its limit), one
    transaction per page; the running `syncd run` sends them. A run stopped or
    killed part way leaves whole pages only; run it again to finish.

    Ctrl-C or SIGTERM stops after the current page. Exits 1 if Salesforce or
    the database failed, Salesforce's API usage passed
    salesforce.max_api_usage_percent, or it was stopped.
    """
    from syncd.domain.reconcile import EmptyRange

    config = load_or_exit(config_path)
    setup(ctx, config, stream=sys.stderr if as_json else None)  # stdout: the JSON alone
    sync = _sync(config, sync_name)
    stop = threading.Event()
    with runtime_or_exit(config, dry_run=dry_run) as runtime:
        try:
            who = (actor or current_user()).strip() or "unknown"
            options = _Options(since, until, queue, dry_run, reason, who)
            plan, result = _run(runtime, config, sync, options, stop)
        except EmptyRange as exc:
            fail(str(exc), EXIT_CONFIG)
        except SQLAlchemyError as exc:
            fail(f"database error: {describe_db_error(exc)}")
        finally:
            runtime.close()
    log.info(
        "reconcile finished",
        sync=sync.name,
        status=result.status,
        dry_run=dry_run,
        queue=queue,
        records=result.fetched,
        missed=len(result.missed),
        no_longer_matched=len(result.unmatched),
        states=result.states,
        actor=who,
    )
    if as_json:
        echo_json(_as_json(result, plan, options))
    for line in _summary(result, options):
        echo(line, err=as_json)
    if not result.complete or stop.is_set():
        ctx.exit(EXIT_FAILURE)
