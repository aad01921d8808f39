"""What an event's record Id names: one record, every record of an object, or nothing.

Change events and platform events name the records to read by Id, but not
always with a real one. Salesforce sends a wildcard (the object's key prefix
and ``*``, e.g. ``00Q*``) when a custom field's type conversion changed every
record of the object, and the placeholder ``000000000000000AAA`` in the header
of a GAP_OVERFLOW; a platform event's Id field holds whatever the org's Flow
put there. Only a real Id may be pasted into SOQL; a wildcard can only be
recovered by a poll over time, and the rest names nothing to read.

Pure code: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: A Salesforce record Id: 15 or 18 letters and digits (nothing to escape in SOQL).
RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
#: A key prefix (three characters) and ``*``: every record of that object.
WILDCARD_ID = re.compile(r"[A-Za-z0-9]{3}\*")
#: The placeholder Salesforce puts where no Id can be named (GAP_OVERFLOW).
PLACEHOLDER_ID = "000000000000000AAA"
_PLACEHOLDER = PLACEHOLDER_ID[:15]


@dataclass(frozen=True)
class SortedIds:
    """An event's Id values, sorted by what they name (each kept in its first order)."""

    records: tuple[str, ...] = ()
    wildcards: tuple[str, ...] = ()
    placeholders: int = 0
    invalid: tuple[str, ...] = ()


def is_placeholder(value: str) -> bool:
    """``000000000000000AAA`` (or its 15-character form): an Id that names no record."""
    return RECORD_ID.fullmatch(value) is not None and value[:15] == _PLACEHOLDER


def is_record_id(value: object) -> bool:
    """A value that can name one record (a 15- or 18-character Id, not the placeholder)."""
    return (
        isinstance(value, str)
        and RECORD_ID.fullmatch(value) is not None
        and not (is_placeholder(value))
    )


def sort_ids(values: Iterable[object]) -> SortedIds:
    """Split ``values`` into record Ids, wildcards, placeholders and the rest (as text)."""
    records: dict[str, None] = {}
    wildcards: dict[str, None] = {}
    invalid: dict[str, None] = {}
    placeholders = 0
    for value in values:
        if is_record_id(value):
            records[str(value)] = None
        elif isinstance(value, str) and WILDCARD_ID.fullmatch(value):
            wildcards[value] = None
        elif isinstance(value, str) and is_placeholder(value):
            placeholders += 1
        else:
            invalid[_shown(value)] = None
    return SortedIds(tuple(records), tuple(wildcards), placeholders, tuple(invalid))


def _shown(value: object) -> str:
    """A bad value for a log line: text, cut short (it may be anything a Flow wrote)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
