"""The suppression list's values: what asks for a number to be added, and how late it came (pure).

One global list of numbers nobody may call (docs/safety.md#the-suppression-list).
A number comes on it from an operator (``syncd suppress add``), an imported
scrub file (``syncd suppress import``), a record whose DoNotCall flag is set
(``rules.propagate_do_not_call``), or a suppression source's query. Each entry
says where it came from, when the opt-out was first seen and why.

This module decides, without I/O, which numbers a read of records asks to add
(:func:`do_not_call_opt_outs`) and how late an addition was against
``suppression.max_lag`` (:func:`lag_of`); the adapter stores them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from syncd.domain.mapping import MappedLead, normalise_phone, read_datetime, resolve
from syncd.domain.soql import STAMP_FIELD

OPERATOR = "operator"
DO_NOT_CALL = "do_not_call"
IMPORT = "import"
QUERY = "query"
CALL_OUTCOME = "call_outcome"
#: Every source an entry may name (the table's check constraint lists the same).
SOURCES = (OPERATOR, DO_NOT_CALL, IMPORT, QUERY, CALL_OUTCOME)

#: Who adds the numbers of DoNotCall records, for ``added_by``.
PROPAGATED_BY = "syncd (rules.propagate_do_not_call)"

#: The longest reason an entry keeps (the column's length).
REASON_CHARS = 500


@dataclass(frozen=True)
class OptOut:
    """A number to put on the list unless it is there already (an entry is never overwritten).

    ``seen_at`` is when the opt-out was first seen: the record's SystemModstamp,
    or None for "now" (an operator's or an import's addition).
    """

    phone_e164: str
    source: str
    reason: str
    added_by: str
    record_id: str | None = None
    sync_name: str | None = None
    seen_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {self.source!r}")
        if not self.phone_e164.startswith("+"):
            raise ValueError(f"not an E.164 number: {self.phone_e164!r}")


def do_not_call_reason(lead: MappedLead, sync_name: str) -> str:
    """Why a DoNotCall record's number is on the list, naming the record and the sync."""
    value = lead.do_not_call_unrecognised
    what = (
        "DoNotCall is set"
        if value is None
        else f"DoNotCall value {value!r} is not a callable value (treated as do not call)"
    )
    return f"{what} on record {lead.salesforce_id} of sync {sync_name}"[:REASON_CHARS]


def do_not_call_opt_outs(leads: Iterable[MappedLead], sync_name: str) -> dict[str, OptOut]:
    """The numbers of the records that say DoNotCall, first record per number.

    Any record with a valid number counts, whatever its lead's state (an invalid
    route does not make the opt-out less real), and so does a DoNotCall value
    that was not recognised: it fails closed for the lead, and for the number too.
    ``seen_at`` is the record's SystemModstamp (None when the read had none).
    """
    found: dict[str, OptOut] = {}
    for lead in leads:
        phone = lead.phone_e164
        if not lead.do_not_call or phone is None or phone in found:
            continue
        found[phone] = OptOut(
            phone,
            DO_NOT_CALL,
            do_not_call_reason(lead, sync_name),
            PROPAGATED_BY,
            record_id=lead.salesforce_id[:18] or None,
            sync_name=sync_name,
            seen_at=lead.stamp,
        )
    return found


@dataclass(frozen=True)
class Lag:
    """How long after the opt-out was seen its number was added, and whether that was late."""

    seconds: float
    late: bool


def lag_of(seen_at: datetime, added_at: datetime, max_lag: timedelta) -> Lag:
    """``added_at - seen_at`` (never negative: clocks differ), late when over ``max_lag``."""
    lag = max(added_at - seen_at, timedelta(0))
    return Lag(lag.total_seconds(), lag > max_lag)


@dataclass
class Scan:
    """A scrub file's numbers read so far: E.164 by first line, and the lines that were not."""

    numbers: dict[str, int]
    unreadable: list[tuple[int, str]]
    repeated: int = 0

    @classmethod
    def empty(cls) -> Scan:
        return cls({}, [])


def scan_numbers(rows: Iterable[tuple[int, str | None]], region: str, into: Scan) -> Scan:
    """Normalise each (line, value) exactly as a lead's number is; add them to ``into``.

    An empty value or one that is not a valid number is unreadable (with its
    line); a number seen before in the file is counted once (``repeated``).
    """
    for line, value in rows:
        phone = normalise_phone(value, region)
        if phone is None:
            into.unreadable.append((line, (value or "").strip()[:40]))
        elif phone in into.numbers:
            into.repeated += 1
        else:
            into.numbers[phone] = line
    return into


@dataclass(frozen=True)
class SourceQuery:
    """A suppression source as the domain reads it: its name, fields and what it selects."""

    name: str
    object: str
    where: str
    phone_fields: tuple[str, ...]
    region: str

    @property
    def added_by(self) -> str:
        return f"syncd (suppression source {self.name})"

    @property
    def reason(self) -> str:
        return f"returned by suppression source {self.name}: {self.object} where {self.where}"


def source_opt_outs(
    records: Iterable[Mapping[str, Any]], query: SourceQuery
) -> tuple[dict[str, OptOut], datetime | None]:
    """The numbers of a source's records (first record per number), and the newest stamp read.

    Every listed phone field of every record counts; an empty field or a value
    that is no valid number is passed over (nothing to suppress). ``seen_at`` is
    the record's SystemModstamp.
    """
    found: dict[str, OptOut] = {}
    newest: datetime | None = None
    for record in records:
        stamp = read_datetime(resolve(record, STAMP_FIELD))
        if stamp is not None and (newest is None or stamp > newest):
            newest = stamp
        record_id = str(resolve(record, "Id") or "")[:18] or None
        for name in query.phone_fields:
            phone = normalise_phone(resolve(record, name), query.region)
            if phone is None or phone in found:
                continue
            found[phone] = OptOut(
                phone,
                QUERY,
                query.reason[:REASON_CHARS],
                query.added_by,
                record_id=record_id,
                seen_at=stamp,
            )
    return found, newest
