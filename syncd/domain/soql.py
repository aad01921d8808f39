"""Build the poll query of docs/design.md section 3 (and the re-fetch by Id), read datetimes.

Pure code. The query never pages with ``LIMIT`` on the cursor: many records
may share one ``SystemModstamp`` and a ``LIMIT`` window could then loop or skip.
Paging is Salesforce's own (``nextRecordsUrl``) over one ordered query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from syncd.domain.window import PollWindow


def format_datetime(value: datetime) -> str:
    """A SOQL datetime literal in UTC, e.g. ``2024-01-31T12:00:00Z`` (no quotes)."""
    if value.tzinfo is None:
        raise ValueError("a SOQL datetime needs an aware datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: str) -> datetime:
    """Read Salesforce's JSON datetime (``2024-01-31T12:00:00.000+0000``) as aware UTC."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _dedupe(fields: Iterable[str]) -> list[str]:
    """Keep the first spelling of every field, comparing case-insensitively."""
    seen: set[str] = set()
    kept: list[str] = []
    for name in fields:
        folded = name.lower()
        if folded not in seen:
            seen.add(folded)
            kept.append(name)
    return kept


#: The record's own modification stamp: every read carries it, whatever the cursor, so
#: the ledger can tell the newer of two reads (docs/design.md#the-newest-read-wins).
STAMP_FIELD = "SystemModstamp"
#: The record's creation time, read by every query: the start of its speed to lead
#: (:mod:`syncd.domain.speed_to_lead`). Never part of the record's digest.
CREATED_FIELD = "CreatedDate"


@dataclass(frozen=True)
class QuerySpec:
    """What the poll query of one sync reads: its object, fields, cursor and condition.

    ``read_fields`` are the paths the mapping, routing and rules read, in that
    order; ``written`` the fields write-back writes (folded to lower case),
    which the query never reads.
    """

    object: str
    cursor_field: str
    read_fields: tuple[str, ...]
    where: str | None = None
    written: frozenset[str] = frozenset()

    @property
    def condition(self) -> str | None:
        """The sync's own ``where``, trimmed, or None when it has none."""
        return self.where.strip() if self.where and self.where.strip() else None


def query_fields(spec: QuerySpec) -> list[str]:
    """Every field the mapping, routing and rules read, then ``Id``, the cursor, the stamp
    and CreatedDate."""
    cursor = spec.cursor_field
    tail = {"id", cursor.lower(), STAMP_FIELD.lower(), CREATED_FIELD.lower()}
    # Fields syncd writes back are never read: each write would look like a change.
    # (The config refuses a mapping that reads one; this keeps the query honest too.)
    kept = (
        f
        for f in spec.read_fields
        if f.lower() not in tail and f.split(".")[0].lower() not in spec.written
    )
    stamp = [] if cursor.lower() == STAMP_FIELD.lower() else [STAMP_FIELD]
    created = [] if cursor.lower() == CREATED_FIELD.lower() else [CREATED_FIELD]
    return [*_dedupe(kept), "Id", cursor, *stamp, *created]


def _window_condition(spec: QuerySpec, window: PollWindow) -> str:
    """``<cursor> >= from AND <cursor> < to``, and the sync's own ``where`` if it has one."""
    cursor = spec.cursor_field
    where = (
        f"{cursor} >= {format_datetime(window.start)} AND {cursor} < {format_datetime(window.end)}"
    )
    if spec.condition is not None:
        where += f" AND ({spec.condition})"
    return where


def build_poll_query(spec: QuerySpec, window: PollWindow) -> str:
    """``SELECT ... FROM <object> WHERE <cursor> >= from AND <cursor> < to ... ORDER BY``."""
    return (
        f"SELECT {', '.join(query_fields(spec))} FROM {spec.object} "
        f"WHERE {_window_condition(spec, window)} ORDER BY {spec.cursor_field}, Id"
    )


def build_sweep_query(spec: QuerySpec, window: PollWindow) -> str:
    """``SELECT Id, <cursor> FROM <object> WHERE ...``: the Ids the poll query matches.

    The reconciliation sweep's read: the same condition as the poll query over
    ``window``, but only the Id and the cursor, so a sweep of many records
    costs the same calls as a poll and a fraction of its bytes.
    """
    cursor = spec.cursor_field
    fields = "Id" if cursor.lower() == "id" else f"Id, {cursor}"
    return (
        f"SELECT {fields} FROM {spec.object} "
        f"WHERE {_window_condition(spec, window)} ORDER BY {cursor}, Id"
    )


def build_count_query(spec: QuerySpec, window: PollWindow) -> str:
    """``SELECT COUNT() FROM <object> WHERE ...``: how many records the poll query reads."""
    return f"SELECT COUNT() FROM {spec.object} WHERE {_window_condition(spec, window)}"


#: A Salesforce record Id: 15 or 18 letters and digits (nothing to escape).
SALESFORCE_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


def build_ids_query(spec: QuerySpec, record_ids: Iterable[str], *, with_where: bool = True) -> str:
    """``SELECT <the poll's fields> FROM <object> WHERE Id IN (...) [AND (<where>)]``.

    The records of the given Ids as a poll would read them now (for change
    events, and for ``requeue``'s re-check); with ``with_where`` only those the
    sync's ``where`` still matches. Ids are deduplicated; anything that is not a
    15- or 18-character Id is refused with ValueError (it would be pasted into SOQL).
    """
    ids = list(dict.fromkeys(record_ids))
    if not ids:
        raise ValueError("no record Ids to read")
    bad = [value for value in ids if not SALESFORCE_ID.fullmatch(value)]
    if bad:
        raise ValueError(f"not a Salesforce Id: {bad[0]!r}")
    quoted = ", ".join(f"'{value}'" for value in ids)
    where = f"Id IN ({quoted})"
    if with_where and spec.condition is not None:
        where += f" AND ({spec.condition})"
    return f"SELECT {', '.join(query_fields(spec))} FROM {spec.object} WHERE {where} ORDER BY Id"
