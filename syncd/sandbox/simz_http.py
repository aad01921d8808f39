"""HTTP for the SimZ emulator: the vendor endpoint and the ``/__sandbox/`` control API.

Stdlib ``http.server`` only, HTTP/1.1 with keep-alive (clients reuse their
connections as they would against SimZ). The lead endpoint checks, in order:
injected fault, API key (401), body (400), agent (404), credits (402), then
answers 200 with per-lead rejections. Every request body is validated against
the spec whatever the answer, and each problem is recorded as a schema
violation, so tests can fail on any request the client got wrong.

The control API needs no key; the emulator binds loopback by default. Its
requests are not recorded in the request log, which lists API traffic only.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from syncd.sandbox.simz_calls import calls_route
from syncd.sandbox.simz_spec import API_KEY_HEADER, LEAD_PATH_PREFIX, validate_request
from syncd.sandbox.simz_state import COMPANY_ID, Answer, Fault, SimzState, error_body

CONTROL_PREFIX = "/__sandbox/"
MAX_BODY = 50 * 1024 * 1024
GARBAGE = b"<html><body><h1>502 Bad Gateway</h1>upstream sent an invalid response</body></html>"


class SimzServer(ThreadingHTTPServer):
    """A threading server that knows its emulator state and its open connections."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SimzState) -> None:
        self.state = state
        self._open: set[socket.socket] = set()
        super().__init__(address, SimzHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request (e.g. a killed syncd) is not an emulator error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up idle keep-alive connections so that their threads end on stop."""
        for sock in list(self._open):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class BadRequestBody(Exception):
    """The request body could not be read (bad framing or too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SimzHandler(BaseHTTPRequestHandler):
    server: SimzServer
    protocol_version = "HTTP/1.1"
    server_version = "SimzSandbox/1.0"
    timeout = 120  # an idle keep-alive connection is closed after this many seconds
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's
    # algorithm and delayed ACKs add ~40 ms to every answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line (the request log is in the state)."""

    # ------------------------------------------------------------------ plumbing

    @property
    def state(self) -> SimzState:
        return self.server.state

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequestBody(400, "bad chunked encoding") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise BadRequestBody(413, "request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            raise BadRequestBody(400, "bad Content-Length") from None
        if length < 0:
            raise BadRequestBody(400, "bad Content-Length")
        if length > MAX_BODY:
            raise BadRequestBody(413, "request body too large")
        return self.rfile.read(length)

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str = "application/json",
        headers: tuple[tuple[str, str], ...] = (),
        close: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def _send_json(self, status: int, body: Any, **kwargs: Any) -> None:
        self._send(status, json.dumps(body).encode(), **kwargs)

    def _hang_up(self, reset: bool) -> None:
        """Close the connection without an answer; ``reset`` sends a TCP RST."""
        self.close_connection = True
        if reset:
            # Linger 0: the close sends RST. The descriptor really closes when
            # the handler's files are closed in finish(), before any FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    # ------------------------------------------------------------------ routing

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        try:
            if path.startswith(CONTROL_PREFIX) or path == CONTROL_PREFIX.rstrip("/"):
                self._control(method)
            else:
                self._api(method, path)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # never a traceback on the emulator's stderr
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send_json(500, error_body("INTERNAL_ERROR", f"emulator error: {exc!r}"))

    # ------------------------------------------------------------------ the vendor API

    def _api(self, method: str, path: str) -> None:
        segment = path[len(LEAD_PATH_PREFIX) :] if path.startswith(LEAD_PATH_PREFIX) else ""
        if not segment or "/" in segment:
            self._drain_quietly()
            problem = f"{method} {path} is not an operation of the spec"
            self.state.log_violation(method, path, [problem])
            self.state.log_request(method, path, 404)
            self._send_json(404, error_body("NOT_FOUND", problem))
            return
        if method != "POST":
            self._drain_quietly()
            problem = f"{method} is not allowed on {LEAD_PATH_PREFIX}{{agentId}}; only POST"
            self.state.log_violation(method, path, [problem])
            self.state.log_request(method, path, 405)
            self._send_json(
                405, error_body("METHOD_NOT_ALLOWED", problem), headers=(("Allow", "POST"),)
            )
            return
        self._submit(path, unquote(segment))

    def _drain_quietly(self) -> None:
        try:
            self._read_body()
        except BadRequestBody:
            self.close_connection = True

    def _submit(self, path: str, agent_id: str) -> None:
        state = self.state
        fault = state.take_fault()
        kind = fault.kind if fault else None
        if fault and fault.kind == "reset":
            state.log_request("POST", path, None, agentId=agent_id, fault=kind, leads=None)
            self._hang_up(reset=True)
            return
        try:
            raw = self._read_body()
        except BadRequestBody as exc:
            state.log_violation("POST", path, [str(exc)])
            state.log_request("POST", path, exc.status, agentId=agent_id, fault=kind, leads=None)
            self._send_json(exc.status, error_body("INVALID_REQUEST", str(exc)), close=True)
            return

        body, problems = self._parse(raw)
        if problems:
            state.log_violation("POST", path, problems)
        leads = len(body["leads"]) if not problems and isinstance(body, dict) else None

        if fault and fault.kind == "custom":
            self._send_custom(path, agent_id, fault)
            return
        answer = self._fault_answer(fault, agent_id) if fault else None
        if answer is None:
            answer = state.check_key(self.headers.get(API_KEY_HEADER))
        if answer is None and problems:
            answer = Answer(400, error_body("INVALID_REQUEST", "; ".join(problems[:20])))
        if answer is None:
            assert isinstance(body, dict)
            answer = state.submit(agent_id, body)

        if fault and fault.kind == "delay":
            # Processed (and recorded) first, answered late: a client that
            # times out meanwhile has really had its leads queued.
            time.sleep(float(fault.params["seconds"]))
        if kind == "lost_response":
            state.log_request("POST", path, None, agentId=agent_id, fault=kind, leads=leads)
            self._hang_up(reset=False)
            return
        # Each answer is logged before it is written: a test that reads the log
        # right after its response sees the entry, and an answer the client gave up
        # waiting for (a delay past its timeout) is logged too.
        if kind == "garbage_200":
            state.log_request("POST", path, 200, agentId=agent_id, fault=kind, leads=leads)
            self._send(200, GARBAGE, content_type="text/html")
            return
        if fault and fault.kind == "custom_200":
            state.log_request("POST", path, 200, agentId=agent_id, fault=kind, leads=leads)
            self._send(200, str(fault.params["body"]).encode())
            return
        if fault and fault.kind == "trickle":
            status = answer.status
            state.log_request("POST", path, status, agentId=agent_id, fault=kind, leads=leads)
            self._trickle(answer, float(fault.params["seconds"]), float(fault.params["interval"]))
            return
        if kind == "500":
            answer = Answer(500, error_body("INTERNAL_ERROR", "Internal server error"))
        state.log_request("POST", path, answer.status, agentId=agent_id, fault=kind, leads=leads)
        self._send_json(answer.status, answer.body, headers=answer.headers)

    def _send_custom(self, path: str, agent_id: str, fault: Fault) -> None:
        """Answer ``status`` with ``body`` verbatim, processing nothing."""
        status = int(fault.params["status"])
        retry_after = fault.params["retry_after"]
        headers = () if retry_after is None else (("Retry-After", str(retry_after)),)
        self.state.log_request("POST", path, status, agentId=agent_id, fault="custom", leads=None)
        self._send(status, str(fault.params["body"]).encode(), headers=headers)

    def _trickle(self, answer: Answer, seconds: float, interval: float) -> None:
        """Write ``answer`` one byte every ``interval`` s, padded to last about ``seconds``."""
        payload = json.dumps(answer.body).encode()
        payload += b" " * max(0, int(seconds / interval) - len(payload))
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.flush()
        for index in range(len(payload)):
            self.wfile.write(payload[index : index + 1])
            self.wfile.flush()
            time.sleep(interval)

    def _parse(self, raw: bytes) -> tuple[Any, list[str]]:
        """The decoded body and its spec problems (header, content type, JSON, schema)."""
        problems: list[str] = []
        if API_KEY_HEADER not in self.headers:
            problems.append(f"header {API_KEY_HEADER} is required")
        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            problems.append(f"Content-Type must be application/json, not {content_type!r}")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return None, [*problems, f"(body): not JSON: {exc}"]
        return body, problems + validate_request(body)

    def _fault_answer(self, fault: Fault, agent_id: str) -> Answer | None:
        """The canned answer of a fault that replaces processing; None for the others."""
        kind = fault.kind
        if kind == "429":
            retry_after = fault.params["retry_after"]
            headers = () if retry_after is None else (("Retry-After", _retry_after(retry_after)),)
            return Answer(429, error_body("RATE_LIMITED", "Too many requests"), headers)
        if kind == "503":
            return Answer(
                503,
                {
                    "success": False,
                    "code": "BILLING_CHECK_FAILED",
                    "message": "Could not verify the company credit balance. Retry shortly.",
                    "data": {"agentId": agent_id, "companyId": COMPANY_ID},
                },
            )
        if kind == "400":
            return Answer(400, error_body("INVALID_REQUEST", "Invalid request body or lead data"))
        if kind == "413":
            return Answer(413, error_body("PAYLOAD_TOO_LARGE", "Request entity too large"))
        if kind == "500" and not fault.params["record"]:
            return Answer(500, error_body("INTERNAL_ERROR", "Internal server error"))
        return None

    # ------------------------------------------------------------------ control API

    def _control(self, method: str) -> None:
        url = urlsplit(self.path)
        route = url.path[len(CONTROL_PREFIX) :].strip("/")
        query = parse_qs(url.query)
        try:
            raw = self._read_body()
            data = json.loads(raw) if raw.strip() else {}
        except (BadRequestBody, ValueError) as exc:
            self._send_json(400, {"error": f"bad request body: {exc}"}, close=True)
            return
        try:
            status, reply = self._control_route(method, route, data, query)
        except (ValueError, TypeError, KeyError) as exc:
            status, reply = 400, {"error": str(exc)}
        self._send_json(status, reply)

    def _control_route(
        self, method: str, route: str, data: Any, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        state = self.state
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        if route == "calls" or route.startswith("calls/"):
            return calls_route(state.calls, method, route, data)
        if (method, route) == ("GET", "state"):
            return 200, {
                "agents": state.agents(),
                "credits": state.credits(),
                "faults": state.pending_faults(),
                "received": len(state.received()),
                "requests": len(state.requests()),
                "violations": len(state.violations()),
            }
        if (method, route) == ("POST", "agents"):
            state.add_agent(_agent_id(data))
            return 200, {"agents": state.agents()}
        if method == "DELETE" and route.startswith("agents/"):
            state.remove_agent(unquote(route[len("agents/") :]))
            return 200, {"agents": state.agents()}
        if method in ("PUT", "POST") and route == "credits":
            if "credits" not in data:
                raise ValueError('body must be {"credits": <integer or null>}')
            state.set_credits(data["credits"])
            return 200, {"credits": state.credits()}
        if method == "POST" and route == "faults":
            params = dict(data)
            kind = params.pop("kind", None)
            count = params.pop("count", 1)
            if not isinstance(kind, str):
                raise ValueError('body must be {"kind": "...", "count": N, ...params}')
            state.inject(kind, count, **params)
            return 200, {"faults": state.pending_faults()}
        if (method, route) == ("GET", "faults"):
            return 200, {"faults": state.pending_faults()}
        if (method, route) == ("DELETE", "faults"):
            state.clear_faults()
            return 200, {"faults": state.pending_faults()}
        if (method, route) == ("GET", "received"):
            return 200, {"leads": state.received()}
        if (method, route) == ("GET", "received/counts"):
            accepted_only = query.get("accepted_only", ["false"])[0].lower() in ("1", "true")
            return 200, {"counts": state.received_counts(accepted_only=accepted_only)}
        if (method, route) == ("GET", "requests"):
            return 200, {"requests": state.requests()}
        if (method, route) == ("GET", "violations"):
            return 200, {"violations": state.violations()}
        if method == "POST" and route == "reset":
            state.reset()
            return 200, {"reset": True}
        return 404, {"error": f"no control route {method} {CONTROL_PREFIX}{route}"}


def _agent_id(data: dict[str, Any]) -> str:
    agent_id = data.get("agentId")
    if not isinstance(agent_id, str) or not agent_id:
        raise ValueError('body must be {"agentId": "<non-empty string>"}')
    return agent_id


def _retry_after(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
