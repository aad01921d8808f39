"""The SimZ HTTP client through httpx.MockTransport: requests, answers, transport errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from syncd.adapters.simz import (
    MaybeSent,
    NothingSent,
    RateLimiter,
    SimzClient,
    SubmitCancelled,
    key_fingerprint,
)
from syncd.config.models import SimzConfig
from syncd.sandbox.simz_spec import validate_request
from tests.clock import MonotonicClock

BODY = {"leads": [{"phoneNumber": "+14155550100", "salesforceId": "00Q000000000001AAA"}]}


def make_client(handler: Callable[[httpx.Request], httpx.Response], **config: object) -> SimzClient:
    settings: dict[str, object] = {
        "api_key": "secret-key-1",
        "base_url": "https://simz.example",
        "requests_per_second": 1000,
        **config,
    }
    return SimzClient(SimzConfig.model_validate(settings), transport=httpx.MockTransport(handler))


class TestRequest:
    def test_request_follows_spec(self) -> None:
        """The POST carries the API key header, a JSON body valid under the spec, the path."""
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, json={"success": True, "batchId": "b"})

        with make_client(handler) as client:
            reply = client.submit("agt_1", BODY)
        assert reply.status == 200
        assert json.loads(reply.body)["batchId"] == "b"
        request = seen[0]
        assert request.method == "POST"
        assert request.url.path == "/api/lead-receive-service/agent/receiveLead/agt_1"
        assert request.headers["X-Company-API-Key"] == "secret-key-1"
        assert request.headers["Content-Type"] == "application/json"
        decoded = json.loads(request.content)
        assert decoded == BODY
        assert validate_request(decoded) == []

    def test_agent_id_is_url_encoded(self) -> None:
        """Slashes, spaces and other reserved characters in an agent id are escaped."""
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, json={})

        with make_client(handler) as client:
            client.submit("a/b c?#é", BODY)
        assert seen[0].url.raw_path.decode() == (
            "/api/lead-receive-service/agent/receiveLead/a%2Fb%20c%3F%23%C3%A9"
        )

    def test_base_url_path_prefix_kept(self) -> None:
        """A base URL with a path keeps it in front of the submit path."""
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, json={})

        with make_client(handler, base_url="https://simz.example/prefix/") as client:
            client.submit("agt", BODY)
        assert seen[0].url.path == "/prefix/api/lead-receive-service/agent/receiveLead/agt"

    def test_error_status_is_returned_not_raised(self) -> None:
        """Any HTTP status comes back as a reply with headers, for the classifier."""

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(429, headers={"Retry-After": "3"}, json={"code": "RATE"})

        with make_client(handler) as client:
            reply = client.submit("agt", BODY)
        assert reply.status == 429
        assert reply.headers["retry-after"] == "3"
        assert reply.duration >= 0

    def test_redirect_not_followed(self) -> None:
        """A 3xx is returned as is (it will be uncertain), never followed with a resend."""
        calls: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request.url.path)
            return httpx.Response(307, headers={"Location": "https://elsewhere.example/x"})

        with make_client(handler) as client:
            assert client.submit("agt", BODY).status == 307
        assert len(calls) == 1

    def test_fingerprint_hides_key(self) -> None:
        """The credential fingerprint is 12 hex digits that do not contain the key."""
        fingerprint = key_fingerprint("secret-key-1")
        assert len(fingerprint) == 12
        assert int(fingerprint, 16) >= 0
        with make_client(lambda r: httpx.Response(200)) as client:
            assert client.default_credential == fingerprint


class TestTransportErrors:
    @pytest.mark.parametrize(
        "error",
        [
            httpx.ConnectError("refused"),
            httpx.ConnectTimeout("slow connect"),
            httpx.PoolTimeout("pool"),
            httpx.UnsupportedProtocol("ftp"),
            httpx.LocalProtocolError("Illegal header value"),
        ],
    )
    def test_nothing_sent(self, error: Exception) -> None:
        """Failures while opening the connection mean nothing was sent."""

        def handler(request: httpx.Request) -> httpx.Response:
            raise error

        with make_client(handler) as client, pytest.raises(NothingSent) as caught:
            client.submit("agt", BODY)
        assert type(error).__name__ in caught.value.reason

    @pytest.mark.parametrize(
        "error",
        [
            httpx.ReadTimeout("slow read"),
            httpx.WriteTimeout("slow write"),
            httpx.ReadError("reset"),
            httpx.WriteError("broken pipe"),
            httpx.RemoteProtocolError("server disconnected"),
            RuntimeError("something else"),
        ],
    )
    def test_maybe_sent(self, error: Exception) -> None:
        """Failures once sending began mean the request may have reached SimZ."""

        def handler(request: httpx.Request) -> httpx.Response:
            raise error

        with make_client(handler) as client, pytest.raises(MaybeSent):
            client.submit("agt", BODY)

    def test_control_character_in_key_sends_nothing(self) -> None:
        """A key ending in a newline is refused by h11 before any byte is written."""
        import socket

        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            port = server.getsockname()[1]
            valid = SimzConfig.model_validate(
                {"api_key": "k-1234", "base_url": f"http://127.0.0.1:{port}"}
            )
            # Config loading refuses such a key; the client must still send nothing.
            config = valid.model_copy(update={"api_key": SecretStr("k-1234\n")})
            with SimzClient(config) as client, pytest.raises(NothingSent) as caught:
                client.submit("agt", BODY)
            assert "LocalProtocolError" in caught.value.reason
            server.settimeout(0.5)
            peer, _address = server.accept()
            with peer:
                peer.settimeout(0.5)
                try:
                    received = peer.recv(1024)
                except TimeoutError:
                    received = b""
            assert received == b""  # the connection opened, but not one byte was written

    def test_real_refused_connection(self) -> None:
        """A closed loopback port gives NothingSent over a real socket."""
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = SimzConfig.model_validate(
            {"api_key": "k-1234", "base_url": f"http://127.0.0.1:{port}"}
        )
        with SimzClient(config) as client, pytest.raises(NothingSent):
            client.submit("agt", BODY)


class TestRateLimiter:
    def test_burst_then_refill(self) -> None:
        """Tokens run out after the burst and come back at the configured rate."""
        clock = MonotonicClock()
        limiter = RateLimiter(2.0, clock=clock)
        assert limiter._reserve() == 0.0
        assert limiter._reserve() == 0.0
        assert limiter._reserve() == pytest.approx(0.5)
        clock.at = 0.5
        assert limiter._reserve() == 0.0

    def test_stop_cancels_wait(self) -> None:
        """A set stop event ends the wait without taking a token."""
        clock = MonotonicClock()
        limiter = RateLimiter(0.001, burst=1, clock=clock)
        assert limiter.acquire() is True
        stop = threading.Event()
        stop.set()
        assert limiter.acquire(stop) is False

    def test_submit_cancelled_sends_nothing(self) -> None:
        """submit raises SubmitCancelled and makes no request when stop is already set."""
        calls: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(request)
            return httpx.Response(200)

        stop = threading.Event()
        stop.set()
        with make_client(handler) as client, pytest.raises(SubmitCancelled):
            client.submit("agt", BODY, stop=stop)
        assert calls == []

    def test_concurrent_acquire_never_over_issues(self) -> None:
        """Threads racing for tokens get exactly the burst, no more."""
        clock = MonotonicClock()
        limiter = RateLimiter(0.001, burst=5, clock=clock)
        granted: list[float] = []

        def take() -> None:
            granted.append(limiter._reserve())

        threads = [threading.Thread(target=take) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert granted.count(0.0) == 5
