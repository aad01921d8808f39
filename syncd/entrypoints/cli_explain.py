"""``syncd explain``: why a lead was (or was not) called, its whole history in plain words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from syncd.adapters.call_queries import LeadCall
from syncd.config.loader import DATABASE_ONLY
from syncd.entrypoints.cli_common import config_option, fail, load_or_exit
from syncd.entrypoints.cli_operator_common import database, query, setup_logging, when
from syncd.entrypoints.cli_text import echo_json, echo_lines
from syncd.services.explain import LeadStory
from syncd.services.explain import explain as explain_leads
from syncd.services.operator import to_jsonable


def render(stories: list[LeadStory]) -> list[str]:
    """The stories as lines: a heading per lead, then its events oldest first."""
    out: list[str] = []
    for story in stories:
        if out:
            out.append("")
        number = f", number ending {story.number_ending}" if story.number_ending else ""
        out.append(
            f"lead {story.id}: record {story.salesforce_id}, sync {story.sync}, "
            f"agent {story.agent or '-'}{number}: now {story.state}"
        )
        if story.note:
            out.append(f"  note: {story.note}")
        if not story.events:
            out.append("  no history recorded")
        for event in story.events:
            out.append(f"  {when(event.at)}  {event.text}")
            out += [f"      {line}" for line in event.lines]
        out += call_lines(story.calls)
        out += timeline_lines(story)
    return out


def call_lines(calls: list[LeadCall]) -> list[str]:
    """The lead's calls as its webhooks reported them, and what was written back."""
    if not calls:
        return []
    out = ["  calls:"]
    for call in calls:
        disposition = call.disposition or "-"
        if call.raw_disposition and call.raw_disposition != call.disposition:
            disposition += f" (SimZ: {call.raw_disposition})"
        took = f", {call.duration_seconds}s" if call.duration_seconds is not None else ""
        opted = ", OPT-OUT: number suppressed" if call.opt_out else ""
        out.append(
            f"    {when(call.received_at)}  call {call.call_key}: {call.outcome or '-'}, "
            f"{disposition}{took}{opted}; write-back {_written(call)}"
        )
    return out


def _written(call: LeadCall) -> str:
    if call.task_id:
        return f"{call.writeback_status}, Task {call.task_id}"
    if call.writeback_status == "failed" and call.last_error:
        return f"failed: {call.last_error}"
    return call.writeback_status


def timeline_lines(story: LeadStory) -> list[str]:
    """The lead's speed to lead: each moment and the seconds of the stage ending there."""
    if all(step.at is None for step in story.timeline):
        return ["  speed to lead: no moments kept (a lead stored before they were)"]
    out = ["  speed to lead:"]
    for step in story.timeline:
        label = step.moment.replace("_", " ")
        at = when(step.at) if step.at is not None else "-"
        took = ""
        if step.seconds is not None:
            skew = " (clock skew: negative, shown as 0)" if step.clock_skew else ""
            took = f"  +{step.seconds:.3f}s {step.stage}{skew}"
        out.append(f"    {label:<11}{at}{took}")
    if story.total_seconds is not None:
        out.append(f"    total      {story.total_seconds:.3f}s from created to accepted")
    return out


def story_json(story: LeadStory) -> dict[str, Any]:
    body: dict[str, Any] = to_jsonable(story)
    body["events"] = [
        {"at": e["at"], "kind": e["kind"], "text": e["text"], "lines": e["lines"], **e["data"]}
        for e in body["events"]
    ]
    return body


@click.command()
@config_option
@click.option(
    "--id",
    "ident",
    required=True,
    metavar="ID",
    help="A lead id, or a Salesforce record id (every sync's lead of that record).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def explain(ctx: click.Context, config_path: Path, ident: str, as_json: bool) -> None:
    """Tell why a lead was called or held back: its whole history, oldest first.

    For each lead the Id names: every state change with its reason (the audit
    trail), every dial decision of the send gate with the inputs that allowed
    the send, in words (DoNotCall, consent and its age, the suppression list,
    the number's sends against each frequency cap, the duplicate-phone window,
    the local time and calling hours), each batch that carried the lead and
    SimZ's answer, and the operators' actions about the lead or its number.
    Then its calls, as SimZ's webhooks reported them (outcome, disposition,
    duration, when the hook arrived, opt-out) with the Task or fields written
    back for each, and its speed to lead: when the record was created, read,
    queued, sent, accepted and first called, with the seconds of each stage.
    Reads only the database. Numbers show only their last four digits; for
    everything about one number use `syncd audit export --phone`.

    \b
    Examples:
      syncd explain --id 00Q5g00000AbCdEFGH
      syncd explain --id 4711 --json

    \b
    --json prints {"version": 1, "leads": [{"id", "salesforce_id", "sync",
    "agent", "state", "number_ending", "created_at", "updated_at", "note",
    "events": [{"at", "kind": "transition"|"decision"|"batch"|"operator_action",
    "text", "lines", ...the row's values}], "timeline": [{"moment", "at",
    "stage", "seconds", "clock_skew"}], "total_seconds", "calls": [{"lead_id",
    "sync", "salesforce_id", "event_id", "call_key", "outcome", "disposition", "raw_disposition",
    "duration_seconds", "started_at", "received_at", "opt_out",
    "writeback_status", "task_id", "last_error"}]}]}. An Id that names
    no lead: exit 1.
    """
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    if not ident.strip():
        fail("--id is empty: give a lead id or a Salesforce record id")
    with database(config) as session_factory:
        stories = query(lambda: explain_leads(session_factory, ident))
    if not stories:
        fail(f"no lead with id or Salesforce id {ident.strip()!r}; see `syncd leads`")
    if as_json:
        echo_json({"version": 1, "leads": [story_json(s) for s in stories]})
    else:
        echo_lines(render(stories))
