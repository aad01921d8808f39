"""Faults the Salesforce emulator's control API can put into its Pub/Sub API.

One handler per kind in :data:`HANDLERS` (a new kind is one function and one
entry); each returns how many streams or subscribes it affected. The state
they change lives in :class:`syncd.sandbox.sf_pubsub.PubSubFaults`.

* ``drop``: end every open stream (UNAVAILABLE).
* ``UNAUTHENTICATED``: expire every session and end every open stream with
  UNAUTHENTICATED.
* ``invalid_replay`` (``count``): the next CUSTOM subscribes fail as corrupted.
* ``expire_replay``: every replay id handed out so far is past retention.
* ``slow`` (``seconds``): wait that long before every response (0 clears it).
* ``unavailable`` (``count``): the next subscribes fail with UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from syncd.sandbox.salesforce import SalesforceEmulator

PubSubFaultHandler = Callable[["SalesforceEmulator", Mapping[str, Any]], int]


def _drop(org: SalesforceEmulator, params: Mapping[str, Any]) -> int:
    return org.pubsub.end_streams(grpc.StatusCode.UNAVAILABLE, "connection reset")


def _unauthenticated(org: SalesforceEmulator, params: Mapping[str, Any]) -> int:
    org.expire_sessions()
    return org.pubsub.end_streams(grpc.StatusCode.UNAUTHENTICATED, "Session expired or invalid")


def _invalid_replay(org: SalesforceEmulator, params: Mapping[str, Any]) -> int:
    count = int(params.get("count", 1))
    with org.bus.cond:
        org.pubsub.faults.invalid_replay += count
    return count


def _expire_replay(org: SalesforceEmulator, params: Mapping[str, Any]) -> int:
    org.bus.expire()
    return 0


def _slow(org: SalesforceEmulator, params: Mapping[str, Any]) -> int:
    with org.bus.cond:
        org.pubsub.faults.delay_seconds = max(0.0, float(params.get("seconds", 1.0)))
    return org.pubsub.open_streams()


def _unavailable(org: SalesforceEmulator, params: Mapping[str, Any]) -> int:
    count = int(params.get("count", 1))
    with org.bus.cond:
        org.pubsub.faults.unavailable += count
    return count


HANDLERS: dict[str, PubSubFaultHandler] = {
    "drop": _drop,
    "UNAUTHENTICATED": _unauthenticated,
    "invalid_replay": _invalid_replay,
    "expire_replay": _expire_replay,
    "slow": _slow,
    "unavailable": _unavailable,
}
PUBSUB_FAULTS = tuple(HANDLERS)


def pubsub_fault(org: SalesforceEmulator, kind: str, params: Mapping[str, Any]) -> int:
    """Apply fault ``kind`` to ``org``'s Pub/Sub API; ``ValueError`` for an unknown kind."""
    handler = HANDLERS.get(kind)
    if handler is None:
        raise ValueError(f"unknown Pub/Sub fault {kind!r}; use one of {', '.join(PUBSUB_FAULTS)}")
    return handler(org, params)
