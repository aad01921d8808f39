"""``syncd calls``: the call-outcome webhooks received, from the database alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from syncd.adapters.call_events import EventRow, listing
from syncd.config.loader import DATABASE_ONLY
from syncd.entrypoints.cli_common import config_option, load_or_exit
from syncd.entrypoints.cli_operator_common import database, query, setup_logging, short, table, when
from syncd.entrypoints.cli_text import echo, echo_json, echo_lines
from syncd.services.operator import iso

HEADERS = [
    "EVENT",
    "RECEIVED",
    "STATUS",
    "SALESFORCE ID",
    "SYNC",
    "OUTCOME",
    "DISPOSITION",
    "WRITE-BACK",
    "DETAIL",
]


def _event_json(row: EventRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "received_at": iso(row.received_at),
        "receiver": row.receiver,
        "status": row.status,
        "chars": row.chars,
        "detail": row.detail,
        "lead_id": row.lead_id,
        "sync": row.sync,
        "salesforce_id": row.salesforce_id,
        "outcome": row.outcome,
        "disposition": row.disposition,
        "writeback_status": row.writeback_status,
        "task_id": row.task_id,
    }


def _writeback(row: EventRow) -> str | None:
    if row.writeback_status is None:
        return None
    return f"{row.writeback_status} {row.task_id}" if row.task_id else row.writeback_status


def _render(rows: list[EventRow], status: str | None) -> list[str]:
    if not rows:
        return [f"no {status} call events" if status else "no call events received"]
    cells = [
        [
            row.id,
            when(row.received_at),
            row.status,
            row.salesforce_id,
            row.sync,
            row.outcome,
            row.disposition,
            _writeback(row),
            short(row.detail),
        ]
        for row in rows
    ]
    return table(HEADERS, cells)


@click.command("calls")
@config_option
@click.option(
    "--unmatched",
    "status",
    flag_value="unmatched",
    help="Only the events that matched no lead: no valid correlation value (forged, or "
    "from a call syncd did not send). They are kept, never deleted.",
)
@click.option(
    "--unreadable",
    "status",
    flag_value="unreadable",
    help="Only the events the configured paths (simz.webhook.paths) could not read: kept "
    "raw, to fix the paths.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most N events."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def calls(
    ctx: click.Context, config_path: Path, status: str | None, limit: int, as_json: bool
) -> None:
    """List the call-outcome webhooks received, newest first, with their lead and write-back.

    Every POST the receiver answered 2xx is an event here, stored before the
    answer and once per body. STATUS is new (not processed yet), matched (read
    into a call outcome of a lead), unmatched (no lead: forged or unknown) or
    unreadable (the configured paths found neither outcome nor disposition).
    For matched events the table shows the lead's Salesforce Id and sync, the
    outcome, the disposition (after simz.webhook.disposition_map) and the
    write-back of the call (pending, done, failed; with the Task's Id). Bodies
    are not shown: they may hold phone numbers. Reads only the database.

    \b
    Examples:
      syncd calls
      syncd calls --unmatched
      syncd calls --unreadable --json

    \b
    --json prints {"version": 1, "events": [{"id", "received_at", "receiver",
    "status", "chars", "detail", "lead_id", "sync", "salesforce_id", "outcome",
    "disposition", "writeback_status", "task_id"}]} ("chars": the body's length).
    """
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    with database(config) as session_factory:

        def read() -> list[EventRow]:
            with session_factory() as session:
                return listing(session, status, limit)

        rows = query(read)
    if as_json:
        echo_json({"version": 1, "events": [_event_json(row) for row in rows]})
        return
    echo_lines(_render(rows, status))
    if len(rows) == limit:
        echo(f"(showing the newest {limit}; use --limit to see more)", err=True)
