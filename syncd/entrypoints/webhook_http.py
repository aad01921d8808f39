"""The call-outcome webhook receiver: ``POST /hooks/simz/<token>``, committed before 2xx.

SimZ posts call outcomes to the ``options.webhookUrl`` syncd sends with each
lead (``simz.webhook.public_url`` + ``/hooks/simz/`` + the token). The SimZ
spec documents no signature, so the unguessable token in the path is the
authentication. Hooks may be sent once, with no retry: each accepted POST is
committed to ``call_events`` (:mod:`syncd.adapters.call_events`) before the
answer, so a 2xx always means the event is on disk, and the same body twice
is stored once.

Answers (all JSON, each closing its connection):

* ``200 {"status": "stored"}`` -- committed now; ``200 {"status": "duplicate"}``
  -- the same body was committed before;
* ``404`` -- any other path, or a token that is neither ``token`` nor one of
  ``previous_tokens`` (compared in constant time);
* ``405`` -- the right path with a method other than POST;
* ``411`` -- a POST with neither ``Content-Length`` nor ``Transfer-Encoding:
  chunked``; ``400`` -- a body that is not UTF-8 JSON holding an object or an
  array, an unreadable request line or length, or another transfer coding;
  chunked bodies are read, bounded like the others;
* ``413`` -- a body over ``max_body_bytes`` (by its Content-Length, before
  reading it, or while reading a chunked one): nothing is stored;
* ``503`` -- the database refused or did not answer in :data:`STORE_TIMEOUT`
  seconds, or :data:`MAX_STORING` stores are already waiting: the sender
  should retry; a retry of a body that was committed after all is a duplicate.

It runs on every replica (any replica may receive); the processing of the
stored events is led by each sync's leader. After each new event the
``on_stored`` callback wakes the processor.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote, urlsplit

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import call_events
from syncd.adapters.orm import utcnow
from syncd.config.calls import HOOK_PATH, WebhookConfig
from syncd.entrypoints.cli_common import describe_db_error
from syncd.entrypoints.http_loop import Answer, LoopServer, Request, header_lines, request_line
from syncd.logs import get_logger
from syncd.metrics import WEBHOOKS

log = get_logger("syncd.webhook")

#: Seconds a client gets to send its whole request, head and body.
READ_TIMEOUT = 30.0
#: Seconds the commit may take before the answer is 503.
STORE_TIMEOUT = 30.0
#: Stores waiting for a worker or the database beyond this many: 503 at once.
MAX_STORING = 32
#: Worker threads that validate and commit bodies.
WORKERS = 4
#: Seconds requests being stored get to finish when the receiver closes.
CLOSE_GRACE = 10.0
#: The longest chunk-size line of a chunked body.
_MAX_CHUNK_LINE = 1024
_HEX = b"0123456789abcdefABCDEF"


@dataclass
class HookRequest(Request):
    """A request to the receiver; ``refused`` is set (with its answer) when read already."""

    refused: tuple[str, Answer] | None = None


def _refuse(request: HookRequest, result: str, answer: Answer) -> HookRequest:
    request.refused = (result, answer)
    request.read_whole = False
    return request


def _status(status: int, text: str, *headers: tuple[str, str]) -> Answer:
    return Answer.json(status, {"status": text}, *headers)


NOT_FOUND = _status(404, "not found")
TOO_LARGE = _status(413, "too large")


class WebhookReceiver(LoopServer):
    """Receives hooks on ``webhook.listen``; see the module docstring for the answers.

    ``sessions`` opens the sessions the events are committed in (one per POST,
    on a worker thread); ``receiver`` names this replica in each row;
    ``on_stored`` is called (on the worker thread) after each new event's commit.
    """

    read_timeout = READ_TIMEOUT
    close_grace = CLOSE_GRACE

    def __init__(
        self,
        webhook: WebhookConfig,
        sessions: sessionmaker[Session],
        *,
        receiver: str,
        on_stored: Callable[[], None] = lambda: None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(webhook.host_port(), name="syncd-webhook", workers=WORKERS)
        self.webhook = webhook
        self.sessions = sessions
        self.receiver = receiver
        self.on_stored = on_stored
        self.now = now
        self.max_body = webhook.max_body_bytes
        tokens = [webhook.token, *webhook.previous_tokens]
        self._tokens = [_hashed(t.get_secret_value()) for t in tokens]
        self._prefixes = [HOOK_PATH]
        public_path = (urlsplit(str(webhook.public_url)).path or "").rstrip("/")
        if public_path:
            # A load balancer that forwards the path as it is keeps public_url's own path.
            self._prefixes.append(public_path + HOOK_PATH)
        self._storing = 0

    # ------------------------------------------------------------------ reading

    async def read_request(self, reader: asyncio.StreamReader) -> HookRequest:
        """The head, then the body when the path, method and length allow it."""
        head = await reader.readuntil(b"\r\n\r\n")
        method, path = request_line(head)
        request = HookRequest(method, path, header_lines(head))
        if method is None:
            return _refuse(request, "bad_request", _status(400, "bad request"))
        if not self._authorised(path):
            return _refuse(request, "not_found", NOT_FOUND)
        if method != "POST":
            answer = _status(405, "method not allowed", ("Allow", "POST"))
            return _refuse(request, "bad_request", answer)
        return await self._read_body(request, reader)

    async def _read_body(self, request: HookRequest, reader: asyncio.StreamReader) -> HookRequest:
        headers = dict(request.headers)
        lengths = {value for name, value in request.headers if name == "content-length"}
        coding = headers.get("transfer-encoding")
        if coding is not None:
            if coding.lower() != "chunked" or lengths:
                return _refuse(request, "bad_request", _status(400, "unsupported framing"))
            body = await _read_chunked(reader, self.max_body)
            if body is None:
                return _refuse(request, "too_large", TOO_LARGE)
            request.body = body
            return request
        if not lengths:
            return _refuse(request, "bad_request", _status(411, "length required"))
        text = lengths.pop() if len(lengths) == 1 else ""
        if not (text.isascii() and text.isdigit()):
            return _refuse(request, "bad_request", _status(400, "bad content-length"))
        length = int(text)
        if length > self.max_body:
            return _refuse(request, "too_large", TOO_LARGE)
        request.body = await reader.readexactly(length)
        return request

    def _authorised(self, path: str) -> bool:
        """The path is a hook path with a current or previous token (constant time)."""
        for prefix in self._prefixes:
            if path.startswith(prefix):
                offered = _hashed(unquote(path[len(prefix) :]))
                found = False
                for token in self._tokens:
                    found |= hmac.compare_digest(offered, token)
                return found
        return False

    # ------------------------------------------------------------------ answering

    async def answer(self, request: Request) -> Answer:
        assert isinstance(request, HookRequest)
        if request.refused is not None:
            result, refusal = request.refused
            WEBHOOKS.labels(result).inc()
            if result != "not_found":
                log.info("webhook refused", status=refusal.status, bytes=len(request.body))
            return refusal
        if self._storing >= MAX_STORING:
            WEBHOOKS.labels("error").inc()
            log.warning("webhook not stored: too many waiting to be stored", waiting=MAX_STORING)
            return _status(503, "busy")
        self._storing += 1
        try:
            work = asyncio.ensure_future(self.run_blocking(self.receive, request))
            answer: Answer = await asyncio.wait_for(asyncio.shield(work), STORE_TIMEOUT)
            return answer
        except TimeoutError:
            WEBHOOKS.labels("error").inc()
            log.error("webhook not stored in time", seconds=STORE_TIMEOUT, bytes=len(request.body))
            return _status(503, "not stored")
        finally:
            self._storing -= 1

    def receive(self, request: Request) -> Answer:
        """Check the body is JSON, commit it, say so (on a worker thread)."""
        problem = not_json(request.body)
        if problem is not None:
            WEBHOOKS.labels("bad_request").inc()
            log.info("webhook refused", status=400, reason=problem, bytes=len(request.body))
            return Answer.json(400, {"status": "bad request", "reason": problem})
        log.debug("webhook storing", bytes=len(request.body))
        try:
            with self.sessions.begin() as session:
                stored = call_events.store(
                    session, request.body, request.headers, self.now(), self.receiver
                )
        except SQLAlchemyError as exc:
            WEBHOOKS.labels("error").inc()
            log.error(
                "webhook not stored: database error",
                error=describe_db_error(exc),
                bytes=len(request.body),
            )
            return _status(503, "not stored")
        result = "stored" if stored.new else "duplicate"
        WEBHOOKS.labels(result).inc()
        log.info("webhook received", event_id=stored.id, new=stored.new, bytes=len(request.body))
        if stored.new:
            try:
                self.on_stored()
            except Exception:
                log.exception("webhook stored; waking the processor failed", event_id=stored.id)
        return _status(200, result)


def not_json(body: bytes) -> str | None:
    """Why ``body`` is not a JSON object or array in UTF-8, or None when it is."""
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    except (ValueError, RecursionError):
        return "the body is not JSON"
    if not isinstance(value, dict | list):
        return "the body is not a JSON object or array"
    return None


def _hashed(token: str) -> bytes:
    """Tokens are compared by their SHA-256, so the comparison takes the same time at any length."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes | None:
    """A chunked body, or None as soon as it is longer than ``limit``.

    A chunk-size line that is not hex raises ``IncompleteReadError`` (the
    connection is dropped, as for a request that never ends).
    """
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        if len(line) > _MAX_CHUNK_LINE or not size_text or size_text.strip(_HEX):
            raise asyncio.IncompleteReadError(line, None)
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > limit:
            return None
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise asyncio.IncompleteReadError(b"", None)
    # Trailers, up to the empty line.
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass
    return bytes(body)


def serve_webhooks(
    webhook: WebhookConfig,
    sessions: sessionmaker[Session],
    *,
    receiver: str,
    on_stored: Callable[[], None] = lambda: None,
) -> WebhookReceiver:
    """Bind ``webhook.listen`` and receive hooks from a daemon thread; ``OSError`` if taken."""
    server = WebhookReceiver(webhook, sessions, receiver=receiver, on_stored=on_stored)
    server.start()
    return server
