"""Per-number locks: one number, one decision at a time, across every agent (PostgreSQL).

Two syncs (or two replicas) may poll records with the same number for the same
agent at the same moment; each checks "is this number already queued or sent?"
and inserts. Without a lock both checks can pass before either insert commits.
The suppression list and the frequency caps are about a number whatever agent
calls it, so the lock is the number's own: callers still name (agent, number)
pairs, and every pair of one number shares one key.
On PostgreSQL the intake takes ``pg_advisory_xact_lock`` on a stable 64-bit
hash of each number of the page before that check, in ascending
key order (so two intakes never deadlock), and holds it until the page commits;
the send gate takes the same keys with ``pg_try_advisory_xact_lock`` and leaves
a lead whose key is busy queued for the next cycle (it never waits, so it can
never be part of a deadlock either).

SQLite needs no lock: every writing transaction there starts with
``BEGIN IMMEDIATE`` (:mod:`syncd.adapters.db`), so one writer at a time holds
the whole database from its check to its commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

from syncd.adapters.number_param import as_param

AgentPhone = tuple[str, str]

#: The keys go as one JSON text (:mod:`syncd.adapters.number_param`): a driver-side
#: array of 100 keys cost the claim about 0.3 ms of CPU to dump.
_KEYS = "SELECT CAST(value AS BIGINT) AS k FROM json_array_elements_text(CAST(:keys AS JSON))"
_LOCK = text(f"SELECT pg_advisory_xact_lock(k) FROM ({_KEYS} ORDER BY k) AS s")
_TRY = text(f"SELECT k, pg_try_advisory_xact_lock(k) FROM ({_KEYS}) AS s")


def number_key(agent: str, phone: str) -> int:
    """A stable signed 64-bit key for an E.164 number (any agent), the same in every process."""
    del agent  # one number, one lock, whichever agent asks
    digest = hashlib.sha256(f"syncd-number\0{phone}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_numbers(session: Session, pairs: Iterable[AgentPhone]) -> int:
    """Wait for and hold (until commit) the lock of every pair; a no-op off PostgreSQL.

    Returns how many distinct keys were locked.
    """
    if not _postgres(session):
        return 0
    keys = sorted({number_key(agent, phone) for agent, phone in pairs})
    if keys:
        session.execute(_LOCK, {"keys": as_param(keys)}).all()
    return len(keys)


def lock_phones(session: Session, phones: Iterable[str]) -> int:
    """Wait for and hold the lock of each number (e.g. to add it to the suppression list)."""
    return lock_numbers(session, (("", phone) for phone in phones))


def try_lock_numbers(session: Session, pairs: Iterable[AgentPhone]) -> set[AgentPhone]:
    """The pairs whose lock this transaction now holds; every pair off PostgreSQL."""
    wanted = set(pairs)
    if not _postgres(session) or not wanted:
        return wanted
    by_key: dict[int, list[AgentPhone]] = {}
    for pair in wanted:
        by_key.setdefault(number_key(*pair), []).append(pair)
    held: set[AgentPhone] = set()
    for key, taken in session.execute(_TRY, {"keys": as_param(sorted(by_key))}).all():
        if taken:
            held.update(by_key[key])
    return held
