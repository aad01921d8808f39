"""The ``syncd`` command line.

Every command that reads the configuration takes ``-c/--config`` (default
``$SYNCD_CONFIG`` or ``./config.yaml``). A configuration problem prints one
line per problem to stderr and exits with status 2, never a traceback.

This module only assembles the group: each command lives in its own
``cli_*`` module, and what they share lives in ``cli_common`` (the operator
commands also share ``cli_operator_common``). The commands are imported when
one is run, not before: ``syncd --help`` (and a typo) answers without loading
the configuration models, SQLAlchemy or the Salesforce client. Each command's
one-line help is written here for that list; a test keeps it equal to the
command's own.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from syncd import __version__

#: Name -> (module under syncd.entrypoints, attribute, the first sentence of its help).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "audit": (
        "cli_audit",
        "audit",
        "Evidence of who was called and why: export every dial decision for a number.",
    ),
    "backfill": (
        "cli_backfill",
        "backfill",
        "Read a past range of a sync's records and queue the new ones, once each.",
    ),
    "calls": (
        "cli_calls",
        "calls",
        "List the call-outcome webhooks received, newest first, with their lead and write-back.",
    ),
    "check-config": (
        "cli_config",
        "check_config",
        "Validate the configuration file and summarise its syncs.",
    ),
    "config-schema": (
        "cli_config",
        "config_schema",
        "Print the JSON Schema of the configuration file.",
    ),
    "demo": (
        "cli_demo",
        "demo",
        "Run the whole pipeline against the built-in emulators: no credentials, loopback only.",
    ),
    "discard": (
        "cli_held",
        "discard",
        "Never send the leads the blast-radius guard held: move them to skipped.",
    ),
    "explain": (
        "cli_explain",
        "explain",
        "Tell why a lead was called or held back: its whole history, oldest first.",
    ),
    "leads": (
        "cli_leads",
        "leads",
        'List leads, most recently changed first, to answer "what happened to record X?".',
    ),
    "migrate": (
        "cli_migrate",
        "migrate",
        "Create or upgrade the database schema to the latest version.",
    ),
    "once": (
        "cli_once",
        "once",
        "Run one poll and one delivery pass for each enabled sync, then exit.",
    ),
    "pause": (
        "cli_pause",
        "pause",
        "Stop sending the leads of a sync or of an agent until `syncd resume`.",
    ),
    "reconcile": (
        "cli_reconcile",
        "reconcile",
        "Compare every record the sync's query matches with the sync's leads.",
    ),
    "release": (
        "cli_held",
        "release",
        "Send the leads the blast-radius guard held: move them to queued.",
    ),
    "requeue": (
        "cli_requeue",
        "requeue",
        "Send uncertain, failed or rejected leads again: move them back to queued.",
    ),
    "resolve": (
        "cli_resolve",
        "resolve",
        "Record that SimZ has uncertain leads: move them to accepted.",
    ),
    "restore": (
        "cli_restore",
        "restore",
        "Bring back leads an operator discarded: re-check them, then hold them for release.",
    ),
    "resume": (
        "cli_pause",
        "resume",
        "Lift a pause set by `syncd pause`: the waiting leads are sent, each once.",
    ),
    "run": (
        "cli_run",
        "run",
        "Run the daemon: poll Salesforce and deliver to SimZ on each sync's schedule.",
    ),
    "sandbox": (
        "cli_sandbox",
        "sandbox",
        "Run an emulator of an external API on its own, for local testing and benchmarks.",
    ),
    "status": (
        "cli_status",
        "status",
        "Show each sync's leader, polling, lead counts, delivery backlog and pauses.",
    ),
    "suppress": (
        "cli_suppress",
        "suppress",
        "Keep numbers nobody may call: add, remove, list, import and export the suppression list.",
    ),
    "trust-org": (
        "cli_trust_org",
        "trust_org",
        "Trust the Salesforce org syncd now logs in to, so that delivery may run.",
    ),
    "writeback": (
        "cli_writeback",
        "writeback",
        "Write-back of lead outcomes to Salesforce records: repair failed writes, resync.",
    ),
}


class LazyGroup(click.Group):
    """A group whose commands are imported only when one of them runs (or shows its help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = COMMANDS.get(cmd_name)
        if found is None:
            return None
        module, attribute, _help = found
        command = getattr(importlib.import_module(f"syncd.entrypoints.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from :data:`COMMANDS`, cut as click cuts it, without an import."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=short).get_short_help_str(limit))
            for name, (_m, _a, short) in COMMANDS.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


#: Also in cli_common (which the commands import); here without loading it.
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="syncd")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default=None,
    help="Log rendering; overrides observability.log_format. auto: console on a terminal.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Log level; overrides observability.log_level.",
)
def main(log_format: str | None, log_level: str | None) -> None:
    """syncd moves new Salesforce records into SimZ calling agents: never twice, never lost.

    Start with `syncd check-config -c config.yaml`, then `syncd migrate`.
    """
