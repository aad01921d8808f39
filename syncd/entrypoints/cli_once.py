"""``syncd once``: one poll (and one delivery pass) of every enabled sync, then exit.

With ``--dry-run`` it reads Salesforce and the database, prints what a poll
would queue, skip and mark invalid, and writes nothing: no lead, no watermark
move, no poll_runs row, no migration; the database is opened read-only, and a
missing one is not created (a throwaway one stands in, see
:mod:`syncd.adapters.dry_run_db`). The preview names records by Salesforce Id only (no
phone numbers or names), like the logs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from syncd.config import Config, SyncConfig
from syncd.entrypoints import sandbox_clock
from syncd.entrypoints.cli_common import (
    EXIT_FAILURE,
    bound_malloc,
    config_option,
    fail,
    freeze_startup_objects,
    load_or_exit,
    runtime_or_exit,
    setup,
)
from syncd.entrypoints.cli_text import echo

if TYPE_CHECKING:
    from syncd.bootstrap import Runtime
    from syncd.services.poll import PollResult

#: Rows of the dry-run table printed per sync (the counts are always complete).
TABLE_ROWS = 200


def _selected(config: Config, name: str | None) -> list[SyncConfig]:
    if name is None:
        return [sync for sync in config.syncs if sync.enabled]
    try:
        return [config.sync(name)]
    except KeyError:
        names = ", ".join(sync.name for sync in config.syncs)
        fail(f"no sync named {name!r} in the configuration (syncs: {names})", 2)


def _print_dry_run(result: PollResult) -> None:
    window = (
        f"{result.window_from.isoformat()} .. {result.window_to.isoformat()}"
        if result.window_from and result.window_to
        else "nothing to read yet"
    )
    echo(f"sync {result.sync} (dry run): {result.status}; window {window}")
    if result.error:
        echo(f"  error: {result.error}")
    echo(
        f"  fetched {result.fetched}, new {result.new}, updated {result.updated}, "
        f"unchanged {result.unchanged}; would queue {result.queued}, "
        f"skip {result.skipped}, mark invalid {result.invalid}"
    )
    if result.held:
        echo(
            f"  would HOLD {result.held} new lead(s): more than the guard's limit of "
            f"{result.limit} for one poll (nothing is sent until `syncd release`)"
        )
    if not result.preview:
        return
    echo(f"  {'Salesforce Id':<18}  {'change':<7}  {'state':<8}  {'agent':<20}  note")
    for row in result.preview[:TABLE_ROWS]:
        echo(
            f"  {row.salesforce_id:<18}  {row.change:<7}  {row.state:<8}  "
            f"{row.agent_id or '-':<20}  {row.note or ''}"
        )
    hidden = result.new + result.updated - min(len(result.preview), TABLE_ROWS)
    if hidden > 0:
        echo(f"  ... and {hidden} more")


@click.command()
@config_option
@click.option(
    "--sync", "sync_name", default=None, help="Only this sync (default: every enabled one)."
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read Salesforce and show what would be queued, skipped or invalid; change nothing.",
)
@click.pass_context
def once(ctx: click.Context, config_path: Path, sync_name: str | None, dry_run: bool) -> None:
    """Run one poll and one delivery pass for each enabled sync, then exit.

    A sync with a writeback section then writes the outcomes pending for it
    back to Salesforce. With simz.webhook, the call-outcome webhooks stored
    meanwhile are then processed, and each sync with call_writeback writes the
    calls received for it back (one pass each; what is left goes out with the
    next run).

    Exits 1 if any poll or delivery failed, 0 otherwise. With --dry-run, nothing
    is written and nothing is sent: the output lists, per sync, the counts and
    each new or changed record's Salesforce Id, would-be state, agent and note,
    and how many new leads the blast-radius guard would hold.
    """
    bound_malloc()  # before any thread starts
    config = load_or_exit(config_path)
    setup(ctx, config)
    syncs = _selected(config, sync_name)
    try:
        now = sandbox_clock.clock(config)
    except sandbox_clock.ClockRefused as exc:
        fail(str(exc), 2)
    with runtime_or_exit(config, dry_run=dry_run, now=now) as runtime:
        freeze_startup_objects()
        failed = _run_once(config, runtime, syncs, dry_run, now)
    if failed:
        ctx.exit(EXIT_FAILURE)


def _read_suppression_sources(config: Config, runtime: Runtime) -> bool:
    """Read each suppression source once, before the polls; True if one failed."""
    failed = False
    for source in config.suppression.sources:
        read = runtime.read_suppression(source)
        echo(
            f"suppression source {source.name}: {read.status}: {read.records} record(s), "
            f"{read.added} number(s) added" + (f"; {read.error}" if read.error else "")
        )
        failed = failed or read.status == "error"
    return failed


def _process_calls(runtime: Runtime) -> bool:
    """Process the stored call-outcome webhooks once (``simz.webhook``); True if it failed."""
    calls = runtime.process_calls()
    if calls is None:
        return False
    echo(
        f"call events: {calls.status}: {calls.matched} matched ({calls.outcomes} new call "
        f"outcome(s)), {calls.unmatched} unmatched, {calls.unreadable} unreadable; "
        f"{calls.opt_outs} opt-out(s), {calls.skipped} lead(s) skipped"
        + (f"; {calls.error}" if calls.error else "")
    )
    return calls.status == "error"


def _write_calls_back(runtime: Runtime, syncs: list[SyncConfig]) -> None:
    """One call write-back pass per sync with call_writeback, after the hooks were read."""
    for sync in syncs:
        calls = runtime.call_writeback(sync)
        if calls is not None:
            click.echo(
                f"sync {sync.name}: call write-back ({calls.mode}): {calls.calls} call(s), "
                f"done {calls.done}, to retry {calls.retry}, in doubt {calls.in_doubt}, "
                f"failed {calls.failed}" + (f"; {calls.error}" if calls.error else "")
            )


def _run_once(
    config: Config,
    runtime: Runtime,
    syncs: list[SyncConfig],
    dry_run: bool,
    now: Callable[[], datetime],
) -> bool:
    """Poll (and, unless a dry run, deliver) each sync once; True if anything failed."""
    from syncd.services.poll import poll_sync

    failed = False
    try:
        if not dry_run:
            failed = _read_suppression_sources(config, runtime)
        for sync in syncs:
            if dry_run:
                result = poll_sync(
                    runtime.session_factory,
                    runtime.reader(sync),
                    sync,
                    dry_run=True,
                    now=now,
                    max_api_usage_percent=config.salesforce.max_api_usage_percent,
                    limit_pause=config.salesforce.limit_pause,
                )
                _print_dry_run(result)
                failed = failed or result.status == "error"
                continue
            polled = runtime.poll(sync)
            echo(
                f"sync {sync.name}: poll {polled.status}: fetched {polled.fetched}, "
                f"new {polled.new}, updated {polled.updated}, unchanged {polled.unchanged}, "
                f"invalid {polled.invalid}, skipped {polled.skipped}"
                + (f", HELD {polled.held}" if polled.held else "")
                + (f"; {polled.error}" if polled.error else "")
            )
            failed = failed or polled.status == "error"
            delivered = runtime.deliver(sync)
            echo(
                f"sync {sync.name}: delivery: {delivered.batches} batch(es), accepted "
                f"{delivered.accepted}, rejected {delivered.rejected}, requeued "
                f"{delivered.requeued}, uncertain {delivered.uncertain}, failed {delivered.failed}"
                + ("; paused" if delivered.paused else "")
                + ("".join(f"; {error}" for error in delivered.errors))
            )
            failed = failed or bool(delivered.errors)
            written = runtime.writeback(sync)
            if written is not None:
                click.echo(
                    f"sync {sync.name}: write-back: {written.calls} call(s), done "
                    f"{written.done}, to retry {written.retry}, failed {written.failed}"
                    + (f"; {written.error}" if written.error else "")
                )
        if not dry_run:
            failed = _process_calls(runtime) or failed
            _write_calls_back(runtime, syncs)
    finally:
        runtime.close()
    return failed
