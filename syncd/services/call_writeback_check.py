"""``check-config --connect`` for call write-back: describe Task (or the synced object).

``mode: tasks`` needs every Task field syncd writes to exist and be
createable by the integration user; ``mode: fields`` needs each configured
field to exist, be updateable and hold its value (outcome, disposition: text
or picklist; called_at: datetime). Each problem is one failing line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncd.config import Config
from syncd.domain.call_writeback import CallFields, call_field_problems, task_problems

if TYPE_CHECKING:
    from syncd.adapters.salesforce import SalesforceSource


def check_call_writeback(config: Config, source: SalesforceSource) -> list[tuple[bool, str]]:
    """(ok, line) for every enabled sync with ``call_writeback``, one object described once."""
    from syncd.adapters.salesforce import SalesforceSourceError

    lines: list[tuple[bool, str]] = []
    described: dict[str, list[dict[str, Any]]] = {}
    for sync in config.syncs:
        calls = sync.call_writeback
        if not sync.enabled or calls is None:
            continue
        sobject = "Task" if calls.mode == "tasks" else sync.object
        try:
            if sobject not in described:
                described[sobject] = source.describe_fields(sobject)
        except SalesforceSourceError as exc:
            lines.append((False, f"call_writeback: FAILED: sync {sync.name}: cannot describe "
                                 f"{sobject}: {exc}"))  # fmt: skip
            continue
        if calls.mode == "tasks":
            problems = task_problems(described[sobject])
            what = "Task fields"
        else:
            chosen = CallFields(
                calls.fields.outcome, calls.fields.disposition, calls.fields.called_at
            )
            problems = call_field_problems(sobject, chosen, described[sobject])
            what = f"{sobject} {', '.join(chosen.names().values())}"
        lines += [(False, f"call_writeback: FAILED: sync {sync.name}: {p}") for p in problems]
        if not problems:
            lines.append((True, f"call_writeback: ok (sync {sync.name}: {what})"))
    return lines
