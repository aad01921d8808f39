"""``syncd status``: each sync's polling, leads, delivery backlog and pauses, from the database."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from syncd.adapters.operator_pauses import OPERATOR_SYNC
from syncd.config.loader import DATABASE_ONLY
from syncd.entrypoints.cli_common import config_option, load_or_exit
from syncd.entrypoints.cli_operator_common import (
    database,
    query,
    setup_logging,
    short,
    table,
    when,
)
from syncd.entrypoints.cli_text import echo_json, echo_lines
from syncd.services import operator as ops
from syncd.services.operator import HELD, STATE_ORDER


def _render_status(report: ops.StatusReport) -> list[str]:
    """The status report as text: a block per sync, then pauses, replicas and the hint."""
    out: list[str] = [f"syncd status at {when(report.generated_at)}"]
    running = any(replica.alive for replica in report.replicas)
    for sync in report.syncs:
        out += _sync_block(sync, report.operator_pauses, running)
    out += _delivery_pauses(report.pauses)
    out += _operator_pauses(report.operator_pauses)
    out += _replicas(report.replicas, report.replicas_left_out)
    out += _orgs(report.orgs)
    out += _calls(report.calls)
    out += ["", f"uncertain leads: {report.uncertain_total}"]
    if report.hint:
        out.append(f"  {report.hint}")
    return out


def _sync_block(
    sync: ops.SyncStatus, holds: Sequence[ops.OperatorPauseView], running: bool
) -> list[str]:
    """One sync: header, polling, leads, stream, leader, write-back, then its agents."""
    return [
        "",
        _sync_header(sync),
        *_poll_lines(sync),
        *_delivery_pause_lines(sync, holds),
        *_lead_lines(sync),
        *_stream_line(sync.stream),
        *_leader_lines(sync.leader, running),
        *_writeback_line(sync),
        *_speed_lines(sync.speed_to_lead),
        *_agents_table(sync.agents),
    ]


def _sync_header(sync: ops.SyncStatus) -> str:
    if not sync.configured:
        flag = "NOT IN CONFIG (only in the database)"
    elif not sync.enabled:
        flag = "disabled"
    else:
        flag = "enabled"
    return f"sync {sync.name}  [{flag}]"


def _poll_lines(sync: ops.SyncStatus) -> list[str]:
    """Last poll, last ok poll, watermark, start_at, polling pause, operator pause, last error."""
    out = [_last_poll_line(sync.last_poll)]
    out.append(f"  last ok poll   {when(sync.last_successful_poll_at)}")
    out.append(f"  watermark      {when(sync.watermark)}")
    configured = f" (config: {sync.configured_start_at})" if sync.configured_start_at else ""
    out.append(f"  start_at       {when(sync.start_at)}{configured}")
    if sync.paused:
        out.append(
            f"  polling        PAUSED until {when(sync.paused_until)}: {short(sync.pause_reason)}"
        )
    else:
        out.append("  polling        not paused")
    if sync.last_error:
        out.append(f"  last error     {short(sync.last_error, 100)}")
    return out


def _delivery_pause_lines(
    sync: ops.SyncStatus, holds: Sequence[ops.OperatorPauseView]
) -> list[str]:
    """The operator's pause of this sync (who, since when, why) and how to lift it."""
    if not sync.delivery_paused:
        return []
    for hold in holds:
        if hold.scope == OPERATOR_SYNC and hold.name == sync.name:
            return [
                f"  delivery       PAUSED by an operator: {hold.paused_by}, since "
                f"{when(hold.paused_at)}, reason: {short(hold.reason)}",
                f"                 to resume: syncd resume --sync {sync.name}",
            ]
    return [f"  delivery       PAUSED by an operator (syncd resume --sync {sync.name})"]


def _last_poll_line(poll: ops.PollView | None) -> str:
    if poll is None:
        return "  last poll      never"
    return (
        f"  last poll      {when(poll.started_at)}  {poll.status}  fetched {poll.fetched}"
        f", new {poll.new}, updated {poll.updated}, unchanged {poll.unchanged}"
        f", invalid {poll.invalid}, skipped {poll.skipped}"
        + (f"  error: {short(poll.error)}" if poll.error else "")
    )


def _lead_lines(sync: ops.SyncStatus) -> list[str]:
    """Leads per state, the held ones with what settles them, those waiting for calling hours."""
    out = ["  leads          " + "  ".join(f"{s} {sync.states[s]}" for s in STATE_ORDER)]
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
    return out


def _stream_line(stream: ops.StreamView | None) -> list[str]:
    if stream is None:
        return []
    if stream.mode != "stream":
        kept = f" (replay id from {when(stream.replay_at)} kept)" if stream.replay_stored else ""
        return [f"  stream         not used: the sync polls (source.mode: poll){kept}"]
    replay = (
        f"replay id from {when(stream.replay_at)}"
        if stream.replay_stored
        else "no replay id stored"
    )
    return [
        f"  stream         {stream.mode} {stream.topic}  {stream.state or ''}  {replay}"
        f"  last event {when(stream.last_event_at)}  replay resets {stream.replay_resets}"
    ]


def _leader_lines(leader: ops.LeaderView | None, running: bool) -> list[str]:
    """The lease holder; once its lease expired, whether any `syncd run` is running."""
    if leader is None:
        return ["  leader         none yet"]
    state = "lease until" if leader.active else "LEASE EXPIRED at"
    out = [
        f"  leader         {leader.replica}  {state} {when(leader.expires_at)}"
        f"  (since {when(leader.acquired_at)}, token {leader.token})"
    ]
    if leader.active:
        return out
    if running:
        return [*out, "                 no replica has taken the sync over yet"]
    return [
        *out,
        "                 no `syncd run` is running (no replica's heartbeat is current):",
        "                 nothing polls or delivers this sync until one starts",
    ]


def _writeback_line(sync: ops.SyncStatus) -> list[str]:
    wb = sync.writeback
    if wb is None:
        return []
    note = "" if wb.configured else "  (not configured any more)"
    hint = f"  (syncd writeback retry --sync {sync.name})" if wb.failed else ""
    counts = f"pending {wb.pending}, failed {wb.failed}, done {wb.done}"
    lines = [f"  write-back     {counts}{note}{hint}"]
    if wb.broken:
        lines.append(
            f"  write-back     BROKEN: {short(wb.broken, 120)}; fix the field "
            "(syncd check-config --connect), then retry"
        )
    return lines


def _speed_lines(stages: Sequence[ops.StageView]) -> list[str]:
    """Speed to lead over the last hour: p50/p95 of each stage with leads (none: one line)."""
    shown = [s for s in stages if s.leads]
    if not shown:
        return ["  speed to lead  no lead reached a stage in the last hour"]
    parts = [f"{s.stage} {_seconds(s.p50)}/{_seconds(s.p95)} ({s.leads})" for s in shown]
    return [
        "  speed to lead  last hour, p50/p95 (leads): " + ", ".join(parts[:3]),
        *(f"                 {', '.join(parts[i : i + 3])}" for i in range(3, len(parts), 3)),
    ]


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}s" if value < 60 else f"{value / 60:.1f}m"


_AGENT_HEADERS = [
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
]


def _agents_table(agents: Sequence[ops.AgentStatus]) -> list[str]:
    """A row per agent: backlog, pause and the last batch; nothing without agents."""
    rows = []
    for agent in agents:
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
                when(batch.created_at) if batch else None,
                batch.http_status if batch else None,
                batch.outcome if batch else None,
                batch.simz_batch_id if batch else None,
            ]
        )
    return table(_AGENT_HEADERS, rows, indent="  ") if rows else []


def _delivery_pauses(pauses: Sequence[ops.PauseView]) -> list[str]:
    out = ["", "delivery pauses"]
    if not pauses:
        return [*out, "  none"]
    return out + table(
        ["SCOPE", "KEY", "UNTIL", "ACTIVE", "HTTP", "REASON"],
        [
            [
                p.scope,
                p.key,
                when(p.paused_until),
                "yes" if p.active else "expired",
                p.http_status,
                short(p.reason),
            ]
            for p in pauses
        ],
        indent="  ",
    )


def _operator_pauses(holds: Sequence[ops.OperatorPauseView]) -> list[str]:
    out = ["", "operator pauses (syncd pause; lifted only by syncd resume)"]
    if not holds:
        return [*out, "  none"]
    return out + table(
        ["SCOPE", "NAME", "SINCE", "BY", "REASON", "TO RESUME"],
        [
            [
                h.scope,
                h.name,
                when(h.paused_at),
                h.paused_by,
                short(h.reason),
                f"syncd resume --{h.scope} {h.name}",
            ]
            for h in holds
        ],
        indent="  ",
    )


def _orgs(orgs: Sequence[ops.OrgView]) -> list[str]:
    """The org delivery runs for, and any other org met (delivery stops while it answers)."""
    if not orgs:
        return []
    rows = [
        [
            o.org_id,
            "sandbox" if o.is_sandbox else "production",
            when(o.first_seen_at),
            f"yes, by {o.trusted_by} {when(o.trusted_at)}" if o.trusted else "NO: syncd trust-org",
        ]
        for o in orgs
    ]
    headers = ["ORG", "KIND", "FIRST SEEN", "TRUSTED"]
    return [
        "",
        "salesforce orgs (delivery runs only for the trusted one)",
        *table(headers, rows, indent="  "),
    ]


def _calls(calls: ops.CallsView | None) -> list[str]:
    """The stored webhooks by status, the oldest still to process, and call write-backs."""
    if calls is None:
        return []
    counts = ", ".join(f"{n} {status}" for status, n in calls.events.items())
    waiting = (
        f"oldest new received {when(calls.oldest_pending_at)} "
        f"({_seconds(calls.oldest_pending_seconds)} ago)"
        if calls.oldest_pending_at is not None
        else "none waits to be processed"
    )
    out = ["", "calls (webhooks: syncd calls)", f"  events  {counts}; {waiting}"]
    rows = [
        [w.sync, w.mode or "off", w.pending, w.sending, w.done, w.failed, w.none]
        for w in calls.writebacks
    ]
    if rows:
        headers = ["SYNC", "WRITE-BACK", "PENDING", "IN DOUBT", "DONE", "FAILED", "NONE"]
        out += table(headers, rows, indent="  ")
    return out


def _replicas(replicas: Sequence[ops.ReplicaView], left_out: int) -> list[str]:
    """Live replicas and those whose heartbeat expired within the last hour."""
    note = (
        [f"  ({left_out} replica(s) whose heartbeat expired over an hour ago not shown)"]
        if left_out
        else []
    )
    if not replicas:
        return ["", "replicas", *note] if note else []
    rows = [
        [
            r.replica,
            r.host,
            r.pid,
            when(r.started_at),
            when(r.heartbeat_at),
            "yes" if r.alive else "no (heartbeat expired)",
        ]
        for r in replicas
    ]
    headers = ["REPLICA", "HOST", "PID", "STARTED", "HEARTBEAT", "ALIVE"]
    return ["", "replicas", *table(headers, rows, indent="  "), *note]


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
    replicas: which replica leads each sync (holds its lease, until when; an
    expired lease says whether any replica still runs) and the last heartbeat of
    every replica alive or stopped within the hour (older ones are counted,
    not listed). With write-back: outcomes pending, failed
    and written. Speed to lead: p50/p95 seconds of each stage (read, queued,
    sent, accepted, first_call, total) over the last hour, from the leads'
    own moments; leads stored without them are left out. With simz.webhook:
    the stored webhooks by status (new, matched, unmatched, unreadable), the
    age of the oldest still new, and each sync's call write-backs by status.

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
       "writeback": {"configured", "pending", "done", "failed", "broken"}|null,
       "speed_to_lead": [{"stage", "leads", "p50", "p95"}]}],
       "pauses": [{"scope", "key", "reason", "http_status", "failures",
       "paused_until", "active"}], "uncertain_total", "hint", "replicas":
       [{"replica", "host", "pid", "started_at", "heartbeat_at", "expires_at",
       "alive"}], "replicas_left_out", "operator_pauses": [{"scope", "name", "reason", "paused_by",
       "paused_at"}], "orgs": [{"org_id", "is_sandbox", "trusted", "first_seen_at",
       "trusted_at", "trusted_by"}], "calls": {"events": {status: count},
       "oldest_pending_at", "oldest_pending_seconds", "writebacks": [{"sync",
       "mode", "pending", "sending", "done", "failed", "none"}]}|null}
    """
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    with database(config) as session_factory:
        report = query(lambda: ops.status(session_factory, config))
    if as_json:
        echo_json(report.to_dict())
    else:
        echo_lines(_render_status(report))
