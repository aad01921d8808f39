"""What the daemon's HTTP listeners share: one asyncio loop in a daemon thread, bounded reads.

:class:`LoopServer` serves one request per connection from an asyncio loop in
a daemon thread: a listener can never keep the process alive at exit, and a
slow or silent client costs a socket and a coroutine, never a thread. Each
client has a deadline to send its request (:attr:`LoopServer.read_timeout`),
and beyond :data:`MAX_PENDING_CONNECTIONS` unfinished requests the oldest is
dropped, so a flood of half-sent requests cannot use up the process's file
descriptors. Each answer closes its connection. Subclasses say how a request
is read (:meth:`LoopServer.read_request`) and answered (:meth:`LoopServer.answer`);
the probe port (:mod:`syncd.entrypoints.http`) and the webhook receiver
(:mod:`syncd.entrypoints.webhook_http`) are the two.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from syncd.logs import get_logger

log = get_logger("syncd.http")

#: Connections still sending their request beyond this many: the oldest is dropped.
MAX_PENDING_CONNECTIONS = 64
#: Seconds a client gets to send its request line and headers, and to take the answer.
REQUEST_TIMEOUT = 5.0
#: The longest request head (request line and headers) read.
MAX_REQUEST_HEAD = 8192
#: After an answer given before the body was read: at most this many bytes, and
#: seconds, of the rest are read and dropped, so that the client reads the answer
#: instead of a reset.
LINGER_BYTES = 1_048_576
LINGER_SECONDS = 2.0
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
REASONS |= {411: "Length Required", 413: "Content Too Large", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    #: Extra response headers, e.g. ``Allow`` on a 405.
    headers: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def json(status: int, body: dict[str, Any], *headers: tuple[str, str]) -> Answer:
        return Answer(status, "application/json", json.dumps(body).encode() + b"\n", headers)


@dataclass
class Request:
    """One request as read: ``method`` None when the request line is unreadable."""

    method: str | None
    path: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: False when a body was left unread: the connection lingers before it closes.
    read_whole: bool = True


def request_line(head: bytes) -> tuple[str | None, str]:
    """(method, path without query) of a request head; method None when unreadable."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        return None, ""
    return parts[0], parts[1].split("?", 1)[0]


def header_lines(head: bytes) -> list[tuple[str, str]]:
    """The (lower-cased name, value) pairs of a request head; malformed lines are skipped."""
    pairs = []
    for raw in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = raw.partition(":")
        if sep and name and name == name.strip():
            pairs.append((name.lower(), value.strip()))
    return pairs


def response(answer: Answer, *, include_body: bool) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in answer.headers)
    head = (
        f"HTTP/1.1 {answer.status} {REASONS.get(answer.status, 'Unknown')}\r\n"
        f"Server: syncd\r\n"
        f"Content-Type: {answer.content_type}\r\n"
        f"Content-Length: {len(answer.body)}\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + (answer.body if include_body else b"")


class LoopServer:
    """One request per connection, read and answered on an asyncio loop in a daemon thread.

    Binds in the constructor, so a port that is taken raises ``OSError`` to the
    caller. ``workers`` threads run the blocking parts (:meth:`run_blocking`).
    :meth:`close` stops accepting first, aborts the connections still sending,
    gives those being answered ``close_grace`` seconds, then aborts the rest.
    """

    #: Seconds a client gets to send its whole request.
    read_timeout = REQUEST_TIMEOUT
    #: Seconds the requests being answered get to finish when the server closes.
    close_grace = 0.0

    def __init__(self, address: tuple[str, int], *, name: str, workers: int) -> None:
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family, backlog=128)
        self._name = name
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        # Connections still sending their request (oldest first), and all open ones.
        self._pending: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._open: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def address(self) -> str:
        """``host:port`` actually bound (the port is chosen by the OS when 0 was asked)."""
        host, port = self._sock.getsockname()[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def close(self) -> None:
        if self._thread is not None:
            stopping = self._stopping
            if stopping is not None:
                self._loop.call_soon_threadsafe(stopping.set)
            self._thread.join(timeout=5 + self.close_grace)
            self._thread = None
        if not self._loop.is_running():
            self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._sock.close()

    async def read_request(self, reader: asyncio.StreamReader) -> Request:
        """Read one request (within :attr:`read_timeout`); by default its head only."""
        head = await reader.readuntil(b"\r\n\r\n")
        method, path = request_line(head)
        return Request(method, path)

    async def answer(self, request: Request) -> Answer:
        raise NotImplementedError

    async def run_blocking(self, work: Any, *args: Any) -> Any:
        """``work(*args)`` on one of the worker threads."""
        return await self._loop.run_in_executor(self._pool, work, *args)

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        asyncio.get_running_loop().set_exception_handler(_quiet_when_out_of_descriptors)
        # backlog: connections accepted per wake-up of the listening socket. With
        # asyncio's default (100), bursts of a flood piled up past a 256-descriptor
        # limit before the oldest pending ones were dropped.
        server = await asyncio.start_server(
            self._connection,
            sock=self._sock,
            limit=MAX_REQUEST_HEAD,
            backlog=MAX_PENDING_CONNECTIONS,
        )
        self._ready.set()
        async with server:
            await self._stopping.wait()
            server.close()
            for writer in list(self._pending.values()):
                writer.transport.abort()
            answering = list(self._open)
            if answering and self.close_grace > 0:
                await asyncio.wait(answering, timeout=self.close_grace)
            # Connections still open end here, not as "destroyed but pending" at loop close.
            for writer in list(self._open.values()):
                writer.transport.abort()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if others:
                await asyncio.wait(others, timeout=1.0)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open[task] = writer
        try:
            await self._exchange(task, reader, writer)
        finally:
            self._open.pop(task, None)

    async def _exchange(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._pending[task] = writer
        if len(self._pending) > MAX_PENDING_CONNECTIONS:
            # Aborting ends the oldest one's read with IncompleteReadError (handled below).
            self._pending.pop(next(iter(self._pending))).transport.abort()
        try:
            request = await asyncio.wait_for(self.read_request(reader), self.read_timeout)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.transport.abort()
            return
        finally:
            self._pending.pop(task, None)
        try:
            answer = await self.answer(request)
            writer.write(response(answer, include_body=request.method != "HEAD"))
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
            if not request.read_whole:
                await _linger(reader, writer)
            writer.close()
        except (TimeoutError, OSError):
            writer.transport.abort()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then drop what the client still sends (bounded), so it reads the answer."""
    if writer.can_write_eof():
        writer.write_eof()
    left = LINGER_BYTES
    try:
        async with asyncio.timeout(LINGER_SECONDS):
            while left > 0:
                chunk = await reader.read(min(left, 65_536))
                if not chunk:
                    return
                left -= len(chunk)
    except TimeoutError:
        pass
    writer.transport.abort()


def _quiet_when_out_of_descriptors(
    loop: asyncio.AbstractEventLoop, context: dict[str, Any]
) -> None:
    """A flood that reaches the process's descriptor limit is not an error worth a traceback.

    asyncio already stops accepting for a second when ``accept()`` fails with
    EMFILE or ENFILE, and open connections are bounded (``MAX_PENDING_CONNECTIONS``);
    the listeners answer again as soon as descriptors free up. Anything else goes to
    asyncio's own handler.
    """
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
        log.debug("listener out of file descriptors: accepting paused", error=str(exc))
        return
    loop.default_exception_handler(context)
