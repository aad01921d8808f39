"""``syncd audit export``: every decision and every send for one number (the evidence pack).

Across all syncs and agents: one row per dial decision the send gate recorded
for the number (when, sync, agent, lead, record, batch, SimZ's batch id, the
state the lead left ``sending`` for, the rules version and every input), plus
one row for each send of the number that has no recorded decision (sent before
decisions were recorded), so no call is left out. With them: the bodies of the
rules versions the rows name, the number's suppression-list entry, the
operators' actions about the number, and the calls SimZ's webhooks reported for
it (an opt-out disposition there is the evidence of a suppression of source
``call_outcome``).

Read only, in one session, from the database alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import call_queries
from syncd.adapters import decision_queries as q
from syncd.adapters.call_queries import LeadCall
from syncd.adapters.orm import Batch, DialDecision, Lead, LeadTransition, utcnow
from syncd.adapters.suppression_store import SuppressionEntry, suppressed_among
from syncd.domain.decision_words import decision_words, flatten_inputs, input_columns
from syncd.services.explain_words import action_words
from syncd.services.operator import iso

#: A row of a decision the send gate recorded, and of a send without one.
DECISION_ROW = "decision"
SEND_ROW = "send"
#: In CSV: the number's suppression-list entry and operators' actions, as rows of their own.
SUPPRESSION_ROW = "suppression"
ACTION_ROW = "operator_action"
CALL_ROW = "call"
NO_DECISION = "no dial decision recorded (sent before the send gate recorded decisions)"

CSV_COLUMNS = (
    "kind",
    "decided_at",
    "sync",
    "agent",
    "lead_id",
    "record_id",
    "batch_id",
    "simz_batch_id",
    "outcome",
    "rules_version",
    "explanation",
)


@dataclass(frozen=True)
class AuditRow:
    """One decision (or one send without a recorded decision) for the number."""

    kind: str
    decided_at: datetime
    sync: str
    agent: str | None
    lead_id: int
    record_id: str | None
    batch_id: int | None
    simz_batch_id: str | None
    #: The state the lead left ``sending`` for after this batch; ``sending`` while in flight.
    outcome: str | None
    rules_version: str | None
    inputs: dict[str, Any] | None
    explanation: list[str]


@dataclass(frozen=True)
class RulesBody:
    version: str
    sync: str
    first_seen_at: datetime
    rules: dict[str, Any]


@dataclass(frozen=True)
class ActionRow:
    at: datetime
    actor: str
    action: str
    reason: str
    detail: str | None


@dataclass(frozen=True)
class AuditPack:
    phone_e164: str
    exported_at: datetime
    rows: list[AuditRow]
    rules_versions: list[RulesBody] = field(default_factory=list)
    suppression: SuppressionEntry | None = None
    operator_actions: list[ActionRow] = field(default_factory=list)
    #: The number's calls as the webhooks reported them, oldest first.
    calls: list[LeadCall] = field(default_factory=list)


def export_number(
    session_factory: sessionmaker[Session], phone_e164: str, now: datetime | None = None
) -> AuditPack:
    """The evidence pack of ``phone_e164`` (already E.164), oldest row first."""
    with session_factory() as session:
        decisions = q.decisions_of_number(session, phone_e164)
        decided = {(d.lead_id, d.batch_id) for d in decisions}
        sends = [
            s
            for s in q.sends_of_number(session, phone_e164)
            if (s.lead_id, s.batch_id) not in decided
        ]
        leads = q.leads_by_id(session, {d.lead_id for d in decisions} | {s.lead_id for s in sends})
        batches = q.batches_by_id(
            session, {d.batch_id for d in decisions} | {s.batch_id for s in sends}
        )
        pairs = {
            (lead, batch) for lead, batch in decided | {(s.lead_id, s.batch_id) for s in sends}
        }
        outcomes = q.outcomes_of(session, {(a, b) for a, b in pairs if b is not None})
        rows = [_decision_row(d, leads.get(d.lead_id), batches, outcomes) for d in decisions]
        rows += [_send_row(s, leads[s.lead_id], batches, outcomes) for s in sends]
        versions = q.rules_versions(session, {d.rules_version for d in decisions})
        actions = q.actions_about(session, numbers=[phone_e164])
        return AuditPack(
            phone_e164=phone_e164,
            exported_at=now or utcnow(),
            rows=sorted(rows, key=lambda r: (r.decided_at, r.lead_id, r.batch_id or 0)),
            rules_versions=[
                RulesBody(v.version, v.sync_name, v.first_seen_at, dict(v.rules))
                for v in sorted(versions.values(), key=lambda v: (v.first_seen_at, v.version))
            ],
            suppression=suppressed_among(session, [phone_e164]).get(phone_e164),
            operator_actions=[
                ActionRow(a.at, a.actor, a.action, a.reason, a.detail) for a in actions
            ],
            calls=call_queries.calls_of_number(session, phone_e164),
        )


def _outcome(
    lead: Lead | None, batch_id: int | None, outcomes: dict[tuple[int, int], str]
) -> str | None:
    if lead is None or batch_id is None:
        return None
    found = outcomes.get((lead.id, batch_id))
    if found is None and lead.batch_id == batch_id:
        return lead.state
    return found


def _decision_row(
    row: DialDecision,
    lead: Lead | None,
    batches: dict[int, Batch],
    outcomes: dict[tuple[int, int], str],
) -> AuditRow:
    batch = batches.get(row.batch_id) if row.batch_id is not None else None
    return AuditRow(
        kind=DECISION_ROW,
        decided_at=row.decided_at,
        sync=row.sync_name,
        agent=row.agent_id,
        lead_id=row.lead_id,
        record_id=lead.salesforce_id if lead is not None else None,
        batch_id=row.batch_id,
        simz_batch_id=batch.simz_batch_id if batch is not None else None,
        outcome=_outcome(lead, row.batch_id, outcomes),
        rules_version=row.rules_version,
        inputs=row.inputs,
        explanation=decision_words(row.inputs),
    )


def _send_row(
    row: LeadTransition,
    lead: Lead,
    batches: dict[int, Batch],
    outcomes: dict[tuple[int, int], str],
) -> AuditRow:
    batch = batches.get(row.batch_id) if row.batch_id is not None else None
    return AuditRow(
        kind=SEND_ROW,
        decided_at=row.at,
        sync=lead.sync_name,
        agent=batch.agent_id if batch is not None else lead.agent_id,
        lead_id=lead.id,
        record_id=lead.salesforce_id,
        batch_id=row.batch_id,
        simz_batch_id=batch.simz_batch_id if batch is not None else None,
        outcome=_outcome(lead, row.batch_id, outcomes),
        rules_version=None,
        inputs=None,
        explanation=[NO_DECISION],
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso(value) or ""
    return str(value)


def csv_table(pack: AuditPack) -> tuple[list[str], list[list[str]]]:
    """The pack as one table: the decision and send rows with every input flattened, then
    the suppression-list entry and the operators' actions as rows of their own kind.

    The rules versions' bodies are not in it (they are nested documents): see the JSON.
    """
    flat = [flatten_inputs(row.inputs) if row.inputs is not None else {} for row in pack.rows]
    extra = input_columns(flat)
    table: list[list[str]] = []
    for row, inputs in zip(pack.rows, flat, strict=True):
        base = [
            row.kind,
            row.decided_at,
            row.sync,
            row.agent,
            row.lead_id,
            row.record_id,
            row.batch_id,
            row.simz_batch_id,
            row.outcome,
            row.rules_version,
            "; ".join(row.explanation),
        ]
        table.append([_text(v) for v in base] + [inputs.get(c, "") for c in extra])
    blank = [""] * len(extra)
    if pack.suppression is not None:
        entry = pack.suppression
        said = f"{entry.describe()}; added by {entry.added_by}, seen at {_text(entry.seen_at)}"
        cells = [SUPPRESSION_ROW, entry.added_at, entry.sync_name, None, None, entry.record_id]
        table.append([_text(v) for v in cells] + ["", "", "", "", said] + blank)
    for action in pack.operator_actions:
        said = action_words(
            action.actor, action.action, "number", pack.phone_e164, action.reason, action.detail
        )
        table.append([ACTION_ROW, _text(action.at)] + [""] * 8 + [said] + blank)
    for call in pack.calls:
        cells = [CALL_ROW, call.received_at, call.sync, None, call.lead_id, call.salesforce_id]
        said = call_words(call)
        table.append([_text(v) for v in cells] + ["", "", call.disposition or "", "", said] + blank)
    return [*CSV_COLUMNS, *extra], table


def call_words(call: LeadCall) -> str:
    """One call in words: its key, outcome, disposition, duration and opt-out."""
    said = f"call {call.call_key}: {call.outcome or '-'}, disposition {call.disposition or '-'}"
    if call.raw_disposition and call.raw_disposition != call.disposition:
        said += f" (SimZ: {call.raw_disposition})"
    if call.duration_seconds is not None:
        said += f", {call.duration_seconds}s"
    if call.opt_out:
        said += "; an opt-out: the number was put on the suppression list"
    return said + f"; webhook event {call.event_id}"
