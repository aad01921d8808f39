"""``syncd demo``: the pipeline against the built-in emulators (``demo_runner``)."""

from __future__ import annotations

import sys
from typing import Any

import click

from syncd.entrypoints.cli_common import CONTEXT_SETTINGS, EXIT_FAILURE
from syncd.entrypoints.cli_text import echo
from syncd.logs import configure_logging


@click.command("demo", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--leads",
    "lead_count",
    type=click.IntRange(1, 2000),
    default=200,
    show_default=True,
    help="How many Lead records to seed (5 more are added while it runs).",
)
@click.option(
    "--keep/--no-keep",
    default=True,
    show_default=True,
    help="Keep the temporary folder (config, SQLite database) so the printed "
    "status/leads/requeue commands work; --no-keep removes it at the end.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary, not each step.")
@click.option(
    "--timeout",
    type=click.FloatRange(5, 600),
    default=90,
    show_default=True,
    help="Seconds to wait for the outbox to empty before giving up (exit 1).",
)
@click.pass_context
def demo(ctx: click.Context, lead_count: int, keep: bool, quiet: bool, timeout: float) -> None:
    """Run the whole pipeline against the built-in emulators: no credentials, loopback only.

    Starts a Salesforce emulator (HTTPS, with a CA made for the run) and a SimZ
    emulator in this process, seeds Lead records (some with bad phones, some
    DoNotCall, some sharing a number), writes a config file and a SQLite
    database to a new temporary folder, and runs the daemon's own scheduler
    (what `syncd run` runs) with short intervals until nothing is queued. On
    the way it adds a few records (the next poll finds them) and makes SimZ
    answer a 429 and lose one answer, so a retry and an uncertain batch show.

    It prints a summary (leads by state, batches by outcome, an uncertain lead
    and the command to requeue it) and the `syncd status` / `syncd leads`
    commands to explore the database it leaves. The folder is kept (use
    --no-keep to remove it). Exit status 0, or 1 if the outbox did not empty
    within --timeout.

    The daemon's log lines go to syncd.log in that folder (JSON lines, at
    warning level; change it with `syncd --log-level info demo`), so that
    none interrupts what the demo tells.
    """
    from syncd.entrypoints.demo_runner import Demo, DemoOptions, command_prefix, render_summary

    options: dict[str, Any] = ctx.find_root().params
    level = options.get("log_level") or "warning"
    configure_logging(level=level, fmt=options.get("log_format") or "auto", stream=sys.stderr)
    runner = Demo(
        DemoOptions(leads=lead_count, keep=keep, quiet=quiet, timeout=timeout, log_level=level),
        echo=echo,
    )
    summary = runner.run()
    for line in render_summary(summary, prefix=command_prefix()):
        echo(line)
    sys.exit(0 if summary.idle else EXIT_FAILURE)
