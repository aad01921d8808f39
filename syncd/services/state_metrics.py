"""Gauges derived from the database: leads by state, uncertain leads, backlog, pauses.

The daemon calls :func:`refresh_state_metrics` every ~15 s. It is a handful of
grouped COUNT queries, so it stays cheap however many leads there are. Every
configured sync gets a value for every state (zeros included), so an alert on
``syncd_uncertain_leads > 0`` or on a growing backlog always has a series to
look at; a label set that disappears from the database (a pause lifted, a
backlog drained) is set to 0 rather than left at its last value.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prometheus_client import Gauge
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import operator_queries as q
from syncd.adapters.orm import utcnow
from syncd.config import Config
from syncd.domain.states import LeadState
from syncd.metrics import BACKLOG, HELD_LEADS, LEADS_BY_STATE, PAUSED, UNCERTAIN_LEADS

#: Label value for queued leads that have no agent (should not happen; made visible).
NO_AGENT = "none"


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
    ``syncd_backlog_leads`` and ``syncd_paused`` from the database."""
    at = now()
    with session_factory() as session:
        counts = q.count_by_state(session)
        backlog = q.backlog_by_agent(session, at)
        sync_states = q.sync_states(session)
        pauses = q.all_pauses(session)

    syncs = [sync.name for sync in config.syncs]
    syncs += sorted({name for name, _ in counts} - set(syncs))

    leads: dict[tuple[str, ...], float] = {}
    uncertain: dict[tuple[str, ...], float] = {}
    held: dict[tuple[str, ...], float] = {}
    for name in syncs:
        held[(name,)] = float(counts.get((name, LeadState.HELD.value), 0))
        for state in LeadState:
            leads[(name, state.value)] = float(counts.get((name, state.value), 0))
        uncertain[(name,)] = float(counts.get((name, LeadState.UNCERTAIN.value), 0))

    queued: dict[tuple[str, ...], float] = {}
    for sync in config.syncs:
        for agent in sync.agents:
            queued[(sync.name, agent)] = 0.0
    for row in backlog:
        key = (row.sync, row.agent or NO_AGENT)
        queued[key] = queued.get(key, 0.0) + row.queued

    paused: dict[tuple[str, ...], float] = {}
    for sync in config.syncs:
        row_state = sync_states.get(sync.name)
        until = row_state.paused_until if row_state else None
        paused[("polling", sync.name)] = 1.0 if until is not None and until > at else 0.0
    for pause in pauses:
        paused[(pause.scope, pause.key)] = 1.0 if pause.paused_until > at else 0.0

    _apply(LEADS_BY_STATE, ("sync", "state"), leads)
    _apply(UNCERTAIN_LEADS, ("sync",), uncertain)
    _apply(HELD_LEADS, ("sync",), held)
    _apply(BACKLOG, ("sync", "agent"), queued)
    _apply(PAUSED, ("scope", "name"), paused)
