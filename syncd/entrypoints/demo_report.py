"""What ``syncd demo`` tells at the end: the summary read back from the database, as lines.

Kept apart from the run itself (:mod:`.demo_runner`) so that the wording of
the report can be read, and changed, in one place; the end-to-end test of
the demo checks these lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from syncd.adapters.orm import Batch, Lead, Writeback
from syncd.domain.states import LeadState
from syncd.entrypoints.demo_calls import CallsSummary, render_calls

STATE_ORDER = tuple(state.value for state in LeadState)


@dataclass
class DemoSummary:
    """What the demo did, read back from the database and the SimZ emulator."""

    workdir: Path
    config_path: Path
    database_path: Path
    seeded: int
    added: int
    idle: bool
    elapsed: float
    states: dict[str, int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)
    uncertain_ids: list[str] = field(default_factory=list)
    simz_received: int = 0
    simz_received_twice: int = 0
    polls: int = 0
    writebacks: dict[str, int] = field(default_factory=dict)
    written: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: The calls SimZ reported back and the Tasks on the records (None: not reached).
    calls: CallsSummary | None = None

    @property
    def leads(self) -> int:
        return sum(self.states.values())

    @property
    def batch_count(self) -> int:
        return sum(self.batches.values())


def read_outcomes(database_url: str, summary: DemoSummary) -> Sequence[Any]:
    """Fill in the states, batches, uncertain leads and write-backs of ``summary``.

    Returns the written-back leads (Salesforce Id, state) in the order they were stored.
    """
    from syncd.adapters.db import make_engine, make_session_factory

    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            by_state = dict(
                session.execute(select(Lead.state, func.count()).group_by(Lead.state)).all()
            )
            summary.states = {state: int(by_state.get(state, 0)) for state in STATE_ORDER}
            outcomes = session.execute(
                select(Batch.outcome, func.count()).group_by(Batch.outcome)
            ).all()
            summary.batches = {str(o or "in flight"): int(n) for o, n in sorted(outcomes)}
            summary.uncertain_ids = list(
                session.scalars(
                    select(Lead.salesforce_id)
                    .where(Lead.state == LeadState.UNCERTAIN.value)
                    .order_by(Lead.id)
                )
            )
            summary.writebacks = dict(
                session.execute(
                    select(Writeback.status, func.count()).group_by(Writeback.status)
                ).all()
            )
            written = session.execute(
                select(Lead.salesforce_id, Lead.state)
                .join(Writeback, Writeback.lead_id == Lead.id)
                .where(Writeback.status == "done")
                .order_by(Lead.id)
            ).all()
    finally:
        engine.dispose()
    return written


def describe_batch(row: Batch) -> str:
    """One progress line for a finished batch, in words an operator would use."""
    leads = f"{row.lead_count} lead{'' if row.lead_count == 1 else 's'}"
    head = f"batch {row.id} -> {row.agent_id}: {leads}, "
    if row.outcome == "abandoned":
        return (
            f"{head}not sent: claimed ahead, then the answer before it stopped delivery; "
            "queued again"
        )
    status = f"HTTP {row.http_status}" if row.http_status is not None else "no answer"
    outcome = row.outcome
    if outcome == "accepted":
        rejected = f", {row.rejected} rejected" if row.rejected else ""
        return f"{head}{status}: {row.accepted} accepted{rejected}"
    if outcome == "retry":
        return f"{head}{status}: nothing was queued; back to queued until Retry-After passes"
    if outcome == "uncertain":
        return (
            f"{head}{status}: the answer was lost; {row.lead_count} leads uncertain "
            "(never resent on their own)"
        )
    return f"{head}{status}: {outcome}"


def _clip(value: Any, width: int = 24) -> str:
    """A field value short enough for one summary line."""
    text = "null" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def render_summary(summary: DemoSummary, prefix: str = "syncd") -> list[str]:
    """The closing report: states, batches, an uncertain lead and the commands to explore."""
    width = max(len(state) for state in STATE_ORDER)
    out = [
        "",
        f"done in {summary.elapsed:.1f} s"
        + ("" if summary.idle else " (stopped by the time limit: the outbox was not idle)"),
        "",
        f"leads by state ({summary.leads} records: {summary.seeded} seeded + "
        f"{summary.added} added during the run)",
    ]
    out += [f"  {state:<{width}}  {summary.states.get(state, 0)}" for state in STATE_ORDER]
    by_outcome = ", ".join(f"{outcome} {n}" for outcome, n in summary.batches.items())
    out += [
        "",
        f"batches: {summary.batch_count} ({by_outcome})",
        f"SimZ received {summary.simz_received} distinct leads; "
        + (
            "none of them twice"
            if summary.simz_received_twice == 0
            else f"{summary.simz_received_twice} MORE THAN ONCE"
        ),
    ]
    if summary.writebacks:
        counts = ", ".join(f"{status} {n}" for status, n in sorted(summary.writebacks.items()))
        out += ["", f"outcomes written back to the Salesforce records ({counts}), e.g.:"]
        for sf_id, values in summary.written:
            shown = "  ".join(f"{name}={_clip(value)}" for name, value in values.items())
            out.append(f"  {sf_id}  {shown}")
    out += render_calls(summary.calls)
    config = summary.config_path
    if summary.uncertain_ids:
        first = summary.uncertain_ids[0]
        out += [
            "",
            f"an uncertain lead: {first}",
            "  Its request reached SimZ but the answer was lost, so nobody knows whether",
            "  SimZ queued it. syncd never resends it by itself (a person might be called",
            "  twice). Once SimZ confirms it does not have it, an operator requeues it:",
            f"    {prefix} requeue -c {config} --id {first}",
        ]
    if not summary.workdir.exists():
        out += ["", "the folder was removed (--no-keep); run without it to explore the database"]
        return out
    out += ["", "explore what the demo left behind:"]
    out += [
        f"    {prefix} status -c {config}",
        f"    {prefix} leads -c {config} --state uncertain",
        f"    {prefix} leads -c {config} --state skipped --state invalid",
    ]
    if summary.uncertain_ids:
        out.append(f"    {prefix} leads -c {config} --id {summary.uncertain_ids[0]} --history")
    out.append(f"  database: {summary.database_path} (SQLite)")
    out.append(f"  remove the folder when done: rm -rf {summary.workdir}")
    return out
