"""Delivery's SQL: claim a batch, record its outcome, pauses, start-up recovery.

Every function takes an open :class:`~sqlalchemy.orm.Session` inside the
caller's unit of work (``with session_factory.begin() as session``); none
commits. Every state change goes through :mod:`syncd.adapters.ledger`:
set-based (one ``UPDATE`` per target state and one ``INSERT ... SELECT`` of
transitions), so a batch costs a handful of statements, not one per lead;
checked by :func:`syncd.domain.states.check_transition` and guarded in SQL by
the source state, so a lead changed behind our back makes the move fail loudly
instead of silently overwriting it.

The modules, by concern: :mod:`.due` (which queued leads are due),
:mod:`.send_gate` (the gate's reads and writes around its pure decision),
:mod:`.claims` (batch rows and the move to ``sending``), :mod:`.dial_decisions`
(the record of every lead let through, and the rules it was decided by), :mod:`.pauses`
(SimZ's pauses), :mod:`.outcomes` (an answer's plan carried out) and
:mod:`.recovery` (leads a dead process left ``sending``).
"""

from syncd.adapters.outbox.claims import claim, close_batch, mark_posted, rebatch
from syncd.adapters.outbox.common import Claim, ClaimedLead, OutboxConflict, move, reject
from syncd.adapters.outbox.dial_decisions import record_rules_version
from syncd.adapters.outbox.due import queued_agents
from syncd.adapters.outbox.outcomes import Applied, apply_plan
from syncd.adapters.outbox.pauses import (
    SCOPE_AGENT,
    SCOPE_API_KEY,
    ActivePause,
    ClaimPauses,
    active_pauses,
    agent_pause_key,
    claim_pauses,
    clear_pauses,
    pause,
)
from syncd.adapters.outbox.recovery import recover_in_flight

__all__ = [
    "SCOPE_AGENT",
    "SCOPE_API_KEY",
    "ActivePause",
    "Applied",
    "Claim",
    "ClaimPauses",
    "ClaimedLead",
    "OutboxConflict",
    "active_pauses",
    "agent_pause_key",
    "apply_plan",
    "claim",
    "claim_pauses",
    "clear_pauses",
    "close_batch",
    "mark_posted",
    "move",
    "pause",
    "queued_agents",
    "rebatch",
    "record_rules_version",
    "recover_in_flight",
    "reject",
]
