"""The operators' suppression list: add, remove, import and read numbers (``syncd suppress``).

The list is one table of E.164 numbers nobody may call, across every sync and
agent (docs/safety.md#the-suppression-list). An operator's addition or
removal, and each import, is written to ``operator_actions`` (scope
``number``) with who did it and why, in the same transaction as the change,
and logged. A number already on the list keeps its entry: an addition never
overwrites the first evidence of an opt-out.

An import reads a scrub file (a national or state Do Not Call list, a
vendor's export) in chunks of :data:`IMPORT_CHUNK` rows, one transaction each:
stopping it half-way keeps what was committed, and running it again adds only
what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import operator_pauses, suppression_store
from syncd.adapters.orm import utcnow
from syncd.adapters.suppression_store import SuppressionEntry
from syncd.domain.suppression import IMPORT, OPERATOR, OptOut, Scan, scan_numbers
from syncd.logs import get_logger

log = get_logger(__name__)

#: ``operator_actions.scope`` of the list's changes.
SCOPE_NUMBER = "number"
#: Rows of a scrub file per transaction.
IMPORT_CHUNK = 1_000
#: Unreadable lines an import reports one by one (the rest are counted).
UNREADABLE_SHOWN = 50


@dataclass(frozen=True)
class AddOutcome:
    """``entry`` is the number's entry now; ``created`` is False if it was already listed."""

    entry: SuppressionEntry
    created: bool


def _check(reason: str, actor: str) -> None:
    if not reason.strip():
        raise ValueError("a reason is required")
    if not actor.strip():
        raise ValueError("who does it (actor) is required")


def add(
    session_factory: sessionmaker[Session],
    phone: str,
    *,
    reason: str,
    actor: str,
    now: Callable[[], datetime] = utcnow,
) -> AddOutcome:
    """Put an E.164 number on the list (source ``operator``); idempotent."""
    _check(reason, actor)
    at = now()
    opt_out = OptOut(phone, OPERATOR, reason.strip(), actor.strip())
    with session_factory.begin() as session:
        added = suppression_store.add(session, [opt_out], now)
        if not added:
            existing = suppression_store.suppressed_among(session, [phone])[phone]
            return AddOutcome(existing, created=False)
        operator_pauses.record_action(
            session,
            at=at,
            actor=opt_out.added_by,
            action="suppress",
            scope=SCOPE_NUMBER,
            name=phone,
            reason=opt_out.reason,
        )
    log.warning("number suppressed by an operator", reason=opt_out.reason, actor=opt_out.added_by)
    return AddOutcome(added[0], created=True)


def remove(
    session_factory: sessionmaker[Session],
    phone: str,
    *,
    reason: str,
    actor: str,
    now: Callable[[], datetime] = utcnow,
) -> SuppressionEntry | None:
    """Take a number off the list; the entry removed, or None when it was not listed."""
    _check(reason, actor)
    at = now()
    with session_factory.begin() as session:
        entry = suppression_store.remove(session, phone)
        if entry is None:
            return None
        operator_pauses.record_action(
            session,
            at=at,
            actor=actor.strip(),
            action="unsuppress",
            scope=SCOPE_NUMBER,
            name=phone,
            reason=reason.strip(),
            detail=f"was listed by {entry.added_by} at {entry.added_at.isoformat()} "
            f"({entry.source}): {entry.reason}",
        )
    log.warning(
        "number taken off the suppression list by an operator",
        reason=reason.strip(),
        actor=actor.strip(),
        source=entry.source,
    )
    return entry


@dataclass
class ImportResult:
    """What an import did: numbers added, already listed (or repeated in the file), unreadable."""

    rows: int = 0
    added: int = 0
    already: int = 0
    unreadable: int = 0
    unreadable_lines: list[tuple[int, str]] = field(default_factory=list)


def import_numbers(
    session_factory: sessionmaker[Session],
    rows: Iterable[tuple[int, str | None]],
    *,
    region: str,
    reason: str,
    actor: str,
    source_name: str,
    progress: Callable[[ImportResult], None] | None = None,
    now: Callable[[], datetime] = utcnow,
) -> ImportResult:
    """Add the numbers of (line, value) rows, source ``import``, a chunk per transaction.

    Values are normalised with ``region`` exactly as leads' numbers are. The
    audit trail gets one row when the import ends (``source_name`` and counts).
    """
    _check(reason, actor)
    result = ImportResult()
    try:
        for chunk in _chunks(rows, IMPORT_CHUNK):
            scan = scan_numbers(chunk, region, Scan.empty())
            opt_outs = [
                OptOut(phone, IMPORT, reason.strip(), actor.strip()) for phone in scan.numbers
            ]
            with session_factory.begin() as session:
                added = suppression_store.add(session, opt_outs, now)
            _count(result, len(chunk), scan, len(added))
            if progress is not None:
                progress(result)
    finally:  # what was committed is audited, also when the file turns out unreadable
        if result.rows:
            _audit_import(session_factory, result, source_name, reason, actor, now())
    return result


def _audit_import(
    session_factory: sessionmaker[Session],
    result: ImportResult,
    source_name: str,
    reason: str,
    actor: str,
    at: datetime,
) -> None:
    with session_factory.begin() as session:
        operator_pauses.record_action(
            session,
            at=at,
            actor=actor.strip(),
            action="suppress_import",
            scope=SCOPE_NUMBER,
            name=source_name,
            reason=reason.strip(),
            detail=f"{result.rows} rows: {result.added} added, {result.already} already listed, "
            f"{result.unreadable} unreadable",
        )
    log.warning(
        "numbers imported to the suppression list",
        file=source_name,
        added=result.added,
        already=result.already,
        unreadable=result.unreadable,
        actor=actor.strip(),
    )


def _chunks(
    rows: Iterable[tuple[int, str | None]], size: int
) -> Iterator[list[tuple[int, str | None]]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _count(result: ImportResult, rows: int, scan: Scan, added: int) -> None:
    result.rows += rows
    result.added += added
    result.already += len(scan.numbers) - added + scan.repeated
    result.unreadable += len(scan.unreadable)
    room = UNREADABLE_SHOWN - len(result.unreadable_lines)
    result.unreadable_lines.extend(scan.unreadable[: max(room, 0)])


def find(session_factory: sessionmaker[Session], phone: str) -> SuppressionEntry | None:
    """The number's entry, or None when it is not on the list."""
    with session_factory() as session:
        return suppression_store.suppressed_among(session, [phone]).get(phone)


def count(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return suppression_store.count(session)


def listed(session_factory: sessionmaker[Session], limit: int | None) -> list[SuppressionEntry]:
    """The newest entries first (at most ``limit``)."""
    with session_factory() as session:
        return suppression_store.listed(session, limit=limit)


def export(session_factory: sessionmaker[Session]) -> Iterator[SuppressionEntry]:
    """Every entry in number order, read in chunks (for ``syncd suppress export``)."""
    with session_factory() as session:
        yield from suppression_store.all_entries(session)
