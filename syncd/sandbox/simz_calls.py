"""The SimZ emulator calls back: one call-outcome hook per accepted lead.

A submission whose ``options.webhookUrl`` is set has, for each accepted lead,
a call placed: after ``delay`` seconds the emulator POSTs the **example
payload** of docs/call-outcomes.md to that URL. The SimZ spec defines no
webhook payload; this shape is an example, not SimZ's contract::

    {"event": "call.completed", "callId", "batchId",
     "lead": {"salesforceId", "phoneNumber", "customData" (as received)},
     "call": {"outcome", "disposition", "durationSeconds", "startedAt", "endedAt",
              "recordingUrl"}}

Hooks go out from one daemon thread through a bounded queue, with httpx, a
short timeout and **one try, no retry** (as many calling vendors do); a
failure is logged and recorded, never retried. The emulator posts to whatever
URL it was given: ``https``, or ``http`` to a loopback host (``allow_http``
lifts that for a receiver on another host of a private network).

Outcomes are drawn by weight (``outcomes``), and an answered call's
disposition too (``dispositions``); other calls have their outcome as the
disposition. With a ``seed``, each call is drawn from its own generator seeded
by (seed, Salesforce Id, how many times that Id was accepted), so a seeded run
repeats whatever the order the batches arrive in.

Faults (each call at most one; ``inject`` for the next N calls, first in
first used, or ``fault_rates`` for a share of all calls):

* ``duplicate``: the same body delivered twice;
* ``out_of_order``: after the hook, a second one of the same call with earlier
  timestamps (half the duration) and another disposition;
* ``unknown_lead``: instead of the hook, one whose correlation value is forged
  (every customData value shaped ``<id>.<n>.<16 hex>`` gets another MAC; with
  none, the Salesforce Id is made up): it must match no lead;
* ``oversized``: the hook with a ``call.transcript`` that takes the body over 64 KiB;
* ``slow``: the body written a few bytes at a time over ``slow_seconds``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import queue
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from syncd.config.base import is_loopback_host

log = structlog.get_logger(__name__)

OUTCOMES = ("answered", "voicemail", "no_answer", "busy")
DISPOSITIONS = ("interested", "callback", "not_interested", "do_not_call", "wrong_number")
HOOK_FAULTS = ("duplicate", "out_of_order", "unknown_lead", "oversized", "slow")
DEFAULT_OUTCOMES: dict[str, float] = {
    "answered": 6,
    "voicemail": 2,
    "no_answer": 1.5,
    "busy": 0.5,
}
DEFAULT_DISPOSITIONS: dict[str, float] = {
    "interested": 3,
    "callback": 2,
    "not_interested": 3,
    "do_not_call": 1,
    "wrong_number": 1,
}
#: Hooks waiting at most; beyond, a hook is dropped (and logged).
QUEUE_LIMIT = 10_000
#: Seconds to connect, write and read one hook (a slow hook gets its own budget).
TIMEOUT = 5.0
#: An oversized body is at least this large.
OVERSIZED_BYTES = 70 * 1024
USER_AGENT = "SimzSandbox/1.0"
_REF = re.compile(r"^([A-Za-z0-9]{15,18}\.[0-9]{1,19}\.)[0-9a-f]{16}$")


@dataclass(frozen=True)
class CallSettings:
    """How the emulator calls back; replace with :meth:`updated`."""

    enabled: bool = True
    delay: float = 1.0
    outcomes: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_OUTCOMES))
    dispositions: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_DISPOSITIONS))
    fault_rates: Mapping[str, float] = field(default_factory=dict)
    seed: int | None = None
    slow_seconds: float = 3.0
    allow_http: bool = False

    def updated(self, changes: Mapping[str, Any]) -> CallSettings:
        """These settings with ``changes``; ValueError names a bad one."""
        unknown = set(changes) - set(self.describe())
        if unknown:
            raise ValueError(f"unknown call setting(s): {', '.join(sorted(unknown))}")
        new = replace(self, **dict(changes))
        new.check()
        return new

    def check(self) -> None:
        for name in ("enabled", "allow_http"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")
        for name in ("delay", "slow_seconds"):
            if not _number(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative number of seconds")
        _check_weights("outcomes", self.outcomes, OUTCOMES)
        _check_weights("dispositions", self.dispositions, DISPOSITIONS)
        for kind, rate in self.fault_rates.items():
            if kind not in HOOK_FAULTS:
                raise ValueError(f"unknown hook fault {kind!r}; one of {', '.join(HOOK_FAULTS)}")
            if not _number(rate) or not 0 <= rate <= 1:
                raise ValueError(f"fault rate of {kind} must be from 0 to 1")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError("seed must be an integer or null")

    def describe(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "delay": self.delay,
            "outcomes": dict(self.outcomes),
            "dispositions": dict(self.dispositions),
            "fault_rates": dict(self.fault_rates),
            "seed": self.seed,
            "slow_seconds": self.slow_seconds,
            "allow_http": self.allow_http,
        }


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_weights(name: str, weights: Mapping[str, float], known: tuple[str, ...]) -> None:
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"{name} must be a non-empty object of weights")
    for key, weight in weights.items():
        if key not in known:
            raise ValueError(f"{name}: unknown value {key!r}; one of {', '.join(known)}")
        if not _number(weight) or weight < 0:
            raise ValueError(f"{name}: the weight of {key} must be a non-negative number")
    if sum(weights.values()) <= 0:
        raise ValueError(f"{name}: at least one weight must be above zero")


def parse_weights(text: str, known: tuple[str, ...]) -> dict[str, float]:
    """``answered=6,voicemail=2`` as weights; ValueError names the problem."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            weights[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise ValueError(f"{part!r} is not name=weight") from None
    _check_weights("weights", weights, known)
    return weights


@dataclass(frozen=True)
class Hook:
    """One POST to make: the URL, the body, when, and the fault it carries."""

    url: str
    body: bytes
    due: float
    call_id: str
    salesforce_id: str | None
    fault: str | None
    generation: int


def _now_iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def example_payload(
    rng: random.Random,
    settings: CallSettings,
    batch_id: str | None,
    lead: Mapping[str, Any],
    forced: tuple[str | None, str | None],
) -> dict[str, Any]:
    """The example call-outcome payload for one accepted lead (docs/call-outcomes.md)."""
    call_id = f"call_{rng.getrandbits(48):012x}"
    outcome, disposition = forced
    if outcome is None:
        outcome = "answered" if disposition else _pick(rng, settings.outcomes)
    if disposition is None:
        disposition = _pick(rng, settings.dispositions) if outcome == "answered" else outcome
    seconds = {"answered": rng.randint(20, 300), "voicemail": rng.randint(15, 40)}.get(outcome, 0)
    ended = datetime.now(UTC).replace(microsecond=0)
    talked = outcome in ("answered", "voicemail")
    return {
        "event": "call.completed",
        "callId": call_id,
        "batchId": batch_id,
        "lead": {
            "salesforceId": lead.get("salesforceId"),
            "phoneNumber": lead.get("phoneNumber"),
            "customData": copy.deepcopy(lead.get("customData", {})),
        },
        "call": {
            "outcome": outcome,
            "disposition": disposition,
            "durationSeconds": seconds,
            "startedAt": _now_iso(ended - timedelta(seconds=seconds)),
            "endedAt": _now_iso(ended),
            "recordingUrl": f"https://recordings.example/{call_id}" if talked else None,
        },
    }


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def faulty_bodies(
    rng: random.Random, payload: dict[str, Any], fault: str | None
) -> list[dict[str, Any]]:
    """The payloads one call sends, in order, under ``fault`` (see the module doc)."""
    if fault == "duplicate":
        return [payload, payload]
    if fault == "out_of_order":
        earlier = copy.deepcopy(payload)
        call = earlier["call"]
        half = int(call["durationSeconds"]) // 2
        started = datetime.fromisoformat(call["startedAt"].replace("Z", "+00:00"))
        call["durationSeconds"] = half
        call["endedAt"] = _now_iso(started + timedelta(seconds=half))
        others = [d for d in DISPOSITIONS if d != call["disposition"]]
        call["disposition"] = rng.choice(others)
        return [payload, earlier]
    if fault == "unknown_lead":
        return [forge(rng, payload)]
    if fault == "oversized":
        big = copy.deepcopy(payload)
        words = ("hello", "yes", "speaking", "thanks", "call", "me", "later", "okay")
        text = " ".join(rng.choice(words) for _ in range(OVERSIZED_BYTES // 4))
        big["call"]["transcript"] = text[: OVERSIZED_BYTES + 1024]
        return [big]
    return [payload]


def forge(rng: random.Random, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with its correlation value(s) forged, or its Salesforce Id made up."""
    forged = copy.deepcopy(payload)
    custom = forged["lead"].get("customData")
    changed = False
    if isinstance(custom, dict):
        for key, value in custom.items():
            found = _REF.match(value) if isinstance(value, str) else None
            if found:
                mac = f"{rng.getrandbits(64):016x}"
                custom[key] = found.group(1) + mac
                changed = True
    if not changed:
        forged["lead"]["salesforceId"] = f"00Q{rng.getrandbits(60):015X}"[:18]
    return forged


class CallDispatcher:
    """Places the calls of accepted leads and posts their hooks from one daemon thread."""

    def __init__(self, settings: CallSettings | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = settings or CallSettings()
        self._settings.check()
        self._queue: queue.Queue[Hook | None] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._faults: list[list[Any]] = []  # [kind, remaining]
        self._forced: list[list[Any]] = []  # [outcome, disposition, remaining]
        self._log: list[dict[str, Any]] = []
        self._generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None

    # ------------------------------------------------------------------ control

    @property
    def settings(self) -> CallSettings:
        with self._lock:
            return self._settings

    def configure(self, **changes: Any) -> CallSettings:
        """Change settings (``delay``, ``outcomes``, ...); ValueError names a bad one."""
        with self._lock:
            self._settings = self._settings.updated(changes)
            return self._settings

    def inject(self, kind: str, count: int = 1) -> None:
        """Give the next ``count`` calls the hook fault ``kind``."""
        if kind not in HOOK_FAULTS:
            raise ValueError(f"unknown hook fault {kind!r}; one of {', '.join(HOOK_FAULTS)}")
        _check_count(count)
        with self._lock:
            self._faults.append([kind, count])

    def force(self, disposition: str | None, count: int = 1, outcome: str | None = None) -> None:
        """The next ``count`` calls end with this disposition (and outcome; default answered)."""
        if disposition is not None and disposition not in DISPOSITIONS:
            raise ValueError(f"unknown disposition {disposition!r}; one of {DISPOSITIONS}")
        if outcome is not None and outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
        if disposition is None and outcome is None:
            raise ValueError("give a disposition, an outcome or both")
        _check_count(count)
        with self._lock:
            self._forced.append([outcome, disposition, count])

    def pending(self) -> dict[str, Any]:
        with self._lock:
            return {
                "faults": [{"kind": k, "remaining": n} for k, n in self._faults],
                "forced": [
                    {"outcome": o, "disposition": d, "remaining": n} for o, d, n in self._forced
                ],
                "queued": self._queue.qsize(),
            }

    def hooks(self) -> list[dict[str, Any]]:
        """Every hook posted or given up, in the order they finished."""
        with self._lock:
            return [dict(entry) for entry in self._log]

    def reset(self) -> None:
        """Forget hooks not yet posted, pending faults and forced calls, and the log."""
        with self._lock:
            self._generation += 1
            self._faults.clear()
            self._forced.clear()
            self._log.clear()

    # ------------------------------------------------------------------ placing calls

    def place(
        self,
        url: object,
        batch_id: str | None,
        leads: list[tuple[Mapping[str, Any], int]],
    ) -> None:
        """Queue the hooks of ``leads`` (each with its acceptance number) for ``url``."""
        settings = self.settings
        if not settings.enabled or not leads or not isinstance(url, str) or not url:
            return
        refusal = self._refusal(url, settings)
        if refusal is not None:
            log.warning("simz_sandbox.hook_refused", url=url, reason=refusal, leads=len(leads))
            self._record(url, None, None, None, status=None, error=refusal, size=0)
            return
        due = time.monotonic() + settings.delay
        for lead, nth in leads:
            for hook in self._hooks_of(url, batch_id, lead, nth, due, settings):
                self._enqueue(hook)

    def _refusal(self, url: str, settings: CallSettings) -> str | None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "not an http(s) URL"
        off_machine = not is_loopback_host(parts.hostname)
        if parts.scheme == "http" and off_machine and not settings.allow_http:
            return "http to a host off this machine (https, or allow_http)"
        return None

    def _hooks_of(
        self,
        url: str,
        batch_id: str | None,
        lead: Mapping[str, Any],
        nth: int,
        due: float,
        settings: CallSettings,
    ) -> Iterator[Hook]:
        sf_id = lead.get("salesforceId")
        if settings.seed is None:
            rng = random.Random()
        else:
            rng = random.Random(f"{settings.seed}/{sf_id}/{nth}")
        forced, fault = self._take(rng, settings)
        payload = example_payload(rng, settings, batch_id, lead, forced)
        with self._lock:
            generation = self._generation
        for body in faulty_bodies(rng, payload, fault):
            raw = json.dumps(body, separators=(",", ":")).encode()
            shown_id = body["lead"]["salesforceId"]
            yield Hook(url, raw, due, payload["callId"], shown_id, fault, generation)

    def _take(
        self, rng: random.Random, settings: CallSettings
    ) -> tuple[tuple[str | None, str | None], str | None]:
        """The forced (outcome, disposition) and the fault of the next call."""
        draws = {kind: rng.random() for kind in HOOK_FAULTS}
        with self._lock:
            forced: tuple[str | None, str | None] = (None, None)
            if self._forced:
                forced = (self._forced[0][0], self._forced[0][1])
                self._forced[0][2] -= 1
                if self._forced[0][2] <= 0:
                    self._forced.pop(0)
            if self._faults:
                fault: str | None = self._faults[0][0]
                self._faults[0][1] -= 1
                if self._faults[0][1] <= 0:
                    self._faults.pop(0)
                return forced, fault
        rates = settings.fault_rates
        chosen = [kind for kind in HOOK_FAULTS if draws[kind] < rates.get(kind, 0)]
        return forced, (chosen[0] if chosen else None)

    def _enqueue(self, hook: Hook) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait(hook)
        except queue.Full:
            log.warning("simz_sandbox.hook_dropped", url=hook.url, call_id=hook.call_id)
            self._record_hook(hook, status=None, error="dropped: the hook queue is full")

    # ------------------------------------------------------------------ the worker

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._client = httpx.Client(
                timeout=TIMEOUT,
                trust_env=False,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
            self._thread = threading.Thread(target=self._run, name="simz-hooks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop posting; hooks not yet posted are dropped. Safe to call twice."""
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        with self._lock:
            thread, self._thread = self._thread, None
            client, self._client = self._client, None
        if thread is not None:
            thread.join(timeout)
        if client is not None:
            client.close()
        with self._lock:  # a restarted emulator starts a new worker
            self._queue = queue.Queue(maxsize=QUEUE_LIMIT)
            self._generation += 1
            self._stop.clear()

    def _run(self) -> None:
        jobs = self._queue
        while not self._stop.is_set():
            hook = jobs.get()
            if hook is None:
                return
            wait = hook.due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            with self._lock:
                stale = hook.generation != self._generation
            if stale:
                continue
            if hook.fault == "slow":
                slow = self.settings.slow_seconds
                threading.Thread(
                    target=self._post, args=(hook, slow), name="simz-hook-slow", daemon=True
                ).start()
            else:
                self._post(hook, 0.0)

    def _post(self, hook: Hook, slow: float) -> None:
        client = self._client
        if client is None:  # stopped meanwhile
            return
        headers = {"Content-Type": "application/json", "Content-Length": str(len(hook.body))}
        content: bytes | Iterator[bytes] = hook.body
        timeout: float | httpx.Timeout = TIMEOUT
        if slow > 0:
            content = _trickle(hook.body, slow)
            timeout = httpx.Timeout(TIMEOUT, write=slow + TIMEOUT)
        try:
            reply = client.post(hook.url, content=content, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            log.warning(
                "simz_sandbox.hook_failed", url=hook.url, call_id=hook.call_id, error=repr(exc)
            )
            self._record_hook(hook, status=None, error=f"{type(exc).__name__}: {exc}")
            return
        if reply.status_code >= 300:
            log.warning(
                "simz_sandbox.hook_refused_by_receiver",
                url=hook.url,
                call_id=hook.call_id,
                status=reply.status_code,
            )
        self._record_hook(hook, status=reply.status_code, error=None)

    def _record_hook(self, hook: Hook, status: int | None, error: str | None) -> None:
        self._record(
            hook.url,
            hook,
            hook.call_id,
            hook.fault,
            status=status,
            error=error,
            size=len(hook.body),
        )

    def _record(
        self,
        url: str,
        hook: Hook | None,
        call_id: str | None,
        fault: str | None,
        *,
        status: int | None,
        error: str | None,
        size: int,
    ) -> None:
        entry = {
            "url": url,
            "callId": call_id,
            "salesforceId": hook.salesforce_id if hook else None,
            "fault": fault,
            "status": status,
            "error": error,
            "bytes": size,
            "at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "body": json.loads(hook.body) if hook else None,
        }
        with self._lock:
            if hook is None or hook.generation == self._generation:
                self._log.append(entry)


def _trickle(body: bytes, seconds: float) -> Iterator[bytes]:
    """``body`` in about 20 pieces spread over ``seconds``."""
    step = max(1, len(body) // 20)
    pieces = range(0, len(body), step)
    pause = seconds / max(1, len(pieces))
    for start in pieces:
        yield body[start : start + step]
        time.sleep(pause)


def _check_count(count: object) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError("count must be a positive integer")


def calls_route(
    calls: CallDispatcher, method: str, route: str, data: dict[str, Any]
) -> tuple[int, Any]:
    """The control API under ``/__sandbox/calls``: (status, JSON reply)."""
    if (method, route) == ("GET", "calls"):
        return 200, {
            "settings": calls.settings.describe(),
            **calls.pending(),
            "hooks": calls.hooks(),
        }
    if method in ("PUT", "POST") and route == "calls/settings":
        return 200, {"settings": calls.configure(**data).describe()}
    if method == "POST" and route == "calls/faults":
        kind = data.get("kind")
        if not isinstance(kind, str) or set(data) - {"kind", "count"}:
            raise ValueError('body must be {"kind": "duplicate", "count": N}')
        calls.inject(kind, data.get("count", 1))
        return 200, calls.pending()
    if method == "POST" and route == "calls/force":
        if set(data) - {"disposition", "outcome", "count"}:
            raise ValueError('body must be {"disposition": "do_not_call", "count": N}')
        calls.force(data.get("disposition"), data.get("count", 1), data.get("outcome"))
        return 200, calls.pending()
    return 404, {"error": f"no control route {method} /__sandbox/{route}"}
