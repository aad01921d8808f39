"""The webhook receiver over real HTTP on loopback, committing to a real database (both backends).

A 2xx means the event is committed; the same body is stored once; only the
hook path with a current or previous token is taken; too large, not JSON and
odd framing are refused and never stored; a database that refuses or hangs
gets 503, and the retry of a body committed late is a duplicate.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import call_events, call_queries
from syncd.adapters.db import is_sqlite, make_session_factory
from syncd.adapters.orm import CallEvent, CallOutcome
from syncd.config.calls import WebhookConfig
from syncd.entrypoints import webhook_http
from syncd.entrypoints.webhook_http import WebhookReceiver, serve_webhooks
from syncd.metrics import REGISTRY
from tests.integration.operator_rows import T0, add_lead, sf_id

TOKEN = "tok-" + "a1b2c3d4" * 5
OLD_TOKEN = "old-" + "9f8e7d6c" * 5
PATH = f"/hooks/simz/{TOKEN}"
BODY = {"event": "call.completed", "callId": "call_1", "call": {"outcome": "answered"}}


def webhook_config(**overrides: Any) -> WebhookConfig:
    return WebhookConfig.model_validate(
        {
            "listen": "127.0.0.1:0",
            "public_url": "https://hooks.example.com/syncd",
            "token": TOKEN,
            "previous_tokens": [OLD_TOKEN],
            "correlation_secret": "c" * 40,
            "max_body_bytes": 2048,
            **overrides,
        }
    )


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def start(sessions: sessionmaker[Session], wakes: Wakes | None = None) -> WebhookReceiver:
    return serve_webhooks(
        webhook_config(), sessions, receiver="replica-1", on_stored=wakes or Wakes()
    )


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def receiver(engine: Engine, wakes: Wakes) -> Iterator[WebhookReceiver]:
    server = start(make_session_factory(engine), wakes)
    yield server
    server.close()


def request(
    server: WebhookReceiver,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    host, port = server.address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def post(
    server: WebhookReceiver, body: Any = BODY, path: str = PATH, **headers: str
) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return request(server, "POST", path, raw, {"Content-Type": "application/json", **headers})


def raw_exchange(server: WebhookReceiver, data: bytes) -> bytes:
    """Send ``data`` as it is; everything the server answers until it closes."""
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def events(engine: Engine) -> list[CallEvent]:
    with make_session_factory(engine)() as session:
        return list(session.scalars(select(CallEvent).order_by(CallEvent.id)))


def webhooks_total(result: str) -> float:
    return REGISTRY.get_sample_value("syncd_webhooks_total", {"result": result}) or 0.0


class TestStored:
    def test_the_row_is_committed_when_the_200_arrives(self, engine: Engine) -> None:
        """Commits are slowed down: an answer sent before its commit would find no row."""
        sessions = make_session_factory(engine)

        @event.listens_for(sessions, "before_commit")
        def slow_commit(_session: Session) -> None:
            time.sleep(0.3)

        server = start(sessions)
        try:
            assert post(server) == (200, {"status": "stored"})
            [row] = events(engine)
        finally:
            server.close()
        assert json.loads(row.body) == BODY
        assert (row.status, row.receiver) == ("new", "replica-1")

    def test_the_same_body_twice_is_stored_once(
        self, receiver: WebhookReceiver, engine: Engine, wakes: Wakes
    ) -> None:
        before = webhooks_total("duplicate")
        assert post(receiver) == (200, {"status": "stored"})
        assert post(receiver) == (200, {"status": "duplicate"})
        assert len(events(engine)) == 1
        assert wakes.count == 1  # the processor is woken for the new event only
        assert webhooks_total("duplicate") == before + 1

    def test_concurrent_deliveries_of_one_body_store_one_row(
        self, receiver: WebhookReceiver, engine: Engine
    ) -> None:
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda _: post(receiver), range(6)))
        assert sorted(a[1]["status"] for a in answers) == ["duplicate"] * 5 + ["stored"]
        assert len(events(engine)) == 1

    def test_the_body_is_kept_byte_for_byte(
        self, receiver: WebhookReceiver, engine: Engine
    ) -> None:
        body = b'[ {"name": "Zo\xc3\xab",  "n": 1.50} ]'
        assert post(receiver, body) == (200, {"status": "stored"})
        assert events(engine)[0].body == body.decode("utf-8")

    def test_secrets_are_left_out_of_the_stored_headers(
        self, receiver: WebhookReceiver, engine: Engine
    ) -> None:
        secret_headers = {
            "Authorization": "Bearer abc",
            "X-Company-API-Key": "key-1",
            "X-Simz-Signature": "sig",
            "X-Auth-Token": "tok",
            "X-Client-Secret": "sec",
            "Api-Key": "k",
            "Cookie": "session=1",
        }
        assert post(receiver, **secret_headers, **{"X-Request-Id": "r" * 1500})[0] == 200
        [row] = events(engine)
        assert not set(row.headers) & {name.lower() for name in secret_headers}
        assert row.headers["x-request-id"] == "r" * 1000
        assert row.headers["content-type"] == "application/json"
        assert TOKEN not in json.dumps(row.headers)

    def test_a_previous_token_is_taken(self, receiver: WebhookReceiver, engine: Engine) -> None:
        assert post(receiver, path=f"/hooks/simz/{OLD_TOKEN}")[0] == 200
        assert len(events(engine)) == 1

    def test_public_urls_own_path_is_taken(self, receiver: WebhookReceiver, engine: Engine) -> None:
        """public_url is https://hooks.example.com/syncd: a balancer may keep /syncd."""
        assert post(receiver, path=f"/syncd/hooks/simz/{TOKEN}?attempt=2")[0] == 200
        assert len(events(engine)) == 1

    def test_a_chunked_body_is_read(self, receiver: WebhookReceiver, engine: Engine) -> None:
        body = json.dumps(BODY).encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]))
        answer = raw_exchange(
            receiver,
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + chunks
            + b"0\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert json.loads(events(engine)[0].body) == BODY


class TestRefused:
    @pytest.mark.parametrize(
        "path",
        [
            "/hooks/simz/wrong-token-" + "x" * 30,
            f"/hooks/simz/{TOKEN}x",
            f"/hooks/simz/{TOKEN[:-1]}",
            "/hooks/simz/",
            "/",
            f"/other/{TOKEN}",
        ],
    )
    def test_a_wrong_path_or_token_is_404(
        self, receiver: WebhookReceiver, engine: Engine, path: str
    ) -> None:
        status, body = post(receiver, path=path)
        assert status == 404
        assert TOKEN not in json.dumps(body)
        assert events(engine) == []

    def test_other_methods(self, receiver: WebhookReceiver, engine: Engine) -> None:
        """GET on the hook path is 405 (POST only); GET elsewhere is 404."""
        assert request(receiver, "GET", PATH)[0] == 405
        assert request(receiver, "PUT", PATH, json.dumps(BODY).encode())[0] == 405
        assert request(receiver, "GET", "/healthz")[0] == 404
        assert events(engine) == []

    def test_a_body_over_the_limit_is_413_and_not_stored(
        self, receiver: WebhookReceiver, engine: Engine
    ) -> None:
        before = webhooks_total("too_large")
        big = {"padding": "x" * 3000}
        assert post(receiver, big)[0] == 413
        chunked = raw_exchange(
            receiver,
            f"POST {PATH} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"".join(b"400\r\n" + b" " * 1024 + b"\r\n" for _ in range(3))
            + b"0\r\n\r\n",
        )
        assert chunked.startswith(b"HTTP/1.1 413 ")
        assert events(engine) == []
        assert webhooks_total("too_large") == before + 2

    @pytest.mark.parametrize(
        "body",
        [b"not json", b'"a string"', b"42", b"null", b'{"a": 1', b"\xff\xfe{}", b"", b"[" * 2000],
    )
    def test_a_body_that_is_not_a_json_object_or_array_is_400(
        self, receiver: WebhookReceiver, engine: Engine, body: bytes
    ) -> None:
        assert post(receiver, body)[0] == 400
        assert events(engine) == []

    def test_odd_framing(self, receiver: WebhookReceiver, engine: Engine) -> None:
        """No length: 411; a length that is not a number, or two framings: 400."""
        head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\n"
        assert raw_exchange(receiver, (head + "\r\n").encode()).startswith(b"HTTP/1.1 411 ")
        bad = (head + "Content-Length: 1e3\r\n\r\n{}").encode()
        assert raw_exchange(receiver, bad).startswith(b"HTTP/1.1 400 ")
        both = (head + "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}").encode()
        assert raw_exchange(receiver, both).startswith(b"HTTP/1.1 400 ")
        assert raw_exchange(receiver, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert events(engine) == []


class TestDatabaseTrouble:
    def test_an_unreachable_database_is_503(self, engine: Engine) -> None:
        """SimZ may retry a 503; nothing was stored."""
        if is_sqlite(engine):
            broken = create_engine("sqlite:////nonexistent-dir/for/sure/syncd.db")
        else:
            broken = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
        before = webhooks_total("error")
        server = start(make_session_factory(broken))
        try:
            assert post(server) == (503, {"status": "not stored"})
        finally:
            server.close()
            broken.dispose()
        assert webhooks_total("error") == before + 1

    def test_a_locked_database_is_503_and_the_late_commit_is_a_duplicate(
        self, engine: Engine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The commit waits on another writer past the store timeout: 503, and the retry
        of the body (committed once the writer is gone) answers duplicate."""
        monkeypatch.setattr(webhook_http, "STORE_TIMEOUT", 0.5)
        server = start(make_session_factory(engine))
        try:
            with hold_write_lock(engine):
                assert post(server) == (503, {"status": "not stored"})
            for _ in range(200):
                if events(engine):
                    break
                time.sleep(0.05)
            assert post(server) == (200, {"status": "duplicate"})
        finally:
            server.close()
        assert len(events(engine)) == 1


class hold_write_lock:
    """Hold the database's write lock on call_events from another connection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.connection: Any = None

    def __enter__(self) -> None:
        self.connection = self.engine.raw_connection()
        cursor = self.connection.cursor()
        if is_sqlite(self.engine):
            cursor.execute("BEGIN IMMEDIATE")
        else:
            cursor.execute("LOCK TABLE call_events IN EXCLUSIVE MODE")
        cursor.close()

    def __exit__(self, *exc: object) -> None:
        self.connection.rollback()
        self.connection.close()


def test_closing_finishes_the_stores_under_way(engine: Engine) -> None:
    """close() stops accepting, then lets a commit that waits on a lock finish and answer."""
    server = start(make_session_factory(engine))
    answers: list[tuple[int, dict[str, Any]]] = []
    with hold_write_lock(engine):
        client = threading.Thread(target=lambda: answers.append(post(server)))
        client.start()
        for _ in range(200):
            if server._storing:  # the request waits on the lock to be committed
                break
            time.sleep(0.05)
        closing = threading.Thread(target=server.close)
        closing.start()
        time.sleep(0.2)
    closing.join(30)
    client.join(30)
    assert answers == [(200, {"status": "stored"})]
    assert len(events(engine)) == 1
    with pytest.raises(OSError):
        post(server)


class TestListing:
    def test_events_newest_first_with_their_lead_and_outcome(self, engine: Engine) -> None:
        """What ``syncd calls`` shows: each event's status, lead, outcome and write-back."""
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            lead = add_lead(session, "web", sf_id(1), "accepted")
            ids = [
                call_events.store(session, b'{"n": %d}' % n, {}, T0, "replica-1").id
                for n in range(3)
            ]
            matched, unmatched, _new = ids
            session.execute(
                update(CallEvent)
                .where(CallEvent.id == matched)
                .values(status="matched", lead_id=lead.id)
            )
            session.execute(
                update(CallEvent)
                .where(CallEvent.id == unmatched)
                .values(status="unmatched", detail="no correlation value")
            )
            session.add(
                CallOutcome(
                    lead_id=lead.id,
                    event_id=matched,
                    call_key="call_1",
                    sync_name="web",
                    salesforce_id=sf_id(1),
                    outcome="answered",
                    disposition="Interested",
                    received_at=T0,
                    writeback_status="done",
                    attempts=1,
                    task_id="00T000000000001AAA",
                )
            )
        with sessions() as session:
            rows = call_events.listing(session)
            only = call_events.listing(session, "unmatched")
            counts = call_queries.events_by_status(session)
            assert [r.id for r in call_events.listing(session, limit=1)] == [ids[2]]
        assert [row.id for row in rows] == sorted(ids, reverse=True)
        by_id = {row.id: row for row in rows}
        seen = by_id[matched]
        assert (seen.status, seen.sync, seen.salesforce_id) == ("matched", "web", sf_id(1))
        assert (seen.outcome, seen.disposition) == ("answered", "Interested")
        assert (seen.writeback_status, seen.task_id) == ("done", "00T000000000001AAA")
        assert by_id[ids[2]].status == "new" and by_id[ids[2]].salesforce_id is None
        assert [(r.id, r.detail) for r in only] == [(unmatched, "no correlation value")]
        assert counts == {"new": 1, "matched": 1, "unmatched": 1, "unreadable": 0}


def test_silent_clients_do_not_keep_a_hook_out(receiver: WebhookReceiver, engine: Engine) -> None:
    """More half-sent requests than the receiver keeps: the oldest are dropped (long before
    their 30 s to send the request), and a hook gets in meanwhile."""
    host, port = receiver.address.rsplit(":", 1)
    silent = [socket.create_connection((host, int(port)), timeout=60) for _ in range(80)]
    try:
        for sock in silent:
            sock.sendall(f"POST {PATH} HTTP/1.1\r\nContent-Length: 100\r\n\r\n{{".encode())
        assert post(receiver) == (200, {"status": "stored"})
        silent[0].settimeout(10)
        with contextlib.suppress(ConnectionResetError):  # dropped: an abort is a reset
            assert silent[0].recv(100) == b""
    finally:
        for sock in silent:
            sock.close()
    assert len(events(engine)) == 1
