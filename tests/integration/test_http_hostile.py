"""The probe listener under hostile clients, and the status check on refused logins."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from syncd.adapters.salesforce import LoginBackoff
from syncd.config import SyncConfig
from syncd.entrypoints import http
from syncd.entrypoints.http import ProbeServer, Readiness, ReadyReport, serve
from syncd.entrypoints.scheduler import PollTracker

#: The probe process's file descriptor limit, below the number of slow clients.
FD_LIMIT = 256
SLOW_CLIENTS = 300

PROBE_PROCESS = textwrap.dedent(
    f"""
    import resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, hard))
    from syncd.entrypoints.http import ReadyReport, serve
    server = serve("127.0.0.1", 0, lambda: ReadyReport())
    print(server.address, flush=True)
    sys.stdin.read()
    server.close()
    """
)


def get(url: str, timeout: float = 30) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def fds_of(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def settle(pid: int) -> int:
    """Wait until the process's open file count stops changing (at most 30 s); return it."""
    last = fds_of(pid)
    for _ in range(30):
        time.sleep(1.0)
        now = fds_of(pid)
        if now == last:
            return now
        last = now
    return last


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


@pytest.fixture
def probe_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE_PROCESS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    address = process.stdout.readline().strip()
    try:
        yield process, address
    finally:
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def open_slow_clients(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` connections at once, each sending half a request head and then nothing."""
    sockets: list[socket.socket] = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex((host, port))
        sockets.append(sock)
    waiting = list(sockets)
    deadline = time.monotonic() + 15  # connections beyond the listen backlog are retried
    while waiting and time.monotonic() < deadline:
        _, writable, _ = select.select([], waiting, [], 1.0)
        for sock in writable:
            waiting.remove(sock)
            with contextlib.suppress(OSError):  # refused or already dropped by the listener
                sock.send(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n")
    return sockets


class TestSlowClients:
    @pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
    def test_healthz_answers_under_slowloris(
        self, probe_process: tuple[subprocess.Popen[str], str]
    ) -> None:
        """300 half-sent requests against a 256-fd process: /healthz still answers."""
        process, address = probe_process
        host, port = address.rsplit(":", 1)
        slow = open_slow_clients(host, int(port), SLOW_CLIENTS)
        try:
            open_files = settle(process.pid)  # the listener has taken what it will take
            status, body = get(f"http://{address}/healthz", timeout=30)
            assert (status, json.loads(body)) == (200, {"status": "ok"})
            assert threads_of(process.pid) < 20  # no thread per connection
            assert open_files < FD_LIMIT // 2  # the flood's sockets are bounded
        finally:
            for sock in slow:
                sock.close()
        assert get(f"http://{address}/healthz")[0] == 200
        assert process.stdin is not None
        process.stdin.close()
        assert process.wait(30) == 0
        assert process.stderr is not None
        assert process.stderr.read() == ""  # dropped clients are no errors worth a line

    def test_half_sent_request_is_dropped(self) -> None:
        """A client that never finishes its request is disconnected, not kept forever."""
        server = serve("127.0.0.1", 0, lambda: Readiness.__new__(Readiness))  # never called
        try:
            host, port = server.address.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=30) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
                assert sock.recv(100) == b""  # closed by the server after its timeout
        finally:
            server.close()

    def test_bad_method_and_request(self, tmp_path: Path) -> None:
        """Other methods get 405, an unreadable request line 400; HEAD gets no body."""
        server: ProbeServer = serve("127.0.0.1", 0, lambda: Readiness.__new__(Readiness))
        try:
            host, port = server.address.rsplit(":", 1)
            for request, status in (
                (b"POST /healthz HTTP/1.1\r\n\r\n", b"405"),
                (b"garbage\r\n\r\n", b"400"),
                (b"HEAD /healthz HTTP/1.1\r\n\r\n", b"200"),
            ):
                with socket.create_connection((host, int(port)), timeout=30) as sock:
                    sock.sendall(request)
                    answer = b""
                    while chunk := sock.recv(4096):
                        answer += chunk
                assert answer.split(b" ")[1] == status
                if request.startswith(b"HEAD"):
                    assert answer.endswith(b"\r\n\r\n")
        finally:
            server.close()


class TestHungReadiness:
    def test_hung_check_answers_503_and_health_stays(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A readiness check that hangs: /readyz 503 after the limit, computed once; /healthz ok."""
        monkeypatch.setattr(http, "COMPUTE_TIMEOUT", 0.5)
        release = threading.Event()
        calls: list[int] = []

        def hung() -> ReadyReport:
            calls.append(1)
            release.wait(30)
            return ReadyReport()

        server = serve("127.0.0.1", 0, hung)
        try:
            with ThreadPoolExecutor(3) as pool:
                asked = [pool.submit(get, f"http://{server.address}/readyz") for _ in range(3)]
                assert get(f"http://{server.address}/healthz")[0] == 200
                answers = [future.result() for future in asked]
            for status, body in answers:
                assert status == 503
                assert "took longer than" in json.loads(body)["failing"][0]["reason"]
            assert len(calls) == 1
        finally:
            release.set()
            server.close()


class TestLoginBackoffReadiness:
    def test_status_names_the_held_back_login(self, engine: Engine) -> None:
        """Refused logins make /status.json 503 with the reason and the next attempt;
        the replica stays ready (every replica logs in as the same user)."""
        at = datetime(2026, 1, 1, tzinfo=UTC)
        sync = SyncConfig.model_validate(
            {"name": "web", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}}
        )
        backoff = LoginBackoff()
        readiness = Readiness(engine, PollTracker([sync], lambda: at), lambda: at)
        readiness.login_backoff = backoff
        assert readiness().ready
        backoff.refused("SOAP login refused: INVALID_LOGIN: Invalid username", at)
        report = readiness()
        assert not report.ready
        reason = report.failing["salesforce_login"]
        assert "INVALID_LOGIN" in reason
        assert (at + timedelta(minutes=1)).isoformat() in reason
        server = serve("127.0.0.1", 0, readiness.serving, status=readiness)
        try:
            status, body = get(f"http://{server.address}/status.json")
            assert get(f"http://{server.address}/readyz")[0] == 200
        finally:
            server.close()
        assert status == 503
        assert json.loads(body)["checks"]["salesforce_login"] == "failing"
