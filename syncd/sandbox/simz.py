"""The SimZ emulator: the vendor's lead endpoint on loopback, with fault injection.

It serves ``POST /api/lead-receive-service/agent/receiveLead/{agentId}`` exactly
as ``simz-openapi.yaml`` describes it (401, 400, 404, 402, 200 with per-lead
rejections), records every lead it receives so tests can prove "never twice",
and misbehaves on request (429, 503, 500, 400, 413, delays, lost responses,
non-JSON 200s, connection resets). Used by the tests, ``syncd demo``,
``syncd sandbox simz`` and the benchmarks.

Control it from Python with the methods below or over HTTP under
``/__sandbox/`` (no key needed; it binds loopback by default):

=========================================  ==========================================
``GET  /__sandbox/state``                  agents, credits, pending faults, counters
``POST /__sandbox/agents``                 ``{"agentId": "agt_1"}``
``DELETE /__sandbox/agents/{agentId}``     remove an agent (its next POST is a 404)
``PUT  /__sandbox/credits``                ``{"credits": 10}``; ``null`` is unlimited
``POST /__sandbox/faults``                 ``{"kind": "429", "count": 2, "retry_after": 5}``
``GET  /__sandbox/faults``                 faults still pending
``DELETE /__sandbox/faults``               drop every pending fault
``GET  /__sandbox/received``               ``{"leads": [...]}`` every lead received
``GET  /__sandbox/received/counts``        ``{"counts": {salesforceId: n}}``;
                                           ``?accepted_only=true`` counts accepted only
``GET  /__sandbox/requests``               every API request: method, path, status, ...
``GET  /__sandbox/violations``             every request that broke the spec
``POST /__sandbox/reset``                  back to the initial agents and credits
``GET  /__sandbox/calls``                  call settings, pending hook faults, hooks posted
``PUT  /__sandbox/calls/settings``         ``{"delay": 0.2, "seed": 7, "outcomes": {...}}``
``POST /__sandbox/calls/faults``           ``{"kind": "duplicate", "count": 1}``
``POST /__sandbox/calls/force``            ``{"disposition": "do_not_call", "count": 1}``
=========================================  ==========================================

A submission with ``options.webhookUrl`` has each accepted lead's call report
back to that URL (see ``simz_calls``: an *example* payload, since the spec
defines none).

Fault kinds (each applies to the next ``count`` lead submissions, in the order
injected): ``429`` (``retry_after``: seconds or an HTTP date, ``null`` for no
header; default 1), ``503`` (BillingCheckFailedResponse), ``400``, ``413``,
``500`` (``record``: default true, the batch is processed and recorded, then
the answer is a 500, i.e. the pessimistic "it may have been queued" case;
false answers 500 without processing), ``delay`` (processed and recorded
normally, then the answer waits ``seconds``: a client that times out has
really had its leads queued), ``lost_response`` (processed and recorded, then the connection is
closed without an answer), ``garbage_200`` (processed and recorded, then a 200
whose body is not JSON), ``custom_200`` (processed and recorded, then a 200
whose body is the ``body`` text verbatim, e.g. JSON with missing fields or an
``errors[].index`` out of range), ``custom`` (nothing processed; the answer is
``status`` with the ``body`` text verbatim and, if given, a ``retry_after``
header verbatim), ``trickle`` (processed and recorded, then the answer is
written one byte every ``interval`` seconds, padded to last about ``seconds``:
each read is quick, the whole answer slow) and ``reset`` (the connection is reset before the body
is read; nothing is recorded). 429, 503, 400, 413 and ``500`` with
``record=false`` record nothing, as the spec says for the documented ones.

A received lead is ``{"agentId", "batchId", "index", "accepted", "salesforceId",
"receivedAt", "lead"}``; ``batchId`` is null for a lead rejected per lead.
``received_counts()`` counts every lead of every processed submission,
rejected ones included (the strict reading of "sent at most once").
See ``simz_state`` for the credit rules.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from syncd.sandbox.simz_calls import CallSettings
from syncd.sandbox.simz_http import CONTROL_PREFIX, SimzServer
from syncd.sandbox.simz_spec import LEAD_PATH_PREFIX
from syncd.sandbox.simz_state import FAULT_KINDS, SimzState

__all__ = ["CONTROL_PREFIX", "FAULT_KINDS", "LEAD_PATH_PREFIX", "SimzEmulator"]


class SimzEmulator:
    """A SimZ lead endpoint served from a background thread.

    ``credits=None`` means unlimited; ``agents`` are the agent ids that exist;
    ``calls`` says how accepted leads' calls report back (``simz_calls``).
    """

    def __init__(
        self,
        api_key: str = "sandbox-key",
        credits: int | None = None,
        agents: Iterable[str] = (),
        calls: CallSettings | None = None,
    ) -> None:
        self.api_key = api_key
        self.state = SimzState(api_key=api_key, credits=credits, agents=agents, calls=calls)
        self._server: SimzServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 picks a free port) and return the base URL."""
        if self._server is not None:
            raise RuntimeError("the SimZ emulator is already running")
        server = SimzServer((host, port), self.state)
        bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._url = f"http://{shown}:{bound_port}"
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits up to this long
            name=f"simz-emulator-{bound_port}",
            daemon=True,
        )
        self._thread.start()
        return self._url

    def stop(self) -> None:
        """Stop serving and hang up open connections; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        self.state.calls.stop()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> SimzEmulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8123`` (the ``base_url`` for SimzConfig)."""
        if self._url is None:
            raise RuntimeError("the SimZ emulator has not been started")
        return self._url

    @property
    def control_url(self) -> str:
        return f"{self.url}{CONTROL_PREFIX}"

    def lead_url(self, agent_id: str) -> str:
        """The submission URL for one agent (the agent id URL-encoded)."""
        return f"{self.url}{LEAD_PATH_PREFIX}{quote(agent_id, safe='')}"

    # ------------------------------------------------------------------ control

    def add_agent(self, agent_id: str) -> None:
        self.state.add_agent(agent_id)

    def remove_agent(self, agent_id: str) -> None:
        self.state.remove_agent(agent_id)

    def set_credits(self, credits: int | None) -> None:
        """Set the company balance; None is unlimited, zero or below answers 402."""
        self.state.set_credits(credits)

    @property
    def credits(self) -> int | None:
        """The remaining balance (None: unlimited)."""
        return self.state.credits()

    def inject(self, kind: str, count: int = 1, **params: Any) -> None:
        """Misbehave on the next ``count`` lead submissions (see the module doc for kinds)."""
        self.state.inject(kind, count, **params)

    def pending_faults(self) -> list[dict[str, Any]]:
        return self.state.pending_faults()

    def clear_faults(self) -> None:
        """Drop every pending fault (what was received is kept)."""
        self.state.clear_faults()

    def reset(self) -> None:
        """Forget everything received and every pending fault; restore agents and credits."""
        self.state.reset()

    # ------------------------------------------------------------------ calls back

    def configure_calls(self, **changes: Any) -> CallSettings:
        """Change how calls report back: ``delay``, ``outcomes``, ``fault_rates``, ``seed``..."""
        return self.state.calls.configure(**changes)

    def inject_call_fault(self, kind: str, count: int = 1) -> None:
        """Give the next ``count`` calls a hook fault (duplicate, out_of_order, ...)."""
        self.state.calls.inject(kind, count)

    def force_calls(
        self, disposition: str | None, count: int = 1, outcome: str | None = None
    ) -> None:
        """The next ``count`` calls end with ``disposition`` (e.g. do_not_call)."""
        self.state.calls.force(disposition, count, outcome)

    def hooks(self) -> list[dict[str, Any]]:
        """Every hook posted (or refused, dropped, failed), with status and body."""
        return self.state.calls.hooks()

    # ------------------------------------------------------------------ records

    def received(self) -> list[dict[str, Any]]:
        """Every lead received, in order, with agentId, batchId, index and time."""
        return self.state.received()

    def received_counts(self, accepted_only: bool = False) -> dict[str, int]:
        """How many times each salesforceId was received (accepted only, if asked)."""
        return self.state.received_counts(accepted_only=accepted_only)

    def requests(self) -> list[dict[str, Any]]:
        """Every API request: method, path, status (None when no answer was sent), ..."""
        return self.state.requests()

    def schema_violations(self) -> list[dict[str, Any]]:
        """Every API request that broke the spec: method, path, problems, time."""
        return self.state.violations()
