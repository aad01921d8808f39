"""Faults injected into the Salesforce emulator's REST calls, and the answers they give.

A fault is used up by the next matching calls (``count``); ``only`` (a path
prefix after ``/services/data/vXX.X``) limits it to some calls, e.g. the
write-back's collections updates. Most faults replace the answer
(:func:`fault_reply`); ``delay`` waits first, and ``malformed_json`` and
``next_records_url`` spoil the real answer afterwards (:func:`spoil`).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from syncd.sandbox.sf_reply import Reply, error_reply, json_reply

FAULT_KINDS = (
    "INVALID_SESSION_ID",
    "REQUEST_LIMIT_EXCEEDED",
    "500",
    "503",
    "delay",
    "malformed_json",
    "next_records_url",
)
INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
LIMIT_EXCEEDED = [
    {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
]
CONCURRENT_LIMIT_EXCEEDED = [
    {
        "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
        "errorCode": "REQUEST_LIMIT_EXCEEDED",
    }
]


@dataclass
class Fault:
    kind: str
    remaining: int
    params: dict[str, Any]


class FaultQueue:
    """Injected faults in the order they were injected. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def inject(self, kind: str, count: int = 1, **params: Any) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; use one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(Fault(kind, count, dict(params)))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"kind": f.kind, "remaining": f.remaining, "params": dict(f.params)}
                for f in self._faults
            ]

    def take(self, rest: str) -> Fault | None:
        """The first fault that applies to a call of ``rest``, used up by one."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                only = fault.params.get("only")
                if only is not None and not rest.startswith(str(only)):
                    continue
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.pop(index)
                return fault
            return None


def fault_reply(fault: Fault) -> Reply | None:
    """The answer that replaces the real one, if any (``delay`` sleeps, then answers None)."""
    if fault.kind == "delay":
        time.sleep(float(fault.params.get("seconds", 1.0)))
    elif fault.kind == "INVALID_SESSION_ID":
        return json_reply(401, INVALID_SESSION)
    elif fault.kind == "REQUEST_LIMIT_EXCEEDED":
        if fault.params.get("limit", "daily") == "concurrent":
            return json_reply(403, CONCURRENT_LIMIT_EXCEEDED)
        return json_reply(403, LIMIT_EXCEEDED)
    elif fault.kind == "500":
        return error_reply(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred.")
    elif fault.kind == "503":
        return error_reply(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable.")
    return None


def spoil(fault: Fault, reply: Reply) -> Reply:
    """The real answer as ``malformed_json`` (cut in half) or ``next_records_url`` leave it."""
    if fault.kind == "malformed_json" and reply.status < 300:
        return Reply(200, reply.body[: max(1, len(reply.body) // 2)] or b"{")
    if fault.kind == "next_records_url" and reply.status == 200:
        payload = json.loads(reply.body)
        payload["nextRecordsUrl"] = str(fault.params.get("url", ""))
        payload["done"] = False
        return json_reply(200, payload)
    return reply
