"""Build the poll query of DESIGN section 3, and read Salesforce datetimes.

Pure code. The query never pages with ``LIMIT`` on the cursor: many records
may share one ``SystemModstamp`` and a ``LIMIT`` window could then loop or skip.
Paging is Salesforce's own (``nextRecordsUrl``) over one ordered query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from syncd.config.models import SyncConfig
from syncd.config.types import FieldRef
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


def _paths(refs: Iterable[FieldRef | None]) -> list[str]:
    return [ref.path for ref in refs if ref is not None and ref.path is not None]


def query_fields(sync: SyncConfig) -> list[str]:
    """Every field the mapping, routing and rules read, then ``Id`` and the cursor."""
    mapping = sync.mapping
    fields = _paths(
        [
            mapping.phoneNumber,
            mapping.firstName,
            mapping.lastName,
            mapping.email,
            mapping.campaignType,
            *mapping.customData.values(),
        ]
    )
    if sync.route is not None:
        fields += _paths([sync.route.field])
    if sync.rules.respect_do_not_call:
        fields.append(sync.rules.do_not_call_field)
    tail = {"id", sync.cursor_field.lower()}
    return [*_dedupe(f for f in fields if f.lower() not in tail), "Id", sync.cursor_field]


def build_poll_query(sync: SyncConfig, window: PollWindow) -> str:
    """``SELECT ... FROM <object> WHERE <cursor> >= from AND <cursor> < to ... ORDER BY``."""
    cursor = sync.cursor_field
    where = (
        f"{cursor} >= {format_datetime(window.start)} AND {cursor} < {format_datetime(window.end)}"
    )
    if sync.where and sync.where.strip():
        where += f" AND ({sync.where.strip()})"
    return (
        f"SELECT {', '.join(query_fields(sync))} FROM {sync.object} "
        f"WHERE {where} ORDER BY {cursor}, Id"
    )


_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


def build_ids_query(sync: SyncConfig, record_ids: Iterable[str]) -> str:
    """``SELECT <the poll's fields> FROM <object> WHERE Id IN (...) AND (<where>)``.

    For records named by change events. Anything that is not a 15- or
    18-character Id is refused (it would be pasted into SOQL).
    """
    ids = list(dict.fromkeys(record_ids))
    bad = [value for value in ids if not _RECORD_ID.match(value)]
    if bad:
        raise ValueError(f"not a Salesforce Id: {bad[0]!r}")
    if not ids:
        raise ValueError("no record Ids to read")
    where = f"Id IN ({', '.join(repr(value) for value in ids)})"
    if sync.where and sync.where.strip():
        where += f" AND ({sync.where.strip()})"
    return f"SELECT {', '.join(query_fields(sync))} FROM {sync.object} WHERE {where}"
