"""Gauges derived from the database: leads by state, uncertain leads, backlog, queue age,
pauses, and the call outcomes still to process or to write back.

Delivery pauses are the exception: ``syncd_paused`` for an API key or an agent
follows :mod:`syncd.services.pause_board`, which delivery keeps up to date as
pauses open, renew and end; the refresh only aligns the board with the table.

The daemon calls :func:`refresh_state_metrics` every ~15 s. It is a handful of
grouped COUNT queries, so it stays cheap however many leads there are. Every
configured sync gets a value for every state (zeros included), so an alert on
``syncd_uncertain_leads > 0`` or on a growing backlog always has a series to
look at; a label set that disappears from the database (a pause lifted, a
backlog drained) is set to 0 rather than left at its last value.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Gauge
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import call_queries, operator_pauses
from syncd.adapters import operator_queries as q
from syncd.adapters.orm import utcnow
from syncd.config import Config
from syncd.domain.states import LeadState
from syncd.metrics import (
    BACKLOG,
    CALL_EVENTS_OLDEST_PENDING,
    CALL_EVENTS_PENDING,
    CALL_WRITEBACKS_PENDING,
    HELD_LEADS,
    LAST_SUCCESSFUL_POLL,
    LEADS_BY_STATE,
    OLDEST_QUEUED,
    PAUSED,
    UNCERTAIN_LEADS,
)
from syncd.services.pause_board import board_for

#: When this process started: the last successful poll of a sync that never polled
#: successfully, so ``SyncdPollStale`` fires once a sync has not polled for its whole
#: threshold since the start, instead of never.
PROCESS_STARTED = time.time()

#: Label value for queued leads that have no agent (should not happen; made visible).
NO_AGENT = "none"
#: ``syncd_paused`` scope of an operator pause: operator_sync or operator_agent.
OPERATOR_SCOPE_PREFIX = "operator_"


def _apply(gauge: Gauge, names: tuple[str, ...], values: dict[tuple[str, ...], float]) -> None:
    """Set every label set in ``values``, and 0 for label sets the gauge had before."""
    for metric in gauge.collect():
        for sample in metric.samples:
            values.setdefault(tuple(sample.labels[name] for name in names), 0.0)
    for labels, value in values.items():
        gauge.labels(*labels).set(value)


def refresh_state_metrics(
    session_factory: sessionmaker[Session],
    config: Config,
    *,
    now: Callable[[], datetime] = utcnow,
) -> None:
    """Set ``syncd_leads``, ``syncd_uncertain_leads``, ``syncd_held_leads``,
    ``syncd_backlog_leads``, ``syncd_oldest_queued_seconds`` and ``syncd_paused`` (polling
    and operator pauses) and the call gauges from the database; SimZ delivery pauses come
    from :mod:`pause_board`."""
    at = now()
    with session_factory() as session:
        counts = q.count_by_state(session)
        backlog = q.backlog_by_agent(session, at)
        sync_states = q.sync_states(session)
        pauses = q.all_pauses(session)
        oldest = q.oldest_queued(session)
        operator = operator_pauses.all_pauses(session)
        events = call_queries.pending_events(session)
        call_writebacks = call_queries.writebacks_waiting(session)

    syncs = [sync.name for sync in config.syncs]
    syncs += sorted({name for name, _ in counts} - set(syncs))
    leads, uncertain, held = _by_state(syncs, counts)
    queued, age = _backlog(config, backlog, oldest, at)
    paused = _paused(session_factory, config, sync_states, pauses, operator, at)
    _apply(LEADS_BY_STATE, ("sync", "state"), leads)
    _apply(UNCERTAIN_LEADS, ("sync",), uncertain)
    _apply(HELD_LEADS, ("sync",), held)
    _apply(BACKLOG, ("sync", "agent"), queued)
    _apply(OLDEST_QUEUED, ("sync", "agent"), age)
    _apply(PAUSED, ("scope", "name"), paused)
    _last_polls(config, sync_states)
    _calls(config, events, call_writebacks, at)


def _last_polls(config: Config, sync_states: Mapping[str, Any]) -> None:
    """``syncd_last_successful_poll_timestamp_seconds`` of every enabled sync: the newest of
    its value in this process, the database's last successful poll (by any replica) and
    the process start (a sync that never polled successfully is stale from the start)."""
    current = {
        sample.labels["sync"]: sample.value
        for metric in LAST_SUCCESSFUL_POLL.collect()
        for sample in metric.samples
    }
    for sync in config.syncs:
        if not sync.enabled:
            continue
        row = sync_states.get(sync.name)
        ok_at = getattr(row, "last_poll_ok_at", None)
        stored = ok_at.timestamp() if ok_at is not None else 0.0
        value = max(current.get(sync.name, 0.0), stored, PROCESS_STARTED)
        LAST_SUCCESSFUL_POLL.labels(sync=sync.name).set(value)


_Values = dict[tuple[str, ...], float]


def _by_state(syncs: list[str], counts: Mapping[tuple[str, str], int]) -> tuple[_Values, ...]:
    """Leads by (sync, state), uncertain and held leads by sync: every state of every sync."""
    leads: _Values = {}
    uncertain: _Values = {}
    held: _Values = {}
    for name in syncs:
        held[(name,)] = float(counts.get((name, LeadState.HELD.value), 0))
        for state in LeadState:
            leads[(name, state.value)] = float(counts.get((name, state.value), 0))
        uncertain[(name,)] = float(counts.get((name, LeadState.UNCERTAIN.value), 0))
    return leads, uncertain, held


def _backlog(
    config: Config,
    backlog: Iterable[Any],
    oldest: Mapping[tuple[str, str | None], datetime],
    at: datetime,
) -> tuple[_Values, _Values]:
    """Queued leads and the age of the oldest, by (sync, agent): every configured agent."""
    queued: _Values = {}
    for sync in config.syncs:
        for agent in sync.agents:
            queued[(sync.name, agent)] = 0.0
    for row in backlog:
        key = (row.sync, row.agent or NO_AGENT)
        queued[key] = queued.get(key, 0.0) + row.queued
    age: _Values = {key: 0.0 for key in queued}
    for (sync_name, agent_id), first in oldest.items():
        age[(sync_name, agent_id or NO_AGENT)] = max(0.0, (at - first).total_seconds())
    return queued, age


def _paused(
    session_factory: sessionmaker[Session],
    config: Config,
    sync_states: Mapping[str, Any],
    pauses: Iterable[Any],
    operator: Iterable[Any],
    at: datetime,
) -> _Values:
    """``syncd_paused``: polling pauses, SimZ delivery pauses and operator pauses."""
    paused: _Values = {}
    for sync in config.syncs:
        row_state = sync_states.get(sync.name)
        until = row_state.paused_until if row_state else None
        paused[("polling", sync.name)] = 1.0 if until is not None and until > at else 0.0
    # Delivery pauses come from the process's pause board (it stays 1 across a
    # renewal); the table only adds pauses opened elsewhere and drops deleted ones.
    pauses = list(pauses)
    board = board_for(session_factory)
    board.reconcile(((p.scope, p.key, p.paused_until) for p in pauses), at)
    for pause in pauses:
        paused[(pause.scope, pause.key)] = 0.0
    for key in set(board.keys()):
        paused[key] = 1.0
    for pause in operator:
        paused[(OPERATOR_SCOPE_PREFIX + pause.scope, pause.name)] = 1.0
    return paused


def _calls(
    config: Config,
    events: call_queries.PendingEvents,
    waiting: Mapping[str, int],
    at: datetime,
) -> None:
    """The webhooks waiting to be processed, the oldest's age, and the calls to write back:
    every sync with ``call_writeback`` (0 included) and any other that has some."""
    CALL_EVENTS_PENDING.set(events.count)
    first = events.oldest_received_at
    CALL_EVENTS_OLDEST_PENDING.set(0.0 if first is None else max(0.0, (at - first).total_seconds()))
    pending: _Values = {(s.name,): 0.0 for s in config.syncs if s.call_writeback is not None}
    for name, count in waiting.items():
        pending[(name,)] = float(count)
    _apply(CALL_WRITEBACKS_PENDING, ("sync",), pending)
