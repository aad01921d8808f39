"""What every part of the ledger shares: the tables, the one conflict error, the audit rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    any_,
    bindparam,
    insert,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from syncd.adapters.number_param import as_param, id_array
from syncd.adapters.orm import Lead, LeadTransition
from syncd.domain.outcome import REASON_CHARS, bounded

LEADS: Table = Lead.__table__  # type: ignore[assignment]
TRANSITIONS: Table = LeadTransition.__table__  # type: ignore[assignment]
CHUNK = 900  # stays under every backend's bound-parameter limit


class LedgerConflict(RuntimeError):
    """A lead was not in the state its caller read: a bug, never papered over."""


def chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def trail(
    session: Session,
    rows: Iterable[tuple[int, str | None, str, str]],
    now: datetime,
    batch_id: int | None = None,
) -> None:
    """Audit rows ``(lead_id, from, to, reason)``, each with its own reason (executemany)."""
    params = [
        {
            "lead_id": lead_id,
            "from_state": source,
            "to_state": target,
            "reason": bounded(reason, REASON_CHARS),
            "batch_id": batch_id,
            "at": now,
        }
        for lead_id, source, target, reason in rows
    ]
    if params:
        session.connection().execute(insert(TRANSITIONS), params)


def bind_processor(dialect: Dialect, column: str) -> Callable[[Any], Any]:
    """What SQLAlchemy applies to a value bound to ``leads.<column>`` on this dialect."""
    column_type = LEADS.c[column].type
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    return processor if processor is not None else _unchanged


def result_processor(dialect: Dialect, column: str) -> Callable[[Any], Any]:
    """What SQLAlchemy applies to a value of ``leads.<column>`` read on this dialect."""
    column_type = LEADS.c[column].type
    processor = column_type.dialect_impl(dialect).result_processor(dialect, None)
    return processor if processor is not None else _unchanged


def _unchanged(value: Any) -> Any:
    return value


def ids_among(column: ColumnElement[int], ids: Sequence[int]) -> ColumnElement[bool]:
    """PostgreSQL: ``column`` is one of ``ids``, bound as one JSON text (one value to
    dump and a statement compiled and parsed once, whatever the count)."""
    return column == any_(id_array(bindparam(None, as_param(ids), type_=String)))
