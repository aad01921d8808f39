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
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
from sqlalchemy.exc import SQLAlchemyError

from syncd.config import Config, SyncConfig
from syncd.domain.window import PollWindow, floor_second
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
from syncd.entrypoints.cli_operator_common import IsoTime, confirm_or_exit, current_user
from syncd.entrypoints.cli_text import echo, secho
from syncd.logs import get_logger

if TYPE_CHECKING:
    from syncd.bootstrap import Runtime
    from syncd.services.poll import PollResult, RecordSource

log = get_logger("syncd.backfill")

DEFAULT_REASON = "backfill"


def _sync(config: Config, name: str) -> SyncConfig:
    try:
        return config.sync(name)
    except KeyError:
        names = ", ".join(sync.name for sync in config.syncs)
        fail(f"no sync named {name!r} in the configuration (syncs: {names})", EXIT_CONFIG)


def _default_until(runtime: Runtime, sync: SyncConfig) -> datetime:
    """Where the regular poll's own window begins (so the two do not read the same records)."""
    from syncd.adapters import poll_store

    with runtime.session_factory() as session:
        state = poll_store.get_state(session, sync.name)
    if state is None or state.watermark is None:
        return runtime.now() - sync.lag
    return max(state.start_at, state.watermark - sync.lookback)


def _range(window: PollWindow) -> str:
    return f"{window.start.isoformat()} .. {window.end.isoformat()}"


def _window(
    runtime: Runtime, sync: SyncConfig, since: datetime, until: datetime | None
) -> PollWindow:
    """``[since, until)`` in whole seconds, or exit 2 when it is empty."""
    start = floor_second(since)
    end = floor_second(until or _default_until(runtime, sync))
    if end <= start:
        fail(
            f"nothing to backfill: --since {start.isoformat()} is not before {end.isoformat()}",
            EXIT_CONFIG,
        )
    return PollWindow(start, end)


def _audit(runtime: Runtime, sync: SyncConfig, window: PollWindow, who: str, reason: str) -> None:
    """One ``operator_actions`` row, written before the first page (a killed run is listed too)."""
    from syncd.adapters import operator_pauses

    with runtime.session_factory.begin() as session:
        operator_pauses.record_action(
            session,
            at=runtime.now(),
            actor=who,
            action="backfill",
            scope=operator_pauses.SCOPE_SYNC,
            name=sync.name,
            reason=reason.strip() or DEFAULT_REASON,
            detail=_range(window),
        )


def _report(
    result: PollResult, window: PollWindow, *, dry_run: bool, stopped: bool, actor: str
) -> None:
    """The closing log line and the summary on stdout."""
    log.info(
        "backfill finished",
        sync=result.sync,
        status=result.status,
        dry_run=dry_run,
        since=window.start.isoformat(),
        until=window.end.isoformat(),
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


def _reader(runtime: Runtime, config: Config, sync: SyncConfig, total: int | None) -> RecordSource:
    """REST pages, or a Bulk API 2.0 query job above ``salesforce.bulk_query_above``.

    Either way the records come in one canonical form, so a record read both ways
    maps to the same lead.
    """
    from syncd.adapters.canonical_source import CanonicalSource
    from syncd.adapters.salesforce_bulk import BulkQuerySource

    above = config.salesforce.bulk_query_above
    if total is None or not above or total <= above:
        return runtime.reader(sync)
    echo(f"backfill {sync.name}: {total} > {above} records: using Bulk API 2.0", err=True)
    source = runtime.source(sync.name)
    bulk = BulkQuerySource(source, page_size=config.salesforce.page_size)
    return CanonicalSource(bulk, source.describe_fields, sync)


def _count(runtime: Runtime, sync: SyncConfig, window: PollWindow) -> int | None:
    """Records in the window (``SELECT COUNT()``), or None if Salesforce would not say."""
    from syncd.adapters.salesforce import SalesforceSourceError
    from syncd.domain.soql import build_count_query

    try:
        return runtime.source(sync.name).count(build_count_query(sync, window))
    except SalesforceSourceError as exc:
        log.warning("cannot count the records to backfill", sync=sync.name, error=str(exc))
        return None


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)


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
    otherwise one log line per page. Ctrl-C stops after the current page.
    Exits 1 if Salesforce or the database failed, or Salesforce's API limits
    stopped it (polling is not paused by a backfill).

    The sync's blast-radius guard applies: a backfill that finds more new
    leads than the sync's limit holds them all (`syncd release` or `syncd
    discard` settles them). --release queues them instead, after a
    confirmation (--yes skips it).
    """
    from syncd.services.poll import backfill_sync

    config = load_or_exit(config_path)
    setup(ctx, config)
    sync = _sync(config, sync_name)
    stop = threading.Event()
    with runtime_or_exit(config, dry_run=dry_run) as runtime:
        try:
            window = _window(runtime, sync, since, until)
            who = (actor or current_user()).strip() or "unknown"
            total = _count(runtime, sync, window)
            echo(
                f"backfill {sync.name}{' (dry run)' if dry_run else ''}: {_range(window)}, "
                f"{total if total is not None else 'unknown number of'} record(s)",
                err=True,
            )
            if release and not dry_run and not yes:
                _confirm_release(sync, total)
            if not dry_run:
                _audit(runtime, sync, window, who, reason + (" (--release)" if release else ""))
            _stop_on_signals(stop)
            progress = Progress(sync.name, total, sys.stderr.isatty())
            result = backfill_sync(
                runtime.session_factory,
                _reader(runtime, config, sync, total),
                sync,
                window,
                now=runtime.now,
                dry_run=dry_run,
                stop=stop,
                max_api_usage_percent=config.salesforce.max_api_usage_percent,
                on_page=progress,
                guarded=not release,
            )
            progress.done()
        except SQLAlchemyError as exc:
            fail(f"database error: {describe_db_error(exc)}")
        finally:
            runtime.close()
    _report(result, window, dry_run=dry_run, stopped=stop.is_set(), actor=who)
    if result.status != "ok" or stop.is_set():
        ctx.exit(EXIT_FAILURE)
