"""What the operator use cases share: the lead states in display order, and JSON values."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from syncd.domain.states import REQUEUEABLE, LeadState
from syncd.logs import get_logger

#: The operator use cases log under the package's name.
log = get_logger("syncd.services.operator")

#: All states, in the order the CLI shows them.
STATE_ORDER: tuple[str, ...] = tuple(state.value for state in LeadState)
#: States ``requeue`` may move, in the order the CLI shows them.
REQUEUE_STATES: tuple[str, ...] = tuple(state.value for state in LeadState if state in REQUEUEABLE)
HELD = LeadState.HELD.value


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
