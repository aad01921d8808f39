"""What a delivery cycle tells the operator: its result, metrics and log lines.

One line per batch, named for what SimZ did with it: ``batch sent`` (accepted),
``nothing sent`` (an answer meaning nothing was queued: a retry, a pause, a
split, a single lead rejected), ``batch sent, outcome unknown: leads uncertain``
(an alert). Leads that spend their attempt budget get their own ``leads failed``
error. A pause is announced once, ``delivery paused`` when it opens, and
``delivery resumed`` when it lifts, through the process's
:class:`~syncd.services.pause_board.PauseBoard` (which also drives
``syncd_paused``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from syncd.adapters.outbox import ActivePause
from syncd.adapters.simz import SimzReply
from syncd.domain.outcome import SCOPE_AGENT, SCOPE_API_KEY, OutcomePlan, agent_pause_key
from syncd.domain.responses import Classified
from syncd.metrics import BATCHES, LEADS_DELIVERED, SIMZ_REQUEST_DURATION
from syncd.services.pause_board import PauseBoard

UNCERTAIN_EVENT = "batch sent, outcome unknown: leads uncertain"
#: Outcomes of answers meaning SimZ queued nothing of the batch.
NOTHING_QUEUED = frozenset({"retry", "paused", "split", "rejected"})


@dataclass
class DeliveryResult:
    """What one delivery cycle of one sync did (counts are leads, ``batches`` are POSTs)."""

    sync: str
    batches: int = 0
    accepted: int = 0
    rejected: int = 0
    requeued: int = 0
    uncertain: int = 0
    failed: int = 0
    paused: bool = False
    errors: list[str] = field(default_factory=list)


class DeliveryReport:
    """Counts, metrics and logs of one delivery cycle of one sync under one API key."""

    def __init__(
        self,
        result: DeliveryResult,
        log: structlog.stdlib.BoundLogger,
        board: PauseBoard,
        sync: str,
        credential: str,
    ) -> None:
        self.result = result
        self.log = log
        self.board = board
        self.sync = sync
        self.credential = credential

    # ------------------------------------------------------------------ batches

    def batch(
        self,
        agent: str,
        batch: int,
        leads: int,
        decision: Classified,
        reply: SimzReply | None,
        plan: OutcomePlan,
    ) -> None:
        """Count one answered batch and its leads, and log one line for it."""
        self.result.batches += 1
        for name, value in plan.counts.items():
            setattr(self.result, name, getattr(self.result, name) + value)
            if value:
                LEADS_DELIVERED.labels(self.sync, name).inc(value)
        BATCHES.labels(self.sync, agent, plan.outcome).inc()
        if reply is not None:
            SIMZ_REQUEST_DURATION.labels(self.sync).observe(reply.duration)
        if plan.error is not None:
            self.result.errors.append(plan.error)
        for warning in plan.warnings:
            self.log.warning("odd SimZ answer", agent=agent, batch=batch, detail=warning)
        fields: dict[str, Any] = {
            "agent": agent,
            "batch": batch,
            "simz_batch_id": plan.batch.simz_batch_id,
            "status": reply.status if reply is not None else None,
            "outcome": plan.outcome,
            "accepted": plan.counts.accepted,
            "rejected": plan.counts.rejected,
            "leads": leads,
            "duration_ms": round(reply.duration * 1000, 1) if reply is not None else None,
        }
        self._batch_line(decision, plan, fields)

    def _batch_line(self, decision: Classified, plan: OutcomePlan, fields: dict[str, Any]) -> None:
        if plan.outcome == "uncertain":
            self.log.error(UNCERTAIN_EVENT, reason=decision.reason, alert=True, **fields)
        elif plan.outcome in NOTHING_QUEUED:
            counts = {"requeued": plan.counts.requeued, "failed": plan.counts.failed}
            self.log.warning("nothing sent", reason=decision.reason, **counts, **fields)
        else:
            self.log.info("batch sent", **fields)
        if plan.counts.failed:
            self.log.error(
                "leads failed",
                agent=fields["agent"],
                batch=fields["batch"],
                leads=plan.counts.failed,
                reason=plan.failure_reason,
                action="check SimZ, then `syncd requeue` the failed leads",
            )

    def abandoned(self, agent: str, batch: int, leads: int, reason: str, *, part: bool) -> None:
        """A batch (or a split part) not sent after all: its leads are back in the queue."""
        self.result.requeued += leads
        LEADS_DELIVERED.labels(self.sync, "requeued").inc(leads)
        if not part:
            BATCHES.labels(self.sync, agent, "abandoned").inc()
        self.log.info(
            "split part not sent" if part else "batch abandoned",
            agent=agent,
            batch=batch,
            leads=leads,
            reason=reason,
        )

    # ------------------------------------------------------------------ pauses

    def still_paused(self, agent: str, pauses: list[ActivePause]) -> bool:
        """The claim found ``agent`` (or its key) paused; True if the key is paused."""
        self.result.paused = True
        for pause in pauses:
            if self.board.open(pause.scope, pause.key, pause.paused_until):
                self._paused_line(agent, pause)
            if pause.http_status != 429:
                until = pause.paused_until.isoformat()
                self.result.errors.append(
                    f"delivery paused ({pause.scope}) until {until}: {pause.reason}"
                )
        return any(pause.scope == SCOPE_API_KEY for pause in pauses)

    def pauses(
        self, agent: str, decision: Classified, plan: OutcomePlan, opened: ActivePause | None
    ) -> None:
        """Keep the pause board (and the paused gauge) in step with what an answer did."""
        if plan.clear_pauses:
            for scope, key in self.board.lifted(self.credential, agent):
                self.log.info("delivery resumed", agent=agent, scope=scope, key=key)
        if opened is None:
            return
        if plan.outcome == "paused":
            self.result.paused = True
        if self.board.open(opened.scope, opened.key, opened.paused_until):
            self._paused_line(agent, opened, decision.action_required)
        else:
            self.log.info(
                "delivery pause extended",
                agent=agent,
                scope=opened.scope,
                status=opened.http_status,
                failures=opened.failures,
                paused_until=opened.paused_until.isoformat(),
            )

    def expire(self, agents: Iterable[str], now: datetime) -> None:
        """Pauses of ``agents`` (and of the key) that the cycle got past without a renewal."""
        keys = [(SCOPE_AGENT, agent_pause_key(self.credential, agent)) for agent in agents]
        if keys:
            keys.append((SCOPE_API_KEY, self.credential))
        for scope, key in self.board.expired(keys, now):
            self.log.info("delivery resumed", scope=scope, key=key)

    def _paused_line(
        self, agent: str, pause: ActivePause, action_required: str | None = None
    ) -> None:
        """``delivery paused``, once per pause: an error, a warning for a rate limit."""
        fields: dict[str, Any] = {
            "agent": agent,
            "scope": pause.scope,
            "status": pause.http_status,
            "reason": pause.reason,
            "failures": pause.failures,
            "paused_until": pause.paused_until.isoformat(),
        }
        if action_required is not None:
            fields["action_required"] = action_required
        if pause.http_status == 429:
            self.log.warning("delivery paused", **fields)
        else:
            self.log.error("delivery paused", **fields)
