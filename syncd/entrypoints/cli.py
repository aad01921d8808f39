"""The ``syncd`` command line.

Every command that reads the configuration takes ``-c/--config`` (default
``$SYNCD_CONFIG`` or ``./config.yaml``). A configuration problem prints one
line per problem to stderr and exits with status 2, never a traceback.

This module only assembles the group: each command lives in its own
``cli_*`` module, and what they share lives in ``cli_common`` (the operator
commands also share ``cli_operator_common``).
"""

from __future__ import annotations

import click

from syncd import __version__
from syncd.entrypoints.cli_backfill import backfill
from syncd.entrypoints.cli_common import CONTEXT_SETTINGS
from syncd.entrypoints.cli_config import check_config, config_schema
from syncd.entrypoints.cli_demo import demo
from syncd.entrypoints.cli_held import discard, release
from syncd.entrypoints.cli_leads import leads
from syncd.entrypoints.cli_migrate import migrate
from syncd.entrypoints.cli_once import once
from syncd.entrypoints.cli_pause import pause, resume
from syncd.entrypoints.cli_requeue import requeue
from syncd.entrypoints.cli_resolve import resolve
from syncd.entrypoints.cli_run import run
from syncd.entrypoints.cli_sandbox import sandbox
from syncd.entrypoints.cli_status import status
from syncd.entrypoints.cli_writeback import writeback


@click.group(context_settings=CONTEXT_SETTINGS)
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


for _command in (
    check_config,
    config_schema,
    migrate,
    sandbox,
    status,
    leads,
    requeue,
    resolve,
    release,
    discard,
    writeback,
    pause,
    resume,
    run,
    once,
    demo,
    backfill,
):
    main.add_command(_command)
