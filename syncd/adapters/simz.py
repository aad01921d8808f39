"""The SimZ HTTP client: one pooled ``httpx.Client`` and one rate limit per API key.

It POSTs a prepared body and hands back the raw answer; deciding what the
answer means is :mod:`syncd.domain.responses`' job. What this module must get
right is the line between "nothing was sent" and "maybe it was sent", because
only the first may be retried without risking a second call to a person.

httpx's exceptions, sorted (httpx 0.27/0.28, HTTP/1.1 via httpcore):

* :class:`NothingSent`: ``httpx.ConnectError`` (refused, DNS, TLS handshake),
  ``httpx.ConnectTimeout``, ``httpx.PoolTimeout`` (no connection free), and
  ``httpx.UnsupportedProtocol``/``httpx.InvalidURL`` (refused before any
  socket). httpcore raises these only while obtaining a connection, before
  the first byte of the request is written. ``httpx.LocalProtocolError`` too:
  h11 raises it while checking the request it is about to write (say a header
  value with a control character), before handing any byte to the socket; the
  request body is one buffer of known length, so the other cases of h11 (more
  or less body than announced) cannot happen.
* :class:`MaybeSent`: everything else: ``ReadTimeout``, ``WriteTimeout``,
  ``ReadError``, ``WriteError``, ``RemoteProtocolError`` (e.g. the server
  closed a kept-alive connection mid-request), ``CloseError``, an answer not
  complete within ``timeout.total``, and any unexpected exception raised once
  sending began. A partly written request may still have been processed, so
  we say "unknown".

The read timeout bounds each read, not the answer: a server that sends a byte
every few seconds would hold a POST open for minutes. ``timeout.total`` bounds
the whole exchange: the POST runs on a helper thread that the caller stops
waiting for at the deadline (the helper gives up at its next read).
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from syncd.config.models import SimzConfig

#: From simz-openapi.yaml (``syncd.sandbox.simz_spec`` validates what we send against it).
LEAD_PATH_PREFIX = "/api/lead-receive-service/agent/receiveLead/"
API_KEY_HEADER = "X-Company-API-Key"


class SimzTransportError(Exception):
    """The request got no HTTP answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NothingSent(SimzTransportError):
    """The connection never opened: SimZ cannot have seen the request."""


class MaybeSent(SimzTransportError):
    """The request may have reached SimZ, but no answer came back."""


class SubmitCancelled(Exception):
    """``stop`` was set while waiting for the rate limit: nothing was sent."""


_NOTHING_SENT: tuple[type[BaseException], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.InvalidURL,
    httpx.LocalProtocolError,
)


class _DeadlinePassed(Exception):
    """The answer was not complete by the total deadline."""


@dataclass(frozen=True)
class SimzReply:
    """One HTTP answer from SimZ, unread."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    duration: float


def key_fingerprint(api_key: str) -> str:
    """First 12 hex of the key's SHA-256: names a key in the DB and logs, never reveals it."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:12]


class RateLimiter:
    """A thread-safe token bucket: ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._updated = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a token if one is there (0.0), else how long until one will be."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for a token; False if ``stop`` was set first (no token taken)."""
        while True:
            if stop is not None and stop.is_set():
                return False
            wait = self._reserve()
            if wait <= 0:
                return True
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)


class SimzClient:
    """POSTs lead batches to SimZ agents. Thread-safe; call :meth:`close` when done."""

    def __init__(
        self,
        config: SimzConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._transport = transport
        self._clock = clock
        self._lock = threading.Lock()
        # Keyed by API key fingerprint: a per-sync key would add an entry, not a client.
        self._clients: dict[str, httpx.Client] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._keys: dict[str, str] = {}
        self.default_credential = self._register(config.api_key.get_secret_value())

    def _register(self, api_key: str) -> str:
        fingerprint = key_fingerprint(api_key)
        with self._lock:
            if fingerprint not in self._clients:
                config = self._config
                self._keys[fingerprint] = api_key
                self._limiters[fingerprint] = RateLimiter(
                    config.requests_per_second, clock=self._clock
                )
                self._clients[fingerprint] = httpx.Client(
                    base_url=str(config.base_url).rstrip("/"),
                    verify=config.ca_bundle or True,
                    timeout=httpx.Timeout(
                        connect=config.timeout.connect,
                        read=config.timeout.read,
                        write=config.timeout.read,
                        pool=config.timeout.connect,
                    ),
                    headers={
                        API_KEY_HEADER: api_key,
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                        "User-Agent": "syncd",
                    },
                    transport=self._transport,
                    trust_env=False,
                    follow_redirects=False,
                )
        return fingerprint

    @staticmethod
    def path_for(agent_id: str) -> str:
        """The submit path with the agent id URL-encoded (slashes included)."""
        return LEAD_PATH_PREFIX + quote(agent_id, safe="")

    def submit(
        self,
        agent_id: str,
        body: dict[str, Any],
        *,
        stop: threading.Event | None = None,
        credential: str | None = None,
    ) -> SimzReply:
        """POST ``body`` to ``agent_id`` and return the answer, whatever its status.

        Waits for the API key's rate limit first (raises :class:`SubmitCancelled`
        if ``stop`` is set meanwhile). Raises :class:`NothingSent` or
        :class:`MaybeSent` when no answer came back (see the module docstring).
        A POST in flight is never interrupted; ``timeout.total`` bounds the wait.
        """
        fingerprint = credential or self.default_credential
        client = self._clients[fingerprint]
        if not self._limiters[fingerprint].acquire(stop):
            raise SubmitCancelled("stop requested before the request was sent")
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        started = time.perf_counter()
        total = self._config.timeout.total
        exchange = _Exchange(client, self.path_for(agent_id), content, started + total)
        exchange.start()
        exchange.join(total)
        if exchange.is_alive():
            exchange.give_up()
            raise MaybeSent(f"no complete answer within timeout.total ({total:g} s)")
        status, headers, answer = exchange.outcome()
        return SimzReply(status, headers, answer, duration=time.perf_counter() - started)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def __enter__(self) -> SimzClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _Exchange(threading.Thread):
    """One POST on a helper thread, so that the caller can stop waiting at a deadline."""

    def __init__(self, client: httpx.Client, path: str, content: bytes, deadline: float) -> None:
        super().__init__(name="simz-post", daemon=True)
        self._client = client
        self._path = path
        self._content = content
        self._deadline = deadline
        self._abandoned = threading.Event()
        self._result: tuple[int, Mapping[str, str], bytes] | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            with self._client.stream("POST", self._path, content=self._content) as response:
                chunks = []
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if self._abandoned.is_set() or time.perf_counter() > self._deadline:
                        raise _DeadlinePassed("the answer was not complete by the deadline")
                self._result = (response.status_code, response.headers, b"".join(chunks))
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc

    def give_up(self) -> None:
        """The caller stopped waiting: stop reading at the next chunk."""
        self._abandoned.set()

    def outcome(self) -> tuple[int, Mapping[str, str], bytes]:
        """The answer, or the transport failure sorted into NothingSent or MaybeSent."""
        error = self._error
        if error is not None and not isinstance(error, Exception):
            raise error
        if isinstance(error, _NOTHING_SENT):
            raise NothingSent(f"{type(error).__name__}: {error}") from error
        if isinstance(error, _DeadlinePassed):
            raise MaybeSent(f"no complete answer within timeout.total: {error}") from error
        if error is not None:
            raise MaybeSent(f"{type(error).__name__}: {error}") from error
        assert self._result is not None
        return self._result


def check_simz_reachable(config: SimzConfig) -> str:
    """Open a TCP (and, for https, TLS) connection to SimZ's host and close it.

    Sends no HTTP request at all: the API has no harmless endpoint, and a POST
    would queue calls to real people. Raises ``OSError`` (refused, DNS, TLS).
    """
    url = config.base_url
    host = url.host or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    timeout = config.timeout.connect
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if url.scheme == "https":
            context = ssl.create_default_context(cafile=config.ca_bundle)
            with context.wrap_socket(sock, server_hostname=host):
                pass
    return f"simz: ok ({url.scheme}://{host}:{port} accepts connections; no lead was sent)"
