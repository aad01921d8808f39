"""``syncd check-config`` and ``syncd config-schema``: check and describe the config file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from syncd.config import Config, SyncConfig
from syncd.config.calls import CallWritebackConfig
from syncd.config.types import format_duration
from syncd.entrypoints.cli_common import EXIT_FAILURE, config_option, load_or_exit, setup
from syncd.entrypoints.cli_text import echo, echo_json


def intake_summary(sync: SyncConfig) -> str:
    """How new records come in: the stream and its safety-net poll, or the poll's schedule.

    A streamed sync's schedule is not used (its poll runs every ``reconcile_every``),
    so showing it would misstate how often Salesforce is queried.
    """
    if sync.streamed:
        return (
            f"stream {sync.topic} (reconcile every {format_duration(sync.source.reconcile_every)})"
        )
    if sync.schedule.every is not None:
        return f"poll every {format_duration(sync.schedule.every)}"
    return f"poll cron '{sync.schedule.cron}' ({sync.schedule.timezone})"


def calling_hours_summary(sync: SyncConfig) -> str | None:
    """The sync's calling hours in one line; with a profile, the date of its state rules."""
    hours = sync.calling_hours
    if hours is None:
        return None
    text = f"calling hours {hours.rule_text}"
    if hours.profile == "us":
        from syncd.config.us_calling_rules import us_rules

        rules = hours.state_rules
        text += (
            f"; state rules of {len(rules)} state(s), data compiled {us_rules().compiled}"
            " (not legal advice: docs/safety.md#state-calling-rules)"
        )
        if hours.state_overrides:
            text += f"; overridden: {', '.join(sorted(hours.state_overrides))}"
    return text


@click.command("check-config")
@config_option
@click.option(
    "--connect",
    is_flag=True,
    help="Also reach the database (read-only; reports its schema revision), log in to "
    "Salesforce and run each sync's poll query (and each suppression source's query) with "
    "LIMIT 1, check the write-back fields "
    "against the object's describe, call GetTopic and GetSchema of each streamed sync's "
    "topic on the Pub/Sub API, and open a TLS connection to SimZ (no lead is sent, so "
    "the API key is not checked). Exits 1 if any check fails.",
)
@click.pass_context
def check_config(ctx: click.Context, config_path: Path, connect: bool) -> None:
    """Validate the configuration file and summarise its syncs.

    Exits 0 when the file is valid and 2 with one line per problem otherwise
    (files it names, such as ca_bundle, must exist). A risky but valid setting
    (a sync that sends US numbers without calling_hours) is a "warning:" line on
    stderr and leaves the exit status alone. With --connect, one line per
    check (database, Salesforce login, each sync's query, write-back fields, each
    streamed sync's Pub/Sub topic, SimZ)
    and exit 1 if any fails.
    """
    config = load_or_exit(config_path)
    setup(ctx, config)
    echo(f"{config_path}: ok, {len(config.syncs)} sync(s)")
    for sync in config.syncs:
        start = "now" if sync.start_at == "now" else sync.start_at.isoformat()
        echo(
            f"  {sync.name}{'' if sync.enabled else ' (disabled)'}: {sync.object} -> "
            f"{', '.join(sync.agents)}; {intake_summary(sync)}; start_at {start}; "
            f"lookback {format_duration(sync.lookback)}"
        )
        hours = calling_hours_summary(sync)
        if hours:
            echo(f"    {hours}")
        if sync.call_writeback is not None:
            echo(f"    {call_writeback_summary(sync.call_writeback)}")
    for source in config.suppression.sources:
        echo(
            f"  suppression source {source.name}: {source.object} where {source.where}, "
            f"numbers in {', '.join(source.phone_fields)}; every {format_duration(source.every)}"
        )
    webhook = config.simz.webhook
    if webhook is not None:
        echo(
            f"  webhook receiver: listen {webhook.listen} on every replica; SimZ posts to "
            f"{webhook.hook_url(masked=True)}"
        )
    for sync in config.syncs:
        for warning in sync.safety_warnings():
            echo(f"warning: {warning}", err=True)
    if connect:
        from syncd.services.connect_check import check_connections

        # gRPC's core would add a line of its own to a failed TLS handshake (read when
        # grpc is first imported, which the Pub/Sub check does); the check's line says it.
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
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


def call_writeback_summary(writeback: CallWritebackConfig) -> str:
    """A sync's call write-back in one line: Tasks, or which fields get the last call."""
    if writeback.mode == "tasks":
        subject = writeback.task_subject
        return f"call write-back: tasks (a completed call Task per call, Subject {subject!r})"
    fields = ", ".join(f"{kind} -> {name}" for kind, name in writeback.fields.names().items())
    return f"call write-back: fields ({fields})"
