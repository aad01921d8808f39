"""Operator commands: ``syncd status``, ``syncd leads`` and ``syncd requeue``.

They read (and, for requeue, change) only the database, never Salesforce or
SimZ. They never migrate: a database that is not at the latest schema gets
"run syncd migrate" and exit 1, an unreachable one a single line and exit 1.
Logs go to stderr so that ``--json`` output on stdout stays parseable.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from syncd.config import Config
from syncd.entrypoints.cli import (
    config_option,
    describe_db_error,
    fail,
    load_or_exit,
    open_engine,
)
from syncd.logs import configure_logging
from syncd.services import operator as ops
from syncd.services.operator import REQUEUE_STATES, STATE_ORDER, iso, to_jsonable

T = TypeVar("T")


def _setup(ctx: click.Context, config: Config) -> None:
    options: dict[str, Any] = ctx.find_root().params
    configure_logging(
        level=options.get("log_level") or config.observability.log_level,
        fmt=options.get("log_format") or config.observability.log_format,
        stream=sys.stderr,
        secrets=config.secret_values(),
    )


@contextmanager
def database(config: Config) -> Iterator[sessionmaker[Session]]:
    """A session factory on a reachable database at the latest schema, or exit 1."""
    from syncd.adapters import migrate
    from syncd.adapters.db import make_session_factory

    url = make_url(config.database.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(str(url.database)).expanduser()
        if not path.is_file():
            fail(f"the database file {path} does not exist; run `syncd migrate` first")
    try:
        engine = open_engine(config)
    except OSError as exc:
        fail(f"cannot open the database: {exc}")
    try:
        try:
            current = migrate.current_revision(engine)
            head = migrate.head_revision(engine)
        except SQLAlchemyError as exc:
            fail(f"cannot reach the database: {describe_db_error(exc)}")
        if current != head:
            fail(
                f"the database schema is at revision {current or 'none'}, not {head}; "
                "run `syncd migrate` first"
            )
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def _query(action: Callable[[], T]) -> T:
    """Run a database call; a database error becomes one line and exit 1."""
    try:
        return action()
    except SQLAlchemyError as exc:
        fail(f"database error: {describe_db_error(exc)}")


def _when(value: datetime | None) -> str:
    return (iso(value, "seconds") or "-").replace("T", " ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> list[str]:
    """Left-aligned columns, two spaces apart."""
    cells = [list(headers)] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return "-"
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


class IsoTime(click.ParamType):  # type: ignore[type-arg]
    """An ISO 8601 date or time; without an offset it is read as UTC."""

    name = "ISO-TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO time such as 2024-05-01T12:00:00Z", param, ctx)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- status


def _render_status(report: ops.StatusReport) -> list[str]:
    out: list[str] = [f"syncd status at {_when(report.generated_at)}"]
    for sync in report.syncs:
        flags = []
        if not sync.configured:
            flags.append("NOT IN CONFIG (only in the database)")
        elif not sync.enabled:
            flags.append("disabled")
        else:
            flags.append("enabled")
        out += ["", f"sync {sync.name}  [{', '.join(flags)}]"]
        poll = sync.last_poll
        if poll is None:
            out.append("  last poll      never")
        else:
            out.append(
                f"  last poll      {_when(poll.started_at)}  {poll.status}  fetched {poll.fetched}"
                f", new {poll.new}, updated {poll.updated}, unchanged {poll.unchanged}"
                f", invalid {poll.invalid}, skipped {poll.skipped}"
                + (f"  error: {_short(poll.error)}" if poll.error else "")
            )
        out.append(f"  last ok poll   {_when(sync.last_successful_poll_at)}")
        out.append(f"  watermark      {_when(sync.watermark)}")
        configured = f" (config: {sync.configured_start_at})" if sync.configured_start_at else ""
        out.append(f"  start_at       {_when(sync.start_at)}{configured}")
        if sync.paused:
            out.append(
                f"  polling        PAUSED until {_when(sync.paused_until)}: "
                f"{_short(sync.pause_reason)}"
            )
        else:
            out.append("  polling        not paused")
        if sync.last_error:
            out.append(f"  last error     {_short(sync.last_error, 100)}")
        out.append("  leads          " + "  ".join(f"{s} {sync.states[s]}" for s in STATE_ORDER))
        stream = sync.stream
        if stream is not None:
            replay = (
                f"replay id from {_when(stream.replay_at)}"
                if stream.replay_stored
                else ("no replay id stored")
            )
            out.append(
                f"  stream         {stream.mode} {stream.topic}  {replay}"
                f"  last event {_when(stream.last_event_at)}  replay resets {stream.replay_resets}"
            )
        leader = sync.leader
        if leader is None:
            out.append("  leader         none yet")
        else:
            state = "lease until" if leader.active else "LEASE EXPIRED at"
            out.append(
                f"  leader         {leader.replica}  {state} {_when(leader.expires_at)}"
                f"  (since {_when(leader.acquired_at)}, token {leader.token})"
            )
        rows = []
        for agent in sync.agents:
            batch = agent.last_batch
            name = agent.agent or "(no agent)"
            if not agent.configured:
                name += " (not in config)"
            rows.append(
                [
                    name,
                    agent.queued,
                    agent.due,
                    agent.waiting,
                    agent.sending,
                    "PAUSED" if agent.paused else "",
                    _when(batch.created_at) if batch else None,
                    batch.http_status if batch else None,
                    batch.outcome if batch else None,
                    batch.simz_batch_id if batch else None,
                ]
            )
        if rows:
            out += _table(
                [
                    "AGENT",
                    "QUEUED",
                    "DUE",
                    "WAITING",
                    "SENDING",
                    "PAUSED",
                    "LAST BATCH",
                    "HTTP",
                    "OUTCOME",
                    "SIMZ BATCH",
                ],
                rows,
                indent="  ",
            )
    out += ["", "delivery pauses"]
    if report.pauses:
        out += _table(
            ["SCOPE", "KEY", "UNTIL", "ACTIVE", "HTTP", "REASON"],
            [
                [
                    p.scope,
                    p.key,
                    _when(p.paused_until),
                    "yes" if p.active else "expired",
                    p.http_status,
                    _short(p.reason),
                ]
                for p in report.pauses
            ],
            indent="  ",
        )
    else:
        out.append("  none")
    if report.replicas:
        out += ["", "replicas"]
        out += _table(
            ["REPLICA", "HOST", "PID", "STARTED", "HEARTBEAT", "ALIVE"],
            [
                [
                    r.replica,
                    r.host,
                    r.pid,
                    _when(r.started_at),
                    _when(r.heartbeat_at),
                    "yes" if r.alive else "no (heartbeat expired)",
                ]
                for r in report.replicas
            ],
            indent="  ",
        )
    out += ["", f"uncertain leads: {report.uncertain_total}"]
    if report.hint:
        out.append(f"  {report.hint}")
    return out


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (version 1).")
@click.pass_context
def status(ctx: click.Context, config_path: Path, as_json: bool) -> None:
    """Show each sync's leader, polling, lead counts, delivery backlog and pauses.

    Per sync: enabled, last poll (time, status, counts), last successful poll,
    watermark, start_at, polling pause, and the number of leads in each of the
    8 states. Per agent: queued leads (due now / waiting for a retry time),
    leads being sent, and the last batch (time, HTTP status, outcome, SimZ
    batchId). Then the delivery pauses (API key or agent) and the number of
    uncertain leads. Syncs found in the database but no longer in the
    configuration are listed too, marked so. With several replicas: which
    replica leads each sync (holds its lease, until when) and every replica's
    last heartbeat.

    \b
    --json prints one object with ISO 8601 UTC times ("...Z"):
      {"version": 1, "generated_at", "syncs": [{"name", "configured", "enabled",
       "start_at", "configured_start_at", "watermark", "last_poll",
       "last_successful_poll_at", "last_error", "paused", "paused_until",
       "pause_reason", "states": {state: count}, "agents": [{"agent",
       "configured", "queued", "due", "waiting", "sending", "paused",
       "last_batch"}], "leader": {"replica", "token", "acquired_at",
       "renewed_at", "expires_at", "active"}|null}], "pauses": [{"scope", "key",
       "reason", "http_status", "failures", "paused_until", "active"}],
       "uncertain_total", "hint", "replicas": [{"replica", "host", "pid",
       "started_at", "heartbeat_at", "expires_at", "alive"}]}
    """
    config = load_or_exit(config_path)
    _setup(ctx, config)
    with database(config) as session_factory:
        report = _query(lambda: ops.status(session_factory, config))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo("\n".join(_render_status(report)))


# --------------------------------------------------------------------------- leads


def _lead_json(lead: ops.LeadView, history: bool, payload: bool) -> dict[str, Any]:
    body: dict[str, Any] = to_jsonable(lead)
    if not history:
        body.pop("history")
    if not payload:
        body.pop("payload")
    return body


def _render_leads(leads: list[ops.LeadView], history: bool, payload: bool) -> list[str]:
    if not leads:
        return ["no leads match"]
    rows = []
    for lead in leads:
        if lead.error_code or lead.error_message:
            detail = f"{lead.error_code or 'error'}: {lead.error_message or ''}".rstrip(": ")
        else:
            detail = lead.note or ""
        rows.append(
            [
                lead.salesforce_id,
                lead.sync,
                lead.agent,
                lead.state,
                lead.attempts,
                _when(lead.updated_at),
                lead.simz_batch_id,
                _short(detail),
            ]
        )
    out = _table(
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
                    f"  {_when(step.at)}  {step.from_state or 'new'} -> {step.to_state}  "
                    f"{step.reason}{batch}"
                )
            if payload:
                out.append(f"  payload: {json.dumps(lead.payload, sort_keys=True)}")
    return out


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
@click.option("--history", is_flag=True, help="Add each lead's state transitions (audit trail).")
@click.option(
    "--show-payload",
    is_flag=True,
    help="Also print the body sent to SimZ. CAUTION: shows personal data (phone, names, email).",
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
    as_json: bool,
) -> None:
    """List leads, most recently changed first, to answer "what happened to record X?".

    Filters combine (AND); --since/--until bound the time of the lead's last
    change (ISO 8601, UTC when no offset is given). The table shows the
    Salesforce Id, sync, agent, state, attempts, last change, SimZ batchId and
    the note or error. Phone numbers and names are never shown unless
    --show-payload is given.

    \b
    Examples:
      syncd leads --state uncertain
      syncd leads --id 00Q5g00000AbCdEFGH --history

    \b
    --json prints {"version": 1, "leads": [{"id", "salesforce_id", "sync",
    "agent", "state", "attempts", "next_attempt_at", "created_at", "updated_at",
    "sent_at", "batch_id", "simz_batch_id", "note", "error_code",
    "error_message"}]}, plus "history": [{"at", "from_state", "to_state",
    "reason", "batch_id"}] with --history and "payload" with --show-payload.
    """
    config = load_or_exit(config_path)
    _setup(ctx, config)
    with database(config) as session_factory:
        found = _query(
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
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo("\n".join(_render_leads(found, history, show_payload)))
        if len(found) == limit:
            click.echo(f"(showing the first {limit}; use --limit to see more)", err=True)


# --------------------------------------------------------------------------- requeue


def _summary(counts: Sequence[ops.RequeueCount]) -> list[str]:
    by_sync: dict[str, list[str]] = {}
    for c in counts:
        by_sync.setdefault(c.sync, []).append(f"{c.state} {c.leads}")
    return [f"  sync {name}: {', '.join(parts)}" for name, parts in by_sync.items()]


def _actor() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@click.command()
@config_option
@click.option("--sync", "sync", default=None, help="Only leads of this sync.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(list(REQUEUE_STATES)),
    help="Only leads in this state (repeatable). Default: uncertain, failed and rejected.",
)
@click.option(
    "--id",
    "ids",
    multiple=True,
    metavar="SALESFORCE_ID",
    help="Only this record (repeatable). All or nothing: see below.",
)
@click.option(
    "--reason",
    default=ops.DEFAULT_REASON,
    show_default=True,
    help="Why; written to each lead's audit trail with your user name.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only show what would be requeued.")
@click.pass_context
def requeue(
    ctx: click.Context,
    config_path: Path,
    sync: str | None,
    states: tuple[str, ...],
    ids: tuple[str, ...],
    reason: str,
    yes: bool,
    dry_run: bool,
) -> None:
    """Send uncertain, failed or rejected leads again: move them back to queued.

    Needs at least one of --sync, --state, --id (a bare `syncd requeue` is
    refused). Attempts, retry time and error fields are reset; every moved lead
    gets an audit-trail entry with --reason and $USER. It all happens in one
    transaction, and a lead whose state changed meanwhile is left alone.

    WARNING: an uncertain lead may already be in SimZ's calling queue (its
    request reached SimZ but the answer was lost). Requeueing it may make SimZ
    call that person twice. Check with SimZ first (`syncd leads --state
    uncertain` shows the batches).

    Accepted leads are never requeued. With --id the list is all or nothing:
    if any Id is unknown or names a lead that would not move (accepted, queued,
    or not in the chosen --state), nothing is requeued and each problem is
    named; exit status 1.

    It shows how many leads of which states would move and asks for
    confirmation, unless --yes. If stdin gives no answer (e.g. run from a
    script with stdin closed), it refuses and exits 1.
    """
    config = load_or_exit(config_path)
    _setup(ctx, config)
    if sync is None and not states and not ids:
        fail(
            "refusing to requeue without a selector: give --sync NAME, --state STATE "
            "or --id SALESFORCE_ID",
            2,
        )
    with database(config) as session_factory:
        preview = _query(
            lambda: ops.preview_requeue(
                session_factory,
                sync=sync,
                states=list(states) or None,
                salesforce_ids=list(ids) or None,
            )
        )
        if preview.problems:
            click.echo("syncd: nothing was requeued:", err=True)
            for problem in preview.problems:
                click.echo(f"  {problem}", err=True)
            sys.exit(1)
        if preview.total == 0:
            click.echo("no lead matches; nothing to requeue")
            return
        click.echo(
            f"{'would requeue' if dry_run else 'about to requeue'} {preview.total} "
            "lead(s) (back to queued):"
        )
        click.echo("\n".join(_summary(preview.counts)))
        if preview.uncertain:
            click.secho(
                f"WARNING: {preview.uncertain} of them are uncertain: SimZ may already have "
                "queued them, and sending them again may make SimZ CALL A PERSON TWICE.",
                err=True,
                fg="red",
                bold=True,
            )
        if dry_run:
            click.echo("dry run: nothing was changed")
            return
        if not yes:
            try:
                confirmed = click.confirm("Requeue these leads?", default=False, err=True)
            except click.Abort:
                fail("no confirmation on stdin; rerun with --yes to requeue without asking")
            if not confirmed:
                fail("not confirmed; nothing was requeued")
        try:
            result = _query(
                lambda: ops.requeue(
                    session_factory,
                    sync=sync,
                    states=list(states) or None,
                    salesforce_ids=list(ids) or None,
                    reason=reason,
                    actor=_actor(),
                )
            )
        except ops.RequeueRefused as exc:
            click.echo("syncd: nothing was requeued:", err=True)
            for problem in exc.problems:
                click.echo(f"  {problem}", err=True)
            sys.exit(1)
    click.echo(f"requeued {result.total} lead(s) (reason: {result.reason}; by {result.actor}):")
    click.echo("\n".join(_summary(result.moved)))
    if result.skipped_by_filter:
        click.echo(
            f"{result.skipped_by_filter} lead(s) changed state meanwhile and were left alone"
        )
