"""Operator commands: ``status``, ``leads``, ``requeue``, ``release``, ``discard`` and
``writeback retry``.

``status`` and ``leads`` read only the database, never Salesforce or SimZ;
``requeue`` changes the database after fetching the selected records again from
Salesforce; ``release`` and ``discard`` change only the database. ``status``,
``leads``, ``release``, ``discard`` and ``requeue --dry-run`` (which reads only the
database) load the configuration without the Salesforce and SimZ secrets (unset
ones are left unresolved; the database section is checked as usual). They never
migrate: a database that is not at the latest schema gets "run syncd migrate" and
exit 1, an unreachable one a single line and exit 1. Logs go to stderr so that
``--json`` output on stdout stays parseable.
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
from syncd.config.loader import DATABASE_ONLY
from syncd.domain.calling_hours import WAITING_FOR as CALLING_HOURS
from syncd.entrypoints.cli_common import (
    config_option,
    describe_db_error,
    fail,
    load_or_exit,
    open_engine,
)
from syncd.entrypoints.cli_text import echo, echo_json, echo_lines, printable, secho
from syncd.logs import configure_logging
from syncd.services import operator as ops
from syncd.services.operator import HELD, REQUEUE_STATES, STATE_ORDER, iso, to_jsonable
from syncd.services.refetch import SalesforceUnreachable

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
    from syncd.adapters import migrate, writeback_store
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
        session_factory = make_session_factory(engine)
        # Operator moves (requeue's re-check, release, discard) queue write-backs too.
        writeback_store.install(session_factory, config.syncs)
        yield session_factory
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
    cells = [list(headers)] + [["-" if c is None else printable(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return "-"
    line = printable(" ".join(text.split()))
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
        if sync.delivery_paused:
            out.append("  delivery       PAUSED by an operator (syncd resume --sync to resume)")
        if sync.last_error:
            out.append(f"  last error     {_short(sync.last_error, 100)}")
        out.append("  leads          " + "  ".join(f"{s} {sync.states[s]}" for s in STATE_ORDER))
        held = sync.states.get(HELD, 0)
        if held:
            out.append(
                f"  HELD           {held} new lead(s) held by the blast-radius guard: "
                f"check `syncd leads --state held --sync {sync.name}`, then "
                f"`syncd release --sync {sync.name}` or `syncd discard --sync {sync.name}`"
            )
        if sync.waiting_for_calling_hours:
            out.append(
                f"  calling hours  {sync.waiting_for_calling_hours} queued lead(s) "
                "waiting for calling hours"
            )
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
        if sync.writeback is not None:
            wb = sync.writeback
            note = "" if wb.configured else "  (not configured any more)"
            hint = f"  (syncd writeback retry --sync {sync.name})" if wb.failed else ""
            out.append(
                f"  write-back     pending {wb.pending}, failed {wb.failed}, done {wb.done}"
                f"{note}{hint}"
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
    out += ["", "operator pauses (syncd pause; lifted only by syncd resume)"]
    if report.operator_pauses:
        out += _table(
            ["SCOPE", "NAME", "SINCE", "BY", "REASON"],
            [
                [h.scope, h.name, _when(h.paused_at), h.paused_by, _short(h.reason)]
                for h in report.operator_pauses
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
    9 states (held ones with the commands that settle them), and how many
    queued leads wait for their calling hours. Per agent: queued leads (due
    now / waiting for a retry time), leads being sent, and the last batch
    (time, HTTP status, outcome, SimZ batchId). Then the delivery pauses (API
    key or agent, from SimZ's answers), the operator pauses (`syncd pause`, with
    who and why) and the number of uncertain leads. Syncs found in the database
    but no longer in the configuration are listed too, marked so. With several
    replicas: which replica leads each sync (holds its lease, until when) and
    every replica's last heartbeat. With write-back: outcomes pending, failed
    and written.

    \b
    --json prints one object with ISO 8601 UTC times ("...Z"):
      {"version": 1, "generated_at", "syncs": [{"name", "configured", "enabled",
       "start_at", "configured_start_at", "watermark", "last_poll",
       "last_successful_poll_at", "last_error", "paused", "paused_until",
       "pause_reason", "states": {state: count}, "waiting_for_calling_hours",
       "agents": [{"agent",
       "configured", "queued", "due", "waiting", "sending", "paused",
       "last_batch"}], "leader": {"replica", "token", "acquired_at",
       "renewed_at", "expires_at", "active"}|null, "delivery_paused",
       "writeback": {"configured", "pending", "done", "failed"}|null}],
       "pauses": [{"scope", "key", "reason", "http_status", "failures",
       "paused_until", "active"}], "uncertain_total", "hint", "replicas":
       [{"replica", "host", "pid", "started_at", "heartbeat_at", "expires_at",
       "alive"}], "operator_pauses": [{"scope", "name", "reason", "paused_by",
       "paused_at"}]}
    """
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    _setup(ctx, config)
    with database(config) as session_factory:
        report = _query(lambda: ops.status(session_factory, config))
    if as_json:
        echo_json(report.to_dict())
    else:
        echo_lines(_render_status(report))


# --------------------------------------------------------------------------- leads


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
            detail = f"waiting for calling hours (until {_when(lead.next_attempt_at)})"
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
            if lead.writeback_status is not None:
                out.append(f"  write-back: {lead.writeback_status}")
            for attempt in lead.writeback or []:
                error = f"  {_short(attempt.error, 100)}" if attempt.error else ""
                out.append(
                    f"  {_when(attempt.at)}  write-back {attempt.state}: {attempt.outcome}{error}"
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
    "error_message", "waiting_for"}]}, plus "history": [{"at", "from_state", "to_state",
    "reason", "batch_id"}], "writeback": [{"at", "state", "outcome", "error"}]
    and "writeback_status" with --history, and "payload" with --show-payload.
    """
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
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
        echo_json(body)
    else:
        echo_lines(_render_leads(found, history, show_payload))
        if len(found) == limit:
            echo(f"(showing the first {limit}; use --limit to see more)", err=True)


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
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only show what would be requeued, from the database alone (no Salesforce fetch: "
    "the real run may still hold some leads back).",
)
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
    refused). The selected records are first fetched again from Salesforce and
    every rule re-applied: a record that is now DoNotCall, deleted, no longer
    matched by the sync's `where`, a duplicate or invalid becomes skipped or
    invalid with the reason; the others go back to queued with their current
    data. If Salesforce cannot be reached, nothing changes (exit status 3).
    Attempts, retry time and error fields are reset; every moved lead gets an
    audit-trail entry with --reason and $USER. It all happens in one
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
    # A dry run only reads the database; a real requeue may need Salesforce.
    config = load_or_exit(config_path, uses=DATABASE_ONLY if dry_run else None)
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
            echo("syncd: nothing was requeued:", err=True)
            for problem in preview.problems:
                echo(f"  {problem}", err=True)
            sys.exit(1)
        if preview.total == 0:
            echo("no lead matches; nothing to requeue")
            return
        echo(
            f"{'would requeue' if dry_run else 'about to requeue'} {preview.total} "
            "lead(s) (back to queued):"
        )
        echo_lines(_summary(preview.counts))
        if preview.uncertain:
            secho(
                f"WARNING: {preview.uncertain} of them are uncertain: SimZ may already have "
                "queued them, and sending them again may make SimZ CALL A PERSON TWICE.",
                err=True,
                fg="red",
                bold=True,
            )
        if dry_run:
            echo(
                "dry run: nothing was changed (the records were not fetched again: a real "
                "requeue may still skip some, or find them invalid)"
            )
            return
        if not yes:
            try:
                confirmed = click.confirm("Requeue these leads?", default=False, err=True)
            except click.Abort:
                fail("no confirmation on stdin; rerun with --yes to requeue without asking")
            if not confirmed:
                fail("not confirmed; nothing was requeued")
        result = _requeue(config, session_factory, sync, states, ids, reason)
    echo(f"requeued {result.total} lead(s) (reason: {result.reason}; by {result.actor}):")
    echo_lines(_summary(result.moved))
    if result.held:
        echo(f"{len(result.held)} lead(s) not requeued: their records now fail a rule:")
        for held in result.held[:HELD_SHOWN]:
            echo(
                f"  {held.salesforce_id} ({held.sync}): {held.from_state} -> {held.state}: "
                f"{held.note}"
            )
        if len(result.held) > HELD_SHOWN:
            echo(f"  ... and {len(result.held) - HELD_SHOWN} more (see `syncd leads`)")
    if result.skipped_by_filter:
        echo(f"{result.skipped_by_filter} lead(s) changed state meanwhile and were left alone")


#: Held-back leads listed one per line after a requeue.
HELD_SHOWN = 50
#: Exit status when Salesforce cannot be reached to fetch the records again.
EXIT_SALESFORCE_UNREACHABLE = 3


def _requeue(
    config: Config,
    session_factory: sessionmaker[Session],
    sync: str | None,
    states: tuple[str, ...],
    ids: tuple[str, ...],
    reason: str,
) -> ops.RequeueResult:
    """Run the requeue with a Salesforce source; refusals become messages and exit codes."""
    from syncd.adapters.salesforce import SalesforceSource

    source = SalesforceSource(config.salesforce)
    try:
        return _query(
            lambda: ops.requeue(
                session_factory,
                sources=lambda _name: source,
                syncs={item.name: item for item in config.syncs},
                sync=sync,
                states=list(states) or None,
                salesforce_ids=list(ids) or None,
                reason=reason,
                actor=_actor(),
            )
        )
    except ops.RequeueRefused as exc:
        echo("syncd: nothing was requeued:", err=True)
        for problem in exc.problems:
            echo(f"  {problem}", err=True)
        sys.exit(1)
    except SalesforceUnreachable as exc:
        fail(
            "cannot requeue: the records could not be fetched again from Salesforce "
            f"({exc}); nothing was changed",
            EXIT_SALESFORCE_UNREACHABLE,
        )
    finally:
        source.close()


# --------------------------------------------------------------------------- release, discard


def _settle_held(
    ctx: click.Context,
    config_path: Path,
    sync: str,
    reason: str | None,
    yes: bool,
    release: bool,
) -> None:
    """Release or discard a sync's held leads (database only, no Salesforce or SimZ)."""
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    _setup(ctx, config)
    verb, done, outcome = (
        ("release", "released", "queued") if release else ("discard", "discarded", "skipped")
    )
    with database(config) as session_factory:
        held = _query(lambda: ops.count_held(session_factory, sync))
        if held == 0:
            echo(f"no held leads in sync {sync}; nothing to {verb}")
            return
        echo(f"about to {verb} {held} held lead(s) of sync {sync} (to {outcome})")
        if release:
            secho(
                f"WARNING: SimZ will call these {held} people once each.",
                err=True,
                fg="red",
                bold=True,
            )
        if not yes:
            try:
                confirmed = click.confirm(
                    f"{verb.capitalize()} these leads?", default=False, err=True
                )
            except click.Abort:
                fail(f"no confirmation on stdin; rerun with --yes to {verb} without asking")
            if not confirmed:
                fail(f"not confirmed; nothing was {done}")
        action = ops.release if release else ops.discard
        chosen = reason or (ops.RELEASE_REASON if release else ops.DISCARD_REASON)
        result = _query(lambda: action(session_factory, sync=sync, actor=_actor(), reason=chosen))
    echo(
        f"{done} {result.leads} lead(s) of sync {sync} (reason: {result.reason}; by {result.actor})"
    )


@click.command()
@config_option
@click.option("--sync", "sync", required=True, help="The sync whose held leads to release.")
@click.option("--reason", default=None, help="Why; written to each lead's audit trail with $USER.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def release(
    ctx: click.Context, config_path: Path, sync: str, reason: str | None, yes: bool
) -> None:
    """Send the leads the blast-radius guard held: move them to queued.

    Every held lead of the sync moves in one transaction, with an audit-trail
    entry (reason and $USER); delivery then sends each of them once. It shows
    how many and asks for confirmation, unless --yes; with no answer on stdin
    it refuses and exits 1.
    """
    _settle_held(ctx, config_path, sync, reason, yes, release=True)


@click.command()
@config_option
@click.option("--sync", "sync", required=True, help="The sync whose held leads to discard.")
@click.option("--reason", default=None, help="Why; written to each lead's audit trail with $USER.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def discard(
    ctx: click.Context, config_path: Path, sync: str, reason: str | None, yes: bool
) -> None:
    """Never send the leads the blast-radius guard held: move them to skipped.

    Every held lead of the sync moves in one transaction, with an audit-trail
    entry (reason and $USER). A discarded lead is evaluated again only if its
    Salesforce record changes later, like any skipped lead. Confirmation as
    for release.
    """
    _settle_held(ctx, config_path, sync, reason, yes, release=False)


# --------------------------------------------------------------------------- writeback


@click.group("writeback")
def writeback() -> None:
    """Write-back of lead outcomes to Salesforce records: repair failed writes."""


@writeback.command("retry")
@config_option
@click.option("--sync", "sync", required=True, help="The sync whose failed write-backs to retry.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def writeback_retry(ctx: click.Context, config_path: Path, sync: str, yes: bool) -> None:
    """Move a sync's failed write-backs back to pending; the daemon sends them again.

    A write-back fails when Salesforce refuses the record for good (deleted,
    a field the user may not edit, a value too long). Fix the cause first
    (`syncd leads --history` shows each attempt's error), then retry. Only the
    Salesforce records are written again; no lead is sent to SimZ.

    It shows how many rows would move and asks for confirmation, unless --yes.
    """
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    _setup(ctx, config)
    with database(config) as session_factory:
        count = _query(lambda: ops.failed_writebacks(session_factory, sync))
        if count == 0:
            echo(f"sync {sync}: no failed write-back; nothing to retry")
            return
        echo(f"about to retry {count} failed write-back(s) of sync {sync}")
        if not yes:
            try:
                confirmed = click.confirm("Retry these write-backs?", default=False, err=True)
            except click.Abort:
                fail("no confirmation on stdin; rerun with --yes to retry without asking")
            if not confirmed:
                fail("not confirmed; nothing was retried")
        moved = _query(lambda: ops.retry_writebacks(session_factory, sync, actor=_actor()))
    echo(f"retried {moved} write-back(s) of sync {sync}: pending again")
