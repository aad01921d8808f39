"""The lines of a lead's history in plain words: state changes, batches, operators' actions.

Pure functions of plain values (no database), shared by ``syncd explain`` and
``syncd audit export``; a dial decision's own inputs are worded by
:mod:`syncd.domain.decision_words`. Phone numbers appear only as their last
four digits here, as in ``syncd leads``: the full number is the audit export's
business, asked for by number.
"""

from __future__ import annotations

from datetime import UTC, datetime


def number_ending(phone: str | None) -> str | None:
    """The last four digits of a number (``4567``), or None."""
    digits = "".join(ch for ch in phone or "" if ch.isdigit())
    return digits[-4:] if digits else None


def _stamp(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def transition_words(
    from_state: str | None, to_state: str, reason: str, batch_id: int | None
) -> str:
    """``queued -> sending: claimed for delivery [batch 7]``; a first state reads ``new``."""
    batch = f" [batch {batch_id}]" if batch_id is not None else ""
    return f"{from_state or 'new'} -> {to_state}: {reason}{batch}"


def decision_header(
    batch_id: int | None, agent: str | None, rules_version: str | None, phone: str | None
) -> str:
    """The first line of a dial decision: where the lead went, by which rules."""
    ending = number_ending(phone)
    parts = [f"dial decision: send to agent {agent or '-'}"]
    if batch_id is not None:
        parts.append(f"in batch {batch_id}")
    if ending:
        parts.append(f"number ending {ending}")
    parts.append(f"rules version {rules_version or 'not recorded'}")
    return ", ".join(parts)


def _answer(
    http_status: int | None,
    outcome: str | None,
    simz_batch_id: str | None,
    accepted: int | None,
    rejected: int | None,
) -> str:
    if http_status is not None:
        words = f"SimZ answered HTTP {http_status}: {outcome}"
    else:
        words = f"no HTTP answer from SimZ: {outcome}"
    found = []
    if simz_batch_id:
        found.append(f"SimZ batch id {simz_batch_id}")
    if accepted is not None or rejected is not None:
        found.append(f"{accepted or 0} accepted, {rejected or 0} rejected")
    return words + (f" ({'; '.join(found)})" if found else "")


def batch_words(
    *,
    batch_id: int,
    agent: str,
    lead_count: int,
    posted_at: datetime | None,
    finished_at: datetime | None,
    http_status: int | None,
    outcome: str | None,
    simz_batch_id: str | None,
    accepted: int | None = None,
    rejected: int | None = None,
) -> str:
    """One POST to SimZ and its answer: ``batch 7 to agent agt_1 (3 leads) posted at ...``."""
    head = f"batch {batch_id} to agent {agent} ({lead_count} lead{'s' if lead_count != 1 else ''})"
    if posted_at is None:
        closed = f", closed {outcome}" if outcome else ""
        return f"{head}: claimed, never posted (nothing was sent){closed}"
    head += f" posted at {_stamp(posted_at)}"
    if outcome is None:
        return f"{head}: no answer recorded yet"
    answered = f", at {_stamp(finished_at)}" if finished_at is not None else ""
    return f"{head}: {_answer(http_status, outcome, simz_batch_id, accepted, rejected)}{answered}"


def action_words(
    actor: str, action: str, scope: str, name: str, reason: str, detail: str | None
) -> str:
    """An operator's action: ``operator ana: resolve (sync web): SimZ has it (detail)``."""
    more = f" ({detail})" if detail else ""
    return f"operator {actor}: {action} ({scope} {name}): {reason}{more}"
