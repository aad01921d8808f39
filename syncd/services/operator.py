"""Operator use cases: what is going on (status), what happened to a lead (leads), and
the one manual repair syncd allows (requeue).

``status`` and ``leads`` read only the database, so they work while the daemon
runs and while Salesforce or SimZ are down. ``requeue`` fetches the selected
records again from Salesforce first (:mod:`syncd.services.refetch`) and refuses,
changing nothing, when Salesforce cannot be reached: a lead is never sent again
from stale data.

``requeue`` is the only way an ``uncertain`` lead is ever sent again (guarantee
3): SimZ has no idempotency key, so a lead whose earlier POST did reach SimZ
will be called twice. Hence the rules, which the CLI states in its help:

* at least one selector (sync, states or Salesforce Ids); never "everything";
* only ``uncertain``, ``failed`` and ``rejected`` leads move, never ``accepted``;
* an explicit Id list is all-or-nothing: if any named Id does not exist or is in
  a state the command would not move, nothing moves and every problem is named;
* every selected record is fetched again and every rule re-applied: a record
  now DoNotCall, deleted, no longer matched by ``where``, a duplicate or invalid
  becomes ``skipped``/``invalid`` with the reason instead of ``queued``;
* one transaction; each UPDATE repeats the state condition, so a lead whose state
  changed since it was selected is left alone;
* one ``lead_transitions`` row per moved lead, with the reason and who did it.

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
                "writeback": {"configured": bool, "pending", "done", "failed"}|null,
                "stream": {"mode": "stream"|"poll", "topic", "replay_stored": bool,
                           "replay_at", "last_event_at", "replay_resets": n,
                           "updated_at"}|null,
                "agents": [{"agent", "configured": bool, "queued", "due", "waiting",
                            "sending", "paused": bool,
                            "last_batch": {"id", "created_at", "finished_at",
                                           "http_status", "outcome", "simz_batch_id",
                                           "lead_count", "accepted", "rejected"}|null}]}],
     "pauses": [{"scope", "key", "reason", "http_status", "failures",
                 "paused_until", "active": bool}],
     "uncertain_total": n, "hint": str|null,
     "replicas": [{"replica", "host", "pid", "started_at", "heartbeat_at", "expires_at",
                   "alive": bool}],
     "operator_pauses": [{"scope": "sync"|"agent", "name", "reason", "paused_by",
                          "paused_at"}]}

``delivery_paused`` and ``operator_pauses`` are the pauses set by ``syncd pause``
(an agent's ``paused`` is true for those too). ``leader`` is the holder of the
sync's lease (only it polls and delivers the sync); ``active`` is false once
the lease expired, i.e. no replica leads it until another takes it over.
``alive`` compares the status command's clock with the replica's heartbeat
expiry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import operator_pauses, recheck_store, stream_store, writeback_store
from syncd.adapters import operator_queries as q
from syncd.adapters.operator_pauses import SCOPE_SYNC
from syncd.adapters.orm import (
    Batch,
    Lead,
    LeadTransition,
    Lease,
    Pause,
    PollRun,
    Replica,
    SyncState,
    WritebackAttempt,
    utcnow,
)
from syncd.adapters.outbox import SCOPE_AGENT, SCOPE_API_KEY, agent_pause_key
from syncd.adapters.simz import key_fingerprint
from syncd.config import Config, SyncConfig
from syncd.domain.states import REQUEUEABLE, LeadState, check_transition
from syncd.logs import get_logger
from syncd.services import refetch
from syncd.services.refetch import RecordSource

log = get_logger(__name__)

#: All states, in the order the CLI shows them.
STATE_ORDER: tuple[str, ...] = tuple(state.value for state in LeadState)
#: States ``requeue`` may move, in the order the CLI shows them.
REQUEUE_STATES: tuple[str, ...] = tuple(state.value for state in LeadState if state in REQUEUEABLE)
DEFAULT_REASON = "operator requeue"
HELD = LeadState.HELD.value
UNCERTAIN_HINT = (
    "{n} uncertain lead(s) need an operator: inspect them with "
    "`syncd leads --state uncertain`, then `syncd requeue --state uncertain` only for "
    "those SimZ did not take (a requeue may make SimZ call a person twice)."
)


def iso(value: datetime | None, timespec: str = "milliseconds") -> str | None:
    """An aware datetime as ISO 8601 UTC with ``Z``; None stays None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def to_jsonable(value: Any) -> Any:
    """Dataclasses, datetimes and containers as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    return value


# --------------------------------------------------------------------------- status


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
    """A streamed sync's stored resume point (live connection state: /readyz, metrics)."""

    mode: str
    topic: str | None
    replay_stored: bool
    replay_at: datetime | None
    last_event_at: datetime | None
    replay_resets: int
    updated_at: datetime | None


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
    holds: list[OperatorPauseView]
    calling_hours: dict[str, int]
    writebacks: dict[tuple[str, str], int]
    streams: dict[str, stream_store.StreamPosition]


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
            holds=[
                OperatorPauseView(*dataclasses.astuple(h))
                for h in operator_pauses.all_holds(session)
            ],
            calling_hours=q.waiting_for_calling_hours(session, at),
            writebacks=writeback_store.counts(session),
            streams=stream_store.all_positions(session),
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
    agents: list[str | None] = list(sync_config.agents) if sync_config else []
    for agent in [*sorted(a for s, a in rows.batches if s == name), *backlog_of]:
        if agent not in agents and (agent is not None or backlog_of[None].queued):
            agents.append(agent)
    agent_rows = []
    for agent in agents:
        b = backlog_of.get(agent)
        batch = rows.batches.get((name, agent)) if agent is not None else None
        agent_rows.append(
            AgentStatus(
                agent=agent,
                configured=sync_config is not None and agent in sync_config.agents,
                queued=b.queued if b else 0,
                due=b.due if b else 0,
                waiting=(b.queued - b.due) if b else 0,
                sending=b.sending if b else 0,
                paused=_agent_paused(agent, credential, rows.pauses)
                or (agent is not None and (SCOPE_AGENT, agent) in held)
                or (SCOPE_SYNC, name) in held,
                last_batch=BatchView.of(batch) if batch else None,
            )
        )
    return agent_rows


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
        delivery_paused=(SCOPE_SYNC, name) in held,
        waiting_for_calling_hours=rows.calling_hours.get(name, 0),
        writeback=_writeback_status(name, sync_config, rows.writebacks),
        stream=_stream_view(sync_config, rows.streams.get(name)),
    )


def _stream_view(
    sync: SyncConfig | None, position: stream_store.StreamPosition | None
) -> StreamView | None:
    if position is None and (sync is None or not sync.streamed):
        return None
    return StreamView(
        mode="stream" if sync is not None and sync.streamed else "poll",
        topic=position.topic if position else (sync.topic if sync else None),
        replay_stored=position is not None and position.replay_id is not None,
        replay_at=position.replay_at if position else None,
        last_event_at=position.last_event_at if position else None,
        replay_resets=position.replay_resets if position else 0,
        updated_at=position.updated_at if position else None,
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
    held = {(h.scope, h.name) for h in rows.holds}
    syncs: list[SyncStatus] = []
    for name in _status_sync_names(configured, rows):
        sync_config = configured.get(name)
        agent_rows = _agent_statuses(name, sync_config, rows, credential, held)
        syncs.append(_sync_status(name, sync_config, rows, agent_rows, held, at))
    uncertain = sum(s.states[LeadState.UNCERTAIN.value] for s in syncs)
    return StatusReport(
        generated_at=at,
        syncs=syncs,
        pauses=rows.pauses,
        uncertain_total=uncertain,
        hint=UNCERTAIN_HINT.format(n=uncertain) if uncertain else None,
        replicas=rows.replicas,
        operator_pauses=rows.holds,
    )


def _writeback_status(
    name: str, sync: SyncConfig | None, counts: dict[tuple[str, str], int]
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
    )


# --------------------------------------------------------------------------- leads


@dataclass(frozen=True)
class TransitionView:
    at: datetime
    from_state: str | None
    to_state: str
    reason: str
    batch_id: int | None

    @classmethod
    def of(cls, row: LeadTransition) -> TransitionView:
        return cls(row.at, row.from_state, row.to_state, row.reason, row.batch_id)


@dataclass(frozen=True)
class WritebackAttemptView:
    """One try at writing the lead's outcome to its Salesforce record."""

    at: datetime
    state: str
    outcome: str
    error: str | None

    @classmethod
    def of(cls, row: WritebackAttempt) -> WritebackAttemptView:
        return cls(row.at, row.state, row.outcome, row.error)


@dataclass(frozen=True)
class LeadView:
    """One lead as an operator sees it. ``payload`` (personal data) only on request."""

    id: int
    salesforce_id: str
    sync: str
    agent: str | None
    state: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    batch_id: int | None
    simz_batch_id: str | None
    note: str | None
    error_code: str | None
    error_message: str | None
    history: list[TransitionView] | None = None
    payload: dict[str, Any] | None = None
    waiting_for: str | None = None
    writeback: list[WritebackAttemptView] | None = None
    writeback_status: str | None = None

    @classmethod
    def of(
        cls,
        lead: Lead,
        history: list[TransitionView] | None,
        with_payload: bool,
        writeback: list[WritebackAttemptView] | None = None,
        writeback_status: str | None = None,
    ) -> LeadView:
        return cls(
            id=lead.id,
            salesforce_id=lead.salesforce_id,
            sync=lead.sync_name,
            agent=lead.agent_id,
            state=lead.state,
            attempts=lead.attempts,
            next_attempt_at=lead.next_attempt_at,
            created_at=lead.created_at,
            updated_at=lead.updated_at,
            sent_at=lead.sent_at,
            batch_id=lead.batch_id,
            simz_batch_id=lead.simz_batch_id,
            note=lead.note,
            error_code=lead.error_code,
            error_message=lead.error_message,
            history=history,
            payload=dict(lead.payload) if with_payload else None,
            waiting_for=lead.waiting_for if lead.state == LeadState.QUEUED.value else None,
            writeback=writeback,
            writeback_status=writeback_status,
        )


def list_leads(
    session_factory: sessionmaker[Session],
    *,
    state: Iterable[str] | str | None = None,
    sync: str | None = None,
    salesforce_ids: Iterable[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    history: bool = False,
    payload: bool = False,
) -> list[LeadView]:
    """Leads matching every given filter, most recently changed first.

    ``since``/``until`` bound the time of the lead's last change (``updated_at``,
    until exclusive). ``history`` adds each lead's transitions, oldest first;
    ``payload`` adds the body sent to SimZ, which holds personal data.
    """
    states = [state] if isinstance(state, str) else (list(state) if state is not None else None)
    for name in states or ():
        LeadState(name)  # ValueError on an unknown state
    if limit < 1:
        raise ValueError("limit must be at least 1")
    clauses = q.lead_filter(
        sync=sync,
        states=states,
        salesforce_ids=list(salesforce_ids) if salesforce_ids is not None else None,
        since=since,
        until=until,
    )
    with session_factory() as session:
        leads = q.find_leads(session, clauses, limit)
        lead_ids = [lead.id for lead in leads]
        trails = q.transitions_of(session, lead_ids) if history else {}
        tries = writeback_store.attempts_of(session, lead_ids) if history else {}
        rows = writeback_store.writebacks_of(session, lead_ids) if history else {}
        return [
            LeadView.of(
                lead,
                [TransitionView.of(t) for t in trails[lead.id]] if history else None,
                payload,
                [WritebackAttemptView.of(a) for a in tries[lead.id]] if history else None,
                _writeback_line(rows.get(lead.id)),
            )
            for lead in leads
        ]


def _writeback_line(row: Any) -> str | None:
    """The lead's write-back row in a few words, e.g. ``pending (accepted, 2 attempts)``."""
    if row is None:
        return None
    return f"{row.status} ({row.state}, {row.attempts} attempt{'s' if row.attempts != 1 else ''})"


# --------------------------------------------------------------------------- requeue


class RequeueRefused(Exception):
    """Nothing was moved; ``problems`` says why, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class RequeueCount:
    sync: str
    state: str
    leads: int


@dataclass(frozen=True)
class RequeuePreview:
    """What ``requeue`` would move now, and the problems that would stop it."""

    counts: list[RequeueCount]
    problems: list[str]

    @property
    def total(self) -> int:
        return sum(c.leads for c in self.counts)

    def by_state(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for c in self.counts:
            found[c.state] = found.get(c.state, 0) + c.leads
        return found

    @property
    def uncertain(self) -> int:
        return self.by_state().get(LeadState.UNCERTAIN.value, 0)


@dataclass(frozen=True)
class HeldLead:
    """A lead a requeue did not queue: its record now fails a rule, or is gone."""

    sync: str
    salesforce_id: str
    from_state: str
    state: str
    note: str


@dataclass(frozen=True)
class RequeueResult:
    moved: list[RequeueCount]
    reason: str
    actor: str
    at: datetime
    skipped_by_filter: int = 0
    held: list[HeldLead] = dataclasses.field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(c.leads for c in self.moved)


def _selection(
    sync: str | None, states: Iterable[str] | None, salesforce_ids: Iterable[str] | None
) -> tuple[list[str], list[str] | None]:
    ids = list(dict.fromkeys(salesforce_ids)) if salesforce_ids is not None else None
    chosen = list(dict.fromkeys(states)) if states else None
    if sync is None and not chosen and not ids:
        raise ValueError(
            "requeue needs at least one selector: a sync, one or more states, or Salesforce Ids"
        )
    for name in chosen or ():
        if name not in REQUEUE_STATES:
            raise ValueError(
                f"{name!r} leads cannot be requeued; only {', '.join(REQUEUE_STATES)} can"
            )
    return chosen or list(REQUEUE_STATES), ids


def _preview(
    session: Session, sync: str | None, states: list[str], ids: list[str] | None
) -> RequeuePreview:
    problems: list[str] = []
    if ids:
        found = q.states_of_ids(session, ids, sync)
        seen = {sf_id for sf_id, _, _ in found}
        where = f" in sync {sync!r}" if sync else ""
        problems += [f"{sf_id}: no such lead{where}" for sf_id in ids if sf_id not in seen]
        for sf_id, name, state in sorted(found):
            if state == LeadState.ACCEPTED.value:
                problems.append(
                    f"{sf_id} ({name}) is accepted: SimZ already took it; it is never requeued"
                )
            elif state not in REQUEUE_STATES:
                problems.append(
                    f"{sf_id} ({name}) is {state}: only {', '.join(REQUEUE_STATES)} "
                    "leads can be requeued"
                )
            elif state not in states:
                problems.append(
                    f"{sf_id} ({name}) is {state}, not one of the selected states "
                    f"({', '.join(states)})"
                )
    counts = q.count_matching(session, q.lead_filter(sync=sync, states=states, salesforce_ids=ids))
    ordered = sorted(counts.items(), key=lambda kv: (kv[0][0], STATE_ORDER.index(kv[0][1])))
    return RequeuePreview([RequeueCount(s, st, n) for (s, st), n in ordered], problems)


def preview_requeue(
    session_factory: sessionmaker[Session],
    *,
    sync: str | None = None,
    states: Iterable[str] | None = None,
    salesforce_ids: Iterable[str] | None = None,
) -> RequeuePreview:
    """What :func:`requeue` with the same selectors would move, for the confirmation prompt.

    Raises ValueError for a bare selection or a state that is not requeueable.
    """
    chosen, ids = _selection(sync, states, salesforce_ids)
    with session_factory() as session:
        return _preview(session, sync, chosen, ids)


def requeue(
    session_factory: sessionmaker[Session],
    *,
    sources: Callable[[str], RecordSource],
    syncs: Mapping[str, SyncConfig],
    sync: str | None = None,
    states: Iterable[str] | None = None,
    salesforce_ids: Iterable[str] | None = None,
    reason: str = DEFAULT_REASON,
    actor: str,
    now: Callable[[], datetime] = utcnow,
) -> RequeueResult:
    """Fetch the selected uncertain/failed/rejected leads' records again, re-apply the rules, and
    move each to ``queued`` (new payload), ``skipped`` or ``invalid`` (with the reason).

    Without ``states`` every requeueable state is selected. Raises ValueError for
    a bare selection; :class:`RequeueRefused` (moving nothing) when an explicit
    Salesforce Id is unknown or names a lead this call would not move, or a lead's
    sync is not configured; :class:`SalesforceUnreachable` (moving nothing) when
    the records cannot be fetched. The moves happen in one transaction.
    """
    chosen, ids = _selection(sync, states, salesforce_ids)
    reason = (reason or DEFAULT_REASON).strip() or DEFAULT_REASON
    trail_reason = f"{reason} (by {actor or 'unknown'})"[:500]
    with session_factory() as session:
        preview = _preview(session, sync, chosen, ids)
        if preview.problems:
            raise RequeueRefused(preview.problems)
        selected = recheck_store.select_leads(session, sync=sync, states=chosen, salesforce_ids=ids)
    unknown = sorted({lead.sync_name for lead in selected} - set(syncs))
    if unknown:
        raise RequeueRefused(
            [
                f"sync {name!r} is not in the configuration: its records cannot be fetched again"
                for name in unknown
            ]
        )
    checked = refetch.recheck(
        session_factory, sources, syncs, selected, reason=trail_reason, now=now
    )
    moved = [
        RequeueCount(name, source, count)
        for (name, source, target), count in sorted(checked.moved.items())
        if target == LeadState.QUEUED.value
    ]
    held = [
        HeldLead(o.lead.sync_name, o.lead.salesforce_id, o.lead.state, o.target.value, o.note or "")
        for o in checked.held
    ]
    result = RequeueResult(
        moved, reason, actor, now(), skipped_by_filter=checked.changed_meanwhile, held=held
    )
    log.info(
        "leads requeued",
        leads=result.total,
        held=len(held),
        by_state={c.state: c.leads for c in moved},
        sync=sync,
        ids=len(ids) if ids else 0,
        actor=actor,
        reason=reason,
    )
    return result


# --------------------------------------------------------------------------- release, discard

RELEASE_REASON = "operator release"
DISCARD_REASON = "operator discard"
DISCARD_NOTE = "discarded by an operator after the blast-radius guard held it"


@dataclass(frozen=True)
class HeldResult:
    sync: str
    leads: int
    reason: str
    actor: str
    at: datetime


def count_held(session_factory: sessionmaker[Session], sync: str) -> int:
    """How many leads of ``sync`` the blast-radius guard holds now."""
    with session_factory() as session:
        counts = q.count_matching(session, q.lead_filter(sync=sync, states=[HELD]))
    return sum(counts.values())


def _settle_held(
    session_factory: sessionmaker[Session],
    sync: str,
    target: LeadState,
    reason: str,
    actor: str,
    now: Callable[[], datetime],
    note: str | None,
) -> HeldResult:
    check_transition(LeadState.HELD, target)
    trail = f"{reason} (by {actor or 'unknown'})"[:500]
    at = now()
    with session_factory.begin() as session:
        moved = q.move_state(
            session,
            q.lead_filter(sync=sync),
            HELD,
            target.value,
            reason=trail,
            at=at,
            note=note,
        )
    return HeldResult(sync, moved, reason, actor, at)


def release(
    session_factory: sessionmaker[Session],
    *,
    sync: str,
    actor: str,
    reason: str = RELEASE_REASON,
    now: Callable[[], datetime] = utcnow,
) -> HeldResult:
    """Move every held lead of ``sync`` to ``queued``, in one transaction, so it is delivered.

    The UPDATE repeats ``state = 'held'``: run twice (or after a crash), it
    moves only what is still held, so no lead is queued, nor sent, twice.
    """
    reason = (reason or RELEASE_REASON).strip() or RELEASE_REASON
    result = _settle_held(session_factory, sync, LeadState.QUEUED, reason, actor, now, None)
    log.warning("held leads released", sync=sync, leads=result.leads, actor=actor, reason=reason)
    return result


def discard(
    session_factory: sessionmaker[Session],
    *,
    sync: str,
    actor: str,
    reason: str = DISCARD_REASON,
    now: Callable[[], datetime] = utcnow,
) -> HeldResult:
    """Move every held lead of ``sync`` to ``skipped``, in one transaction: never sent.

    A discarded lead's record is evaluated again when it changes in Salesforce,
    like any skipped lead.
    """
    reason = (reason or DISCARD_REASON).strip() or DISCARD_REASON
    result = _settle_held(
        session_factory, sync, LeadState.SKIPPED, reason, actor, now, DISCARD_NOTE
    )
    log.warning("held leads discarded", sync=sync, leads=result.leads, actor=actor, reason=reason)
    return result


# --------------------------------------------------------------------------- write-back retry


def failed_writebacks(session_factory: sessionmaker[Session], sync: str) -> int:
    """How many write-backs of ``sync`` have failed (what ``writeback retry`` would move)."""
    with session_factory() as session:
        return writeback_store.count_failed(session, sync)


def retry_writebacks(
    session_factory: sessionmaker[Session],
    sync: str,
    *,
    actor: str,
    now: Callable[[], datetime] = utcnow,
) -> int:
    """Move ``sync``'s failed write-backs back to pending, due now; returns how many."""
    with session_factory.begin() as session:
        moved = writeback_store.retry_failed(session, sync, now())
    log.info("write-backs retried", sync=sync, rows=moved, actor=actor)
    return moved
