"""``status``: what is going on, per sync and per agent, read from the database alone.

JSON shape of :meth:`StatusReport.to_dict` (version 1; times are ISO 8601 UTC
with a trailing ``Z``, ``null`` when unknown)::

    {"version": 1, "generated_at": T,
     "syncs": [{"name", "configured": bool, "enabled": bool|null,
                "start_at": T, "configured_start_at": "now"|T|null, "watermark": T,
                "last_poll": {"started_at", "finished_at", "status", "pages", "fetched",
                              "new", "updated", "unchanged", "invalid", "skipped",
                              "error"}|null,
                "last_successful_poll_at": T, "last_error": str|null,
                "paused": bool, "paused_until": T, "pause_reason": str|null,
                "states": {"queued": n, "sending": n, ... all 9 states},
                "waiting_for_calling_hours": n,
                "leader": {"replica", "token", "acquired_at", "renewed_at", "expires_at",
                           "active": bool}|null,
                "delivery_paused": bool,
                "writeback": {"configured": bool, "pending", "done", "failed",
                              "broken": str|null}|null,
                "stream": {"mode": "stream"|"poll", "topic", "replay_stored": bool,
                           "replay_at", "last_event_at", "replay_resets": n,
                           "updated_at", "state": "advancing"|"stalled"|"not running"|null}
                          |null,
                "speed_to_lead": [{"stage", "leads", "p50", "p95"}] (seconds, last hour),
                "agents": [{"agent", "configured": bool, "queued", "due", "waiting",
                            "sending", "paused": bool,
                            "last_batch": {"id", "created_at", "finished_at",
                                           "http_status", "outcome", "simz_batch_id",
                                           "lead_count", "accepted", "rejected"}|null}]}],
     "pauses": [{"scope", "key", "reason", "http_status", "failures",
                 "paused_until", "active": bool}],
     "uncertain_total": n, "hint": str|null,
     "replicas": [{"replica", "host", "pid", "started_at", "heartbeat_at", "expires_at",
                   "alive": bool}], "replicas_left_out": n,
     "operator_pauses": [{"scope": "sync"|"agent", "name", "reason", "paused_by",
                          "paused_at"}],
     "calls": {"events": {"new", "matched", "unmatched", "unreadable"},
               "oldest_pending_at": T, "oldest_pending_seconds": s|null,
               "writebacks": [{"sync", "mode": "tasks"|"fields"|null, "pending",
                               "sending", "done", "failed", "none"}]}|null}

``calls`` is there when ``simz.webhook`` is set or webhooks were ever stored.

``delivery_paused`` and ``operator_pauses`` are the pauses set by ``syncd pause``
(an agent's ``paused`` is true for those too). ``leader`` is the holder of the
sync's lease (only it polls and delivers the sync); ``active`` is false once
the lease expired, i.e. no replica leads it until another takes it over.
``alive`` compares the status command's clock with the replica's heartbeat
expiry. A replica whose heartbeat expired more than :data:`DEAD_REPLICAS_SHOWN`
ago (a killed or removed pod) is left out of ``replicas``; ``replicas_left_out``
counts them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import operator_pauses, stream_store, writeback_store
from syncd.adapters import operator_queries as q
from syncd.adapters.operator_pauses import OPERATOR_AGENT, OPERATOR_SYNC
from syncd.adapters.orm import (
    Batch,
    Lease,
    Pause,
    PollRun,
    Replica,
    SyncState,
    utcnow,
)
from syncd.adapters.outbox import SCOPE_AGENT, SCOPE_API_KEY, agent_pause_key
from syncd.adapters.simz import key_fingerprint
from syncd.config import Config, SyncConfig
from syncd.domain.states import LeadState
from syncd.services.operator.calls_status import CallsView, calls_view
from syncd.services.operator.common import STATE_ORDER, iso, to_jsonable
from syncd.services.operator.org_status import OrgView, org_views
from syncd.services.operator.speed_status import StageView, no_speed, speed_by_sync
from syncd.services.stream_board import stored_state

#: How long a replica whose heartbeat expired is still listed by ``status``.
DEAD_REPLICAS_SHOWN = timedelta(hours=1)

UNCERTAIN_HINT = (
    "{n} uncertain lead(s) need an operator: inspect them with "
    "`syncd leads --state uncertain` and ask SimZ; `syncd resolve --sync NAME --id ID "
    "--as accepted` those SimZ has, and `syncd requeue --state uncertain` only for "
    "those SimZ did not take (a requeue may make SimZ call a person twice)."
)


@dataclass(frozen=True)
class PollView:
    started_at: datetime
    finished_at: datetime | None
    status: str
    pages: int
    fetched: int
    new: int
    updated: int
    unchanged: int
    invalid: int
    skipped: int
    error: str | None

    @classmethod
    def of(cls, run: PollRun) -> PollView:
        return cls(
            run.started_at,
            run.finished_at,
            run.status,
            run.pages,
            run.fetched,
            run.new,
            run.updated,
            run.unchanged,
            run.invalid,
            run.skipped,
            run.error,
        )


@dataclass(frozen=True)
class BatchView:
    id: int
    created_at: datetime
    finished_at: datetime | None
    http_status: int | None
    outcome: str | None
    simz_batch_id: str | None
    lead_count: int
    accepted: int | None
    rejected: int | None

    @classmethod
    def of(cls, batch: Batch) -> BatchView:
        return cls(
            batch.id,
            batch.created_at,
            batch.finished_at,
            batch.http_status,
            batch.outcome,
            batch.simz_batch_id,
            batch.lead_count,
            batch.accepted,
            batch.rejected,
        )


@dataclass(frozen=True)
class AgentStatus:
    """Delivery backlog of one agent of one sync."""

    agent: str | None
    configured: bool
    queued: int
    due: int
    waiting: int
    sending: int
    paused: bool
    last_batch: BatchView | None


@dataclass(frozen=True)
class LeaderView:
    """The replica holding a sync's lease."""

    replica: str
    token: int
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    active: bool

    @classmethod
    def of(cls, lease: Lease, now: datetime) -> LeaderView:
        return cls(
            lease.holder,
            lease.token,
            lease.acquired_at,
            lease.renewed_at,
            lease.expires_at,
            lease.expires_at > now,
        )


@dataclass(frozen=True)
class ReplicaView:
    replica: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    alive: bool

    @classmethod
    def of(cls, row: Replica, now: datetime) -> ReplicaView:
        return cls(
            row.id,
            row.host,
            row.pid,
            row.started_at,
            row.heartbeat_at,
            row.expires_at,
            row.expires_at > now,
        )


@dataclass(frozen=True)
class WritebackStatus:
    """Write-back rows of one sync: waiting to be written, written, given up on."""

    configured: bool
    pending: int
    done: int
    failed: int
    #: Set when failed rows were refused on a field (removed or read-only): why.
    broken: str | None = None


@dataclass(frozen=True)
class SyncStatus:
    name: str
    configured: bool
    enabled: bool | None
    start_at: datetime | None
    configured_start_at: str | None
    watermark: datetime | None
    last_poll: PollView | None
    last_successful_poll_at: datetime | None
    last_error: str | None
    paused: bool
    paused_until: datetime | None
    pause_reason: str | None
    states: dict[str, int]
    agents: list[AgentStatus]
    leader: LeaderView | None = None
    delivery_paused: bool = False
    waiting_for_calling_hours: int = 0
    writeback: WritebackStatus | None = None
    stream: StreamView | None = None
    #: Every speed-to-lead stage over the last hour (:mod:`.speed_status`).
    speed_to_lead: list[StageView] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class OperatorPauseView:
    """A pause set by ``syncd pause``: lasts until ``syncd resume``."""

    scope: str
    name: str
    reason: str
    paused_by: str
    paused_at: datetime


@dataclass(frozen=True)
class StreamView:
    """A streamed sync's stored resume point (live connection state: /status.json, metrics)."""

    mode: str
    topic: str | None
    replay_stored: bool
    replay_at: datetime | None
    last_event_at: datetime | None
    replay_resets: int
    updated_at: datetime | None
    #: See :func:`syncd.services.stream_board.stored_state` (None: a polled sync).
    state: str | None = None


@dataclass(frozen=True)
class PauseView:
    scope: str
    key: str
    reason: str
    http_status: int | None
    failures: int
    paused_until: datetime
    active: bool

    @classmethod
    def of(cls, pause: Pause, now: datetime) -> PauseView:
        return cls(
            pause.scope,
            pause.key,
            pause.reason,
            pause.http_status,
            pause.failures,
            pause.paused_until,
            pause.paused_until > now,
        )


@dataclass(frozen=True)
class StatusReport:
    generated_at: datetime
    syncs: list[SyncStatus]
    pauses: list[PauseView]
    uncertain_total: int
    hint: str | None
    replicas: list[ReplicaView] = dataclasses.field(default_factory=list)
    operator_pauses: list[OperatorPauseView] = dataclasses.field(default_factory=list)
    #: Replicas whose heartbeat expired over :data:`DEAD_REPLICAS_SHOWN` ago, not listed.
    replicas_left_out: int = 0
    #: The Salesforce orgs met, the trusted one first.
    orgs: list[OrgView] = dataclasses.field(default_factory=list)
    #: The call-outcome webhooks and write-backs (:mod:`.calls_status`).
    calls: CallsView | None = None

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON object (see the module docstring)."""
        body: dict[str, Any] = {"version": 1}
        body.update(to_jsonable(self))
        return body


def _agent_paused(agent: str | None, credential: str | None, pauses: Sequence[PauseView]) -> bool:
    """Whether delivery to ``agent`` with the configured API key is paused now.

    ``credential`` is None when the key was not loaded (``status`` runs without
    secrets): then a pause of any key counts.
    """
    if agent is None:
        return False
    if credential is None:
        return any(
            p.active
            and (
                p.scope == SCOPE_API_KEY or (p.scope == SCOPE_AGENT and p.key.endswith(f"/{agent}"))
            )
            for p in pauses
        )
    wanted = {(SCOPE_API_KEY, credential), (SCOPE_AGENT, agent_pause_key(credential, agent))}
    return any(p.active and (p.scope, p.key) in wanted for p in pauses)


@dataclass(frozen=True)
class _StatusRows:
    """What ``status`` reads from the database, in one session."""

    counts: dict[tuple[str, str], int]
    backlog: list[q.AgentBacklog]
    states: dict[str, SyncState]
    polls: dict[str, PollRun]
    ok_polls: dict[str, datetime]
    batches: dict[tuple[str, str], Batch]
    pauses: list[PauseView]
    leaders: dict[str, LeaderView]
    replicas: list[ReplicaView]
    operator_pauses: list[OperatorPauseView]
    calling_hours: dict[str, int]
    writebacks: dict[tuple[str, str], int]
    writeback_field_errors: dict[str, tuple[int, str]]
    streams: dict[str, stream_store.StreamPosition]
    speed: dict[str, list[StageView]]


def _read_status_rows(session_factory: sessionmaker[Session], at: datetime) -> _StatusRows:
    """Every row ``status`` needs, read in one session."""
    with session_factory() as session:
        return _StatusRows(
            counts=q.count_by_state(session),
            backlog=q.backlog_by_agent(session, at),
            states=q.sync_states(session),
            polls=q.latest_poll_runs(session),
            ok_polls=q.last_ok_polls(session),
            batches=q.latest_batches(session),
            pauses=[PauseView.of(p, at) for p in q.all_pauses(session)],
            leaders={name: LeaderView.of(row, at) for name, row in q.sync_leases(session).items()},
            replicas=[ReplicaView.of(row, at) for row in q.all_replicas(session)],
            operator_pauses=[
                OperatorPauseView(*dataclasses.astuple(h))
                for h in operator_pauses.all_pauses(session)
            ],
            calling_hours=q.waiting_for_calling_hours(session, at),
            writebacks=writeback_store.counts(session),
            writeback_field_errors=writeback_store.field_errors(session),
            streams=stream_store.all_positions(session),
            speed=speed_by_sync(session, at),
        )


def _status_sync_names(configured: dict[str, SyncConfig], rows: _StatusRows) -> list[str]:
    """The configured syncs in config order, then the ones only the database knows, sorted."""
    in_db = {name for name, _ in rows.counts} | set(rows.states) | set(rows.polls)
    in_db |= {s for s, _ in rows.batches}
    in_db |= {b.sync for b in rows.backlog}
    return list(configured) + sorted(in_db - set(configured))


def _agent_statuses(
    name: str,
    sync_config: SyncConfig | None,
    rows: _StatusRows,
    credential: str | None,
    held: set[tuple[str, str]],
) -> list[AgentStatus]:
    """One row per agent of a sync: configured, with a batch, or with leads queued."""
    backlog_of = {b.agent: b for b in rows.backlog if b.sync == name}
    configured = list(sync_config.agents) if sync_config else []
    return [
        _agent_status(
            agent,
            configured=agent in configured,
            backlog=backlog_of.get(agent),
            batch=rows.batches.get((name, agent)) if agent is not None else None,
            paused=_agent_paused(agent, credential, rows.pauses)
            or (agent is not None and (OPERATOR_AGENT, agent) in held)
            or (OPERATOR_SYNC, name) in held,
        )
        for agent in _status_agents(name, configured, rows, backlog_of)
    ]


def _status_agents(
    name: str, configured: list[str], rows: _StatusRows, backlog_of: dict[str | None, Any]
) -> list[str | None]:
    """The configured agents, then those with a batch or leads queued (None: no agent)."""
    agents: list[str | None] = list(configured)
    for agent in [*sorted(a for s, a in rows.batches if s == name), *backlog_of]:
        if agent not in agents and (agent is not None or backlog_of[None].queued):
            agents.append(agent)
    return agents


def _agent_status(
    agent: str | None,
    *,
    configured: bool,
    backlog: q.AgentBacklog | None,
    batch: Batch | None,
    paused: bool,
) -> AgentStatus:
    return AgentStatus(
        agent=agent,
        configured=configured,
        queued=backlog.queued if backlog else 0,
        due=backlog.due if backlog else 0,
        waiting=(backlog.queued - backlog.due) if backlog else 0,
        sending=backlog.sending if backlog else 0,
        paused=paused,
        last_batch=BatchView.of(batch) if batch else None,
    )


def _sync_status(
    name: str,
    sync_config: SyncConfig | None,
    rows: _StatusRows,
    agent_rows: list[AgentStatus],
    held: set[tuple[str, str]],
    at: datetime,
) -> SyncStatus:
    """One sync's status: its poll state, lead counts by state, agents and leader."""
    row = rows.states.get(name)
    configured_start: str | None = None
    if sync_config is not None:
        start = sync_config.start_at
        configured_start = start if isinstance(start, str) else iso(start)
    paused_until = row.paused_until if row else None
    return SyncStatus(
        name=name,
        configured=sync_config is not None,
        enabled=sync_config.enabled if sync_config else None,
        start_at=row.start_at if row else None,
        configured_start_at=configured_start,
        watermark=row.watermark if row else None,
        last_poll=PollView.of(rows.polls[name]) if name in rows.polls else None,
        last_successful_poll_at=(row.last_poll_ok_at if row else None) or rows.ok_polls.get(name),
        last_error=row.last_error if row else None,
        paused=paused_until is not None and paused_until > at,
        paused_until=paused_until,
        pause_reason=row.pause_reason if row else None,
        states={state: rows.counts.get((name, state), 0) for state in STATE_ORDER},
        agents=agent_rows,
        leader=rows.leaders.get(name),
        delivery_paused=(OPERATOR_SYNC, name) in held,
        waiting_for_calling_hours=rows.calling_hours.get(name, 0),
        writeback=_writeback_status(
            name, sync_config, rows.writebacks, rows.writeback_field_errors.get(name)
        ),
        stream=_stream_view(sync_config, rows.streams.get(name), rows.leaders.get(name), at),
        speed_to_lead=rows.speed.get(name) or no_speed(),
    )


def _stream_view(
    sync: SyncConfig | None,
    position: stream_store.StreamPosition | None,
    leader: LeaderView | None,
    at: datetime,
) -> StreamView | None:
    if position is None and (sync is None or not sync.streamed):
        return None
    streamed = sync is not None and sync.streamed
    led_since = leader.acquired_at if leader is not None and leader.active else None
    updated = position.updated_at if position else None
    return StreamView(
        mode="stream" if sync is not None and sync.streamed else "poll",
        topic=position.topic if position else (sync.topic if sync else None),
        replay_stored=position is not None and position.replay_id is not None,
        replay_at=position.replay_at if position else None,
        last_event_at=position.last_event_at if position else None,
        replay_resets=position.replay_resets if position else 0,
        updated_at=position.updated_at if position else None,
        state=stored_state(updated, led_since, at) if streamed else None,
    )


def status(
    session_factory: sessionmaker[Session],
    config: Config,
    *,
    now: Callable[[], datetime] = utcnow,
) -> StatusReport:
    """Everything an operator needs at a glance, per sync and per agent."""
    at = now()
    rows = _read_status_rows(session_factory, at)
    credential = (
        None
        if "simz.api_key" in config.unresolved
        else key_fingerprint(config.simz.api_key.get_secret_value())
    )
    configured = {sync.name: sync for sync in config.syncs}
    held = {(h.scope, h.name) for h in rows.operator_pauses}
    syncs: list[SyncStatus] = []
    for name in _status_sync_names(configured, rows):
        sync_config = configured.get(name)
        agent_rows = _agent_statuses(name, sync_config, rows, credential, held)
        syncs.append(_sync_status(name, sync_config, rows, agent_rows, held, at))
    uncertain = sum(s.states[LeadState.UNCERTAIN.value] for s in syncs)
    shown = [r for r in rows.replicas if r.alive or r.expires_at > at - DEAD_REPLICAS_SHOWN]
    return StatusReport(
        generated_at=at,
        syncs=syncs,
        pauses=rows.pauses,
        uncertain_total=uncertain,
        hint=UNCERTAIN_HINT.format(n=uncertain) if uncertain else None,
        replicas=shown,
        operator_pauses=rows.operator_pauses,
        replicas_left_out=len(rows.replicas) - len(shown),
        orgs=org_views(session_factory),
        calls=calls_view(session_factory, config, at),
    )


def _writeback_status(
    name: str,
    sync: SyncConfig | None,
    counts: dict[tuple[str, str], int],
    field_errors: tuple[int, str] | None = None,
) -> WritebackStatus | None:
    """The sync's write-back counts; None when it neither has write-back nor rows."""
    configured = sync is not None and sync.writeback is not None
    found = {status: n for (sync_name, status), n in counts.items() if sync_name == name}
    if not configured and not found:
        return None
    return WritebackStatus(
        configured=configured,
        pending=found.get("pending", 0),
        done=found.get("done", 0),
        failed=found.get("failed", 0),
        broken=(
            f"{field_errors[0]} write(s) refused on a field: {field_errors[1]}"
            if field_errors
            else None
        ),
    )
