"""``syncd leads``: list leads and their audit trail, from the database alone."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from syncd.config import Config
from syncd.config.loader import DATABASE_ONLY
from syncd.domain.calling_hours import WAITING_FOR as CALLING_HOURS
from syncd.entrypoints.cli_common import EXIT_CONFIG, config_option, fail, load_or_exit
from syncd.entrypoints.cli_operator_common import (
    IsoTime,
    database,
    query,
    setup_logging,
    short,
    table,
    when,
)
from syncd.entrypoints.cli_text import echo, echo_json, echo_lines
from syncd.services import operator as ops
from syncd.services.operator import HELD, STATE_ORDER, to_jsonable


def _lead_json(lead: ops.LeadView, history: bool, payload: bool) -> dict[str, Any]:
    body: dict[str, Any] = to_jsonable(lead)
    if not history:
        body.pop("history")
        body.pop("writeback")
        body.pop("writeback_status")
    if not payload:
        body.pop("payload")
    return body


def _render_leads(leads: list[ops.LeadView], history: bool, payload: bool) -> list[str]:
    if not leads:
        return ["no leads match"]
    rows = []
    for lead in leads:
        if lead.waiting_for == CALLING_HOURS:
            detail = f"waiting for calling hours (until {when(lead.next_attempt_at)})"
        elif lead.error_code or lead.error_message:
            detail = f"{lead.error_code or 'error'}: {lead.error_message or ''}".rstrip(": ")
        else:
            detail = lead.note or ""
        rows.append(
            [
                lead.salesforce_id,
                lead.sync,
                lead.agent,
                lead.state,
                lead.sends,
                when(lead.updated_at),
                lead.simz_batch_id,
                short(detail),
            ]
        )
    out = table(
        [
            "SALESFORCE ID",
            "SYNC",
            "AGENT",
            "STATE",
            "ATTEMPTS",
            "UPDATED",
            "SIMZ BATCH",
            "NOTE/ERROR",
        ],
        rows,
    )
    if history or payload:
        for lead in leads:
            out += ["", f"{lead.salesforce_id} ({lead.sync}): {lead.state}"]
            for step in lead.history or []:
                batch = f"  [batch {step.batch_id}]" if step.batch_id is not None else ""
                out.append(
                    f"  {when(step.at)}  {step.from_state or 'new'} -> {step.to_state}  "
                    f"{step.reason}{batch}"
                )
            if lead.writeback_status is not None:
                out.append(f"  write-back: {lead.writeback_status}")
            for attempt in lead.writeback or []:
                error = f"  {short(attempt.error, 100)}" if attempt.error else ""
                out.append(
                    f"  {when(attempt.at)}  write-back {attempt.state}: {attempt.outcome}{error}"
                )
            if payload:
                out.append(f"  payload: {json.dumps(lead.payload, sort_keys=True)}")
    return out


def _held_breakdown(config: Config, by: str, sync: str | None, as_json: bool) -> None:
    with database(config) as session_factory:
        groups = query(lambda: ops.held_groups(session_factory, by, sync=sync))
    if as_json:
        echo_json({"version": 1, "by": by, "groups": [to_jsonable(g) for g in groups]})
        return
    total = sum(group.leads for group in groups)
    scope = f" of sync {sync}" if sync else ""
    if not total:
        echo(f"no held leads{scope}")
        return
    rows = [[g.key, g.leads, when(g.first_held_at), when(g.last_held_at)] for g in groups]
    headers = [by.upper(), "LEADS", "FIRST HELD", "LAST HELD"]
    echo_lines([f"{total} held lead(s){scope} by {by}", *table(headers, rows, indent="  ")])


@click.command()
@config_option
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(list(STATE_ORDER)),
    help="Only leads in this state (repeatable).",
)
@click.option("--sync", "sync", default=None, help="Only leads of this sync.")
@click.option(
    "--id", "ids", multiple=True, metavar="SALESFORCE_ID", help="Only this record (repeatable)."
)
@click.option("--since", type=IsoTime(), help="Only leads last changed at or after this time.")
@click.option("--until", type=IsoTime(), help="Only leads last changed before this time.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most N leads."
)
@click.option(
    "--history",
    is_flag=True,
    help="Add each lead's state transitions (audit trail) and write-back attempts.",
)
@click.option(
    "--show-payload",
    is_flag=True,
    help="Also print the body sent to SimZ. CAUTION: shows personal data (phone, names, email).",
)
@click.option(
    "--by",
    type=click.Choice(list(ops.BREAKDOWNS)),
    default=None,
    help="With --state held only: count the held leads by agent, by age (how long ago they "
    "were held) or by source (what held them), to decide on release or discard.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def leads(
    ctx: click.Context,
    config_path: Path,
    states: tuple[str, ...],
    sync: str | None,
    ids: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    limit: int,
    history: bool,
    show_payload: bool,
    by: str | None,
    as_json: bool,
) -> None:
    """List leads, most recently changed first, to answer "what happened to record X?".

    Filters combine (AND); --since/--until bound the time of the lead's last
    change (ISO 8601, UTC when no offset is given). The table shows the
    Salesforce Id, sync, agent, state, attempts, last change, SimZ batchId and
    the note or error; ATTEMPTS is how many requests to SimZ carried the lead.
    Phone numbers and names are never shown unless --show-payload is given.
    --state held --by agent|age|source counts the held leads in groups instead.

    \b
    Examples:
      syncd leads --state uncertain
      syncd leads --id 00Q5g00000AbCdEFGH --history
      syncd leads --state held --sync web --by source

    \b
    --json prints {"version": 1, "leads": [{"id", "salesforce_id", "sync",
    "agent", "state", "attempts", "sends", "next_attempt_at", "created_at", "updated_at",
    "sent_at", "batch_id", "simz_batch_id", "note", "error_code",
    "error_message", "waiting_for"}]}, plus "history": [{"at", "from_state", "to_state",
    "reason", "batch_id"}], "writeback": [{"at", "state", "outcome", "error"}]
    and "writeback_status" with --history, and "payload" with --show-payload
    ("attempts": retryable failures counted against simz.max_attempts; "sends":
    requests that carried it). With --by: {"version": 1, "by", "groups": [{"key",
    "leads", "first_held_at", "last_held_at"}]}.
    """
    if by is not None and set(states) != {HELD}:
        fail("--by counts held leads: use it with --state held (and no other --state)", EXIT_CONFIG)
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    if by is not None:
        _held_breakdown(config, by, sync, as_json)
        return
    with database(config) as session_factory:
        found = query(
            lambda: ops.list_leads(
                session_factory,
                state=list(states) or None,
                sync=sync,
                salesforce_ids=list(ids) or None,
                since=since,
                until=until,
                limit=limit,
                history=history,
                payload=show_payload,
            )
        )
    if as_json:
        body = {"version": 1, "leads": [_lead_json(x, history, show_payload) for x in found]}
        echo_json(body)
    else:
        echo_lines(_render_leads(found, history, show_payload))
        if len(found) == limit:
            echo(f"(showing the first {limit}; use --limit to see more)", err=True)
