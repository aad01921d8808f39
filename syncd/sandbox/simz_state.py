"""What the SimZ emulator knows and decides, apart from HTTP.

:class:`SimzState` holds agents, credits, pending faults and everything
received, behind one lock, and answers a lead submission the way the spec
says (:meth:`SimzState.submit`). The HTTP layer (``simz_http``) only parses
requests and writes answers, so the rules can be read in one place.

Credits follow the spec's wording for 402: the answer is "insufficient
credits" when the balance is *zero or below*. A batch is checked against the
balance before it is created and then charged one credit per accepted lead,
so a batch larger than the remaining credits is still accepted whole and may
take the balance below zero; the next submission gets 402. (Refusing a batch
with a positive balance would contradict the documented condition, and the
402 body carries ``totalCredits`` "at the time of the check" for exactly this
reason.) Leads rejected per lead cost nothing. ``credits=None`` is unlimited.
"""

from __future__ import annotations

import hmac
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from syncd.sandbox.simz_calls import CallDispatcher, CallSettings
from syncd.sandbox.simz_spec import E164

COMPANY_ID = "cmp_sandbox"

#: Fault kinds and the parameters each takes (with defaults).
FAULT_KINDS: dict[str, dict[str, Any]] = {
    "429": {"retry_after": 1},
    "503": {},
    "500": {"record": True},
    "400": {},
    "413": {},
    "delay": {"seconds": 1.0},
    "trickle": {"seconds": 5.0, "interval": 0.25},
    "custom": {"status": 500, "body": "{}", "retry_after": None},
    "lost_response": {},
    "garbage_200": {},
    "custom_200": {"body": "{}"},
    "reset": {},
}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class Fault:
    """A misbehaviour applied to the next ``remaining`` lead submissions."""

    kind: str
    remaining: int
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "remaining": self.remaining, **self.params}


def make_fault(kind: str, count: int, params: Mapping[str, Any]) -> Fault:
    """Check a fault request and fill in its defaults; ValueError names the problem."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError("count must be a positive integer")
    allowed = FAULT_KINDS[kind]
    unknown = set(params) - set(allowed)
    if unknown:
        raise ValueError(f"fault {kind!r} takes no parameter(s) {', '.join(sorted(unknown))}")
    merged = {**allowed, **params}
    if kind == "delay":
        seconds = merged["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("delay seconds must be a non-negative number")
    if kind == "429":
        retry_after = merged["retry_after"]
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, int | float | str)
        ):
            raise ValueError("retry_after must be seconds, an HTTP date string, or null")
    if kind == "trickle":
        for name in ("seconds", "interval"):
            value = merged[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"trickle {name} must be a positive number")
    if kind == "custom":
        _check_custom(merged)
    if kind == "500" and not isinstance(merged["record"], bool):
        raise ValueError("record must be true or false")
    if kind == "custom_200" and not isinstance(merged["body"], str):
        raise ValueError("body must be a string (sent verbatim)")
    return Fault(kind=kind, remaining=count, params=merged)


def _check_custom(params: Mapping[str, Any]) -> None:
    status = params["status"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError("custom status must be an integer from 100 to 599")
    if not isinstance(params["body"], str):
        raise ValueError("body must be a string (sent verbatim)")
    retry_after = params["retry_after"]
    if retry_after is not None and not isinstance(retry_after, str):
        raise ValueError("retry_after must be a string (sent verbatim) or null")


@dataclass(frozen=True)
class Answer:
    """The HTTP answer to a lead submission: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


def error_body(code: str, message: str) -> dict[str, Any]:
    """An ``ErrorResponse``."""
    return {"success": False, "code": code, "message": message}


class SimzState:
    """Agents, credits, faults and records of one emulator; every method is thread-safe."""

    def __init__(
        self,
        api_key: str,
        credits: int | None,
        agents: Iterable[str],
        calls: CallSettings | None = None,
    ) -> None:
        self.api_key = api_key
        #: Places a call per accepted lead and posts its hook (``simz_calls``).
        self.calls = CallDispatcher(calls)
        self._initial_credits = credits
        self._initial_agents = tuple(agents)
        self._lock = threading.Lock()
        self._agents: set[str] = set()
        self._credits: int | None = None
        self._faults: list[Fault] = []
        self._received: list[dict[str, Any]] = []
        self._counts: Counter[str] = Counter()
        self._accepted_counts: Counter[str] = Counter()
        self._requests: list[dict[str, Any]] = []
        self._violations: list[dict[str, Any]] = []
        self.reset()

    # ---------------------------------------------------------------- control

    def reset(self) -> None:
        """Back to the state the emulator was created with: no records, no faults."""
        with self._lock:
            self._agents = set(self._initial_agents)
            self._credits = self._initial_credits
            self._faults.clear()
            self._received.clear()
            self._counts.clear()
            self._accepted_counts.clear()
            self._requests.clear()
            self._violations.clear()
        self.calls.reset()

    def add_agent(self, agent_id: str) -> None:
        with self._lock:
            self._agents.add(agent_id)

    def remove_agent(self, agent_id: str) -> None:
        with self._lock:
            self._agents.discard(agent_id)

    def agents(self) -> list[str]:
        with self._lock:
            return sorted(self._agents)

    def set_credits(self, credits: int | None) -> None:
        if credits is not None and (isinstance(credits, bool) or not isinstance(credits, int)):
            raise ValueError("credits must be an integer or null (unlimited)")
        with self._lock:
            self._credits = credits

    def credits(self) -> int | None:
        with self._lock:
            return self._credits

    def inject(self, kind: str, count: int = 1, **params: Any) -> None:
        fault = make_fault(kind, count, params)
        with self._lock:
            self._faults.append(fault)

    def pending_faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._faults]

    def clear_faults(self) -> None:
        """Drop every pending fault; what was received is kept."""
        with self._lock:
            self._faults.clear()

    def take_fault(self) -> Fault | None:
        """The fault for this submission, if any (first injected, first used)."""
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.pop(0)
            return Fault(fault.kind, 1, dict(fault.params))

    # ---------------------------------------------------------------- records

    def log_request(self, method: str, path: str, status: int | None, **extra: Any) -> None:
        entry = {"method": method, "path": path, "status": status, "at": _now_iso(), **extra}
        with self._lock:
            self._requests.append(entry)

    def log_violation(self, method: str, path: str, problems: list[str]) -> None:
        entry = {"method": method, "path": path, "problems": problems, "at": _now_iso()}
        with self._lock:
            self._violations.append(entry)

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._received]

    def received_counts(self, accepted_only: bool = False) -> dict[str, int]:
        with self._lock:
            return dict(self._accepted_counts if accepted_only else self._counts)

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._requests]

    def violations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(v) for v in self._violations]

    # ---------------------------------------------------------------- the endpoint

    def check_key(self, presented: str | None) -> Answer | None:
        """401 unless the company API key matches."""
        if presented is None:
            return Answer(401, error_body("UNAUTHORIZED", "Missing X-Company-API-Key header"))
        if not hmac.compare_digest(presented.encode(), self.api_key.encode()):
            return Answer(401, error_body("UNAUTHORIZED", "Invalid company API key"))
        return None

    def submit(self, agent_id: str, body: dict[str, Any]) -> Answer:
        """Answer a schema-valid, authenticated submission: 404, 402 or 200.

        Leads whose ``phoneNumber`` is not E.164 are rejected by index; the
        others are accepted, recorded and charged one credit each. When no
        lead is accepted there is no batch: the 200 carries ``batchId: null``.
        With ``options.webhookUrl`` set, each accepted lead's call reports back
        there (:mod:`.simz_calls`), whatever answer the client then gets.
        """
        leads: list[Any] = body["leads"]
        errors: list[dict[str, Any]] = []
        ok: list[bool] = []
        for index, lead in enumerate(leads):
            phone = lead.get("phoneNumber")
            valid = isinstance(phone, str) and E164.match(phone) is not None
            ok.append(valid)
            if not valid:
                errors.append(
                    {
                        "index": index,
                        "code": "INVALID_PHONE_NUMBER",
                        "message": "phoneNumber must be an E.164 number such as +14155552671",
                    }
                )
        accepted = len(leads) - len(errors)
        at = _now_iso()
        placed: list[tuple[Mapping[str, Any], int]] = []
        with self._lock:
            if agent_id not in self._agents:
                return Answer(
                    404, error_body("AGENT_NOT_FOUND", f"Agent {agent_id} not found for company")
                )
            if self._credits is not None and self._credits <= 0:
                return Answer(402, self._insufficient(agent_id, len(leads)))
            batch_id = f"batch_{uuid.uuid4().hex}" if accepted else None
            if self._credits is not None:
                self._credits -= accepted
            for index, lead in enumerate(leads):
                sf_id = lead.get("salesforceId")
                self._received.append(
                    {
                        "agentId": agent_id,
                        "batchId": batch_id if ok[index] else None,
                        "index": index,
                        "accepted": ok[index],
                        "salesforceId": sf_id,
                        "receivedAt": at,
                        "lead": lead,
                    }
                )
                if isinstance(sf_id, str):
                    self._counts[sf_id] += 1
                    if ok[index]:
                        self._accepted_counts[sf_id] += 1
                if ok[index]:
                    placed.append(
                        (lead, self._accepted_counts[sf_id] if isinstance(sf_id, str) else 0)
                    )
        options = body.get("options")
        if isinstance(options, dict):
            self.calls.place(options.get("webhookUrl"), batch_id, placed)
        return Answer(
            200,
            {
                "success": True,
                "batchId": batch_id,
                "accepted": accepted,
                "rejected": len(errors),
                "errors": errors,
            },
        )

    def _insufficient(self, agent_id: str, total: int) -> dict[str, Any]:
        assert self._lock.locked()
        return {
            "success": False,
            "code": "INSUFFICIENT_CREDITS",
            "message": "Insufficient credits. The lead batch was not created.",
            "data": {
                "agentId": agent_id,
                "companyId": COMPANY_ID,
                "totalCredits": self._credits,
                "totalLeads": total,
                "acceptedLeads": 0,
                "rejectedLeads": total,
                "reason": "Company credit balance is zero or below",
                "actionRequired": "Add credits to your SimZ account before resubmitting",
            },
        }
