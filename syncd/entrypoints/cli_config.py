"""``syncd check-config`` and ``syncd config-schema``: check and describe the config file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from syncd.config import Config
from syncd.config.types import format_duration
from syncd.entrypoints.cli_common import EXIT_FAILURE, config_option, load_or_exit, setup
from syncd.entrypoints.cli_text import echo, echo_json


@click.command("check-config")
@config_option
@click.option(
    "--connect",
    is_flag=True,
    help="Also reach the database (read-only; reports its schema revision), log in to "
    "Salesforce and run each sync's poll query with LIMIT 1, check the write-back fields "
    "against the object's describe, and open a TLS connection to SimZ (no lead is sent, so "
    "the API key is not checked). Exits 1 if any check fails.",
)
@click.pass_context
def check_config(ctx: click.Context, config_path: Path, connect: bool) -> None:
    """Validate the configuration file and summarise its syncs.

    Exits 0 when the file is valid and 2 with one line per problem otherwise
    (files it names, such as ca_bundle, must exist). With --connect, one line per
    check (database, Salesforce login, each sync's query, write-back fields, SimZ)
    and exit 1 if any fails.
    """
    config = load_or_exit(config_path)
    setup(ctx, config)
    echo(f"{config_path}: ok, {len(config.syncs)} sync(s)")
    for sync in config.syncs:
        schedule = (
            f"every {format_duration(sync.schedule.every)}"
            if sync.schedule.every is not None
            else f"cron '{sync.schedule.cron}' ({sync.schedule.timezone})"
        )
        start = "now" if sync.start_at == "now" else sync.start_at.isoformat()
        echo(
            f"  {sync.name}{'' if sync.enabled else ' (disabled)'}: {sync.object} -> "
            f"{', '.join(sync.agents)}; poll {schedule}; start_at {start}; "
            f"lookback {format_duration(sync.lookback)}"
        )
    if connect:
        from syncd.services.connect_check import check_connections

        checks = check_connections(config)
        for check in checks:
            echo(check.text, err=not check.ok)
        sys.exit(EXIT_FAILURE if any(not check.ok for check in checks) else 0)


@click.command("config-schema")
def config_schema() -> None:
    """Print the JSON Schema of the configuration file.

    Point your editor's YAML language server at it to get completion and
    validation while you write config.yaml.
    """
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "syncd configuration"
    echo_json(schema)
