"""The SimZ emulator calls back: the example payload over real HTTP to a listener on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from syncd.domain.call_ref import make_ref, read_ref
from syncd.sandbox.simz import SimzEmulator
from syncd.sandbox.simz_calls import DISPOSITIONS, OUTCOMES
from tests.simz_fixtures import SIMZ_TEST_KEY, SimzFactory

SECRET = b"s" * 32
PHONES = ("+14155550101", "+14155550102", "+14155550103")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    reads: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Listener:
    """A tiny receiver: records every POST and answers ``status``."""

    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hooks(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@pytest.fixture
def listener() -> Iterator[Listener]:
    box: list[Listener] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            pieces: list[bytes] = []
            while sum(map(len, pieces)) < length:
                piece = self.rfile.read1(length - sum(map(len, pieces)))
                if not piece:
                    break
                pieces.append(piece)
            entry = Received(self.path, dict(self.headers), b"".join(pieces), len(pieces))
            with box[0].lock:
                box[0].received.append(entry)
            self.send_response(box[0].status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box.append(Listener(url=f"http://127.0.0.1:{server.server_address[1]}/hooks/simz/tok"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield box[0]
    server.shutdown()
    server.server_close()
    thread.join(5)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def settled(emulator: SimzEmulator) -> None:
    """Every hook placed so far has been posted (or given up)."""
    wait_for(lambda: emulator.state.calls.pending()["queued"] == 0)
    time.sleep(0.1)  # the last one in flight is logged once its answer is read
    wait_for(lambda: all(h["status"] is not None or h["error"] for h in emulator.hooks()))


def lead(sf_id: str, phone: str, ref: bool = True) -> dict[str, Any]:
    custom: dict[str, Any] = {"campaign": "spring", "score": 7}
    if ref:
        custom["syncdRef"] = make_ref(SECRET, sf_id, int(sf_id[-6:-3]))
    return {"phoneNumber": phone, "salesforceId": sf_id, "customData": custom}


def leads(count: int = 3) -> list[dict[str, Any]]:
    return [lead(f"00Q000000000{n:03d}AAA", PHONES[n % 3]) for n in range(1, count + 1)]


def submit(emulator: SimzEmulator, body_leads: list[Any], url: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"leads": body_leads}
    if url is not None:
        body["options"] = {"webhookUrl": url}
    reply = httpx.post(
        emulator.lead_url("agt_1"), json=body, headers={"X-Company-API-Key": SIMZ_TEST_KEY}
    )
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


@pytest.fixture
def simz(simz_emulator_factory: SimzFactory) -> SimzEmulator:
    emulator = simz_emulator_factory()
    emulator.configure_calls(delay=0.05, seed=11)
    return emulator


class TestTheExamplePayload:
    def test_one_hook_per_accepted_lead_with_custom_data_as_received(
        self, simz: SimzEmulator, listener: Listener
    ) -> None:
        """Each accepted lead's call posts exactly the documented shape; rejected ones do not."""
        sent = [*leads(3), lead("00Q000000000009AAA", "not a phone")]
        answer = submit(simz, sent, listener.url)
        assert answer["accepted"] == 3
        wait_for(lambda: len(listener.hooks()) >= 3)
        settled(simz)
        hooks = listener.hooks()
        assert len(hooks) == 3
        by_id = {h.json()["lead"]["salesforceId"]: h for h in hooks}
        assert set(by_id) == {item["salesforceId"] for item in sent[:3]}
        for item in sent[:3]:
            hook = by_id[item["salesforceId"]]
            payload = hook.json()
            assert hook.path == "/hooks/simz/tok"
            assert hook.headers["Content-Type"] == "application/json"
            assert set(payload) == {"event", "callId", "batchId", "lead", "call"}
            assert payload["event"] == "call.completed"
            assert payload["batchId"] == answer["batchId"]
            assert payload["lead"] == {
                "salesforceId": item["salesforceId"],
                "phoneNumber": item["phoneNumber"],
                "customData": item["customData"],
            }
            call = payload["call"]
            assert set(call) == {
                "outcome",
                "disposition",
                "durationSeconds",
                "startedAt",
                "endedAt",
                "recordingUrl",
            }
            assert call["outcome"] in OUTCOMES
            assert call["disposition"] in (*DISPOSITIONS, *OUTCOMES)
            assert isinstance(call["durationSeconds"], int)
            assert call["startedAt"] <= call["endedAt"]
            ref = read_ref(SECRET, payload["lead"]["customData"]["syncdRef"])
            assert ref is not None and ref[0] == item["salesforceId"]
        assert [h["status"] for h in simz.hooks()] == [200, 200, 200]

    def test_no_webhook_url_no_hook(self, simz: SimzEmulator, listener: Listener) -> None:
        """A request without options.webhookUrl is called, but nothing reports back."""
        submit(simz, leads(2), None)
        submit(simz, leads(1), listener.url)
        wait_for(lambda: len(listener.hooks()) >= 1)
        settled(simz)
        assert len(listener.hooks()) == 1

    def test_callbacks_off(self, simz: SimzEmulator, listener: Listener) -> None:
        """``enabled: false`` posts nothing, even with a webhookUrl."""
        simz.configure_calls(enabled=False)
        submit(simz, leads(2), listener.url)
        # Nothing was queued: the decision is taken as the leads are accepted.
        assert simz.state.calls.pending()["queued"] == 0 and simz.hooks() == []
        assert listener.hooks() == []

    def test_forced_disposition(self, simz: SimzEmulator, listener: Listener) -> None:
        """``force`` makes the next calls end as told: here, the first one opts out."""
        simz.force_calls("do_not_call", count=1)
        submit(simz, leads(1), listener.url)
        submit(simz, leads(1), listener.url)
        wait_for(lambda: len(listener.hooks()) >= 2)
        first, second = (h.json()["call"] for h in listener.hooks())
        assert first["outcome"] == "answered" and first["disposition"] == "do_not_call"
        assert simz.state.calls.pending()["forced"] == []
        assert second["disposition"] in (*DISPOSITIONS, *OUTCOMES)


class TestOneTryNoRetry:
    def test_a_refused_hook_is_not_retried(self, simz: SimzEmulator, listener: Listener) -> None:
        """A 500 from the receiver is logged as such; the hook is posted once."""
        listener.status = 500
        submit(simz, leads(1), listener.url)
        wait_for(lambda: len(simz.hooks()) >= 1)
        time.sleep(0.3)
        assert len(listener.hooks()) == 1
        assert [h["status"] for h in simz.hooks()] == [500]

    def test_an_unreachable_receiver_is_recorded(self, simz: SimzEmulator) -> None:
        """Nobody listening: the failure is recorded, nothing raises."""
        submit(simz, leads(1), "http://127.0.0.1:9/hooks/simz/tok")
        wait_for(lambda: len(simz.hooks()) >= 1)
        [hook] = simz.hooks()
        assert hook["status"] is None and "ConnectError" in hook["error"]

    def test_plain_http_off_the_machine_is_refused(self, simz: SimzEmulator) -> None:
        """http:// to another host is not posted (https, or allow_http, would be)."""
        submit(simz, leads(1), "http://192.0.2.10/hooks/simz/tok")
        [hook] = simz.hooks()
        assert hook["status"] is None and "off this machine" in hook["error"]


class TestFaults:
    def test_duplicate(self, simz: SimzEmulator, listener: Listener) -> None:
        """The same body twice, byte for byte."""
        simz.inject_call_fault("duplicate")
        submit(simz, leads(1), listener.url)
        wait_for(lambda: len(listener.hooks()) >= 2)
        first, second = listener.hooks()
        assert first.body == second.body

    def test_out_of_order(self, simz: SimzEmulator, listener: Listener) -> None:
        """A second hook of the same call comes after the first, stamped earlier."""
        simz.force_calls("interested", outcome="answered")
        simz.inject_call_fault("out_of_order")
        submit(simz, leads(1), listener.url)
        wait_for(lambda: len(listener.hooks()) >= 2)
        first, second = (h.json() for h in listener.hooks())
        assert first["callId"] == second["callId"]
        assert second["call"]["endedAt"] < first["call"]["endedAt"]
        assert second["call"]["startedAt"] == first["call"]["startedAt"]
        assert second["call"]["disposition"] != first["call"]["disposition"]

    def test_unknown_lead_forges_the_correlation_value(
        self, simz: SimzEmulator, listener: Listener
    ) -> None:
        """The hook's ref fails its MAC check; without a ref, the Salesforce Id is made up."""
        simz.inject_call_fault("unknown_lead", count=2)
        sent = leads(1)
        submit(simz, sent, listener.url)
        bare = lead("00Q000000000005AAA", PHONES[0], ref=False)
        submit(simz, [bare], listener.url)
        wait_for(lambda: len(listener.hooks()) >= 2)
        forged, made_up = (h.json()["lead"] for h in listener.hooks())
        genuine = sent[0]["customData"]["syncdRef"]
        assert read_ref(SECRET, genuine) is not None
        assert forged["customData"]["syncdRef"] != genuine
        assert forged["customData"]["syncdRef"].rsplit(".", 1)[0] == genuine.rsplit(".", 1)[0]
        assert read_ref(SECRET, forged["customData"]["syncdRef"]) is None
        assert forged["customData"]["campaign"] == "spring"
        assert made_up["salesforceId"] != bare["salesforceId"]
        assert made_up["customData"] == bare["customData"]

    def test_oversized(self, simz: SimzEmulator, listener: Listener) -> None:
        """A body over 64 KiB, still the example payload plus a transcript."""
        simz.inject_call_fault("oversized")
        submit(simz, leads(1), listener.url)
        wait_for(lambda: len(listener.hooks()) >= 1)
        [hook] = listener.hooks()
        assert len(hook.body) > 64 * 1024
        assert len(json.loads(hook.body)["call"]["transcript"]) > 64 * 1024

    def test_slow(self, simz: SimzEmulator, listener: Listener) -> None:
        """The body arrives whole, in many separate pieces."""
        simz.configure_calls(slow_seconds=0.6)
        simz.inject_call_fault("slow")
        submit(simz, leads(1), listener.url)
        wait_for(lambda: len(listener.hooks()) >= 1)
        [hook] = listener.hooks()
        assert hook.reads > 1
        assert hook.json()["lead"]["salesforceId"] == leads(1)[0]["salesforceId"]
        assert int(hook.headers["Content-Length"]) == len(hook.body)

    def test_fault_rates_apply_to_a_share(self, simz: SimzEmulator, listener: Listener) -> None:
        """A rate of 1 gives every call the fault."""
        simz.configure_calls(fault_rates={"duplicate": 1.0})
        submit(simz, leads(2), listener.url)
        wait_for(lambda: len(listener.hooks()) >= 4)
        settled(simz)
        assert len(listener.hooks()) == 4


class TestSeeded:
    def calls_of(self, factory: SimzFactory, listener: Listener, seed: int) -> list[Any]:
        emulator = factory()
        emulator.configure_calls(delay=0, seed=seed, fault_rates={"duplicate": 0.3})
        before = len(listener.hooks())
        submit(emulator, leads(3), listener.url)
        submit(emulator, leads(3), listener.url)  # the same leads again: other calls
        settled(emulator)
        count = len(emulator.hooks())
        wait_for(lambda: len(listener.hooks()) >= before + count)
        got = [h.json() for h in listener.hooks()[before:]]
        keys = ("outcome", "disposition", "durationSeconds")
        return sorted(
            (p["callId"], p["lead"]["salesforceId"], *(p["call"][k] for k in keys)) for p in got
        )

    def test_seeded_runs_repeat(
        self, simz_emulator_factory: SimzFactory, listener: Listener
    ) -> None:
        """The same seed and leads: the same calls, faults included; another seed differs."""
        first = self.calls_of(simz_emulator_factory, listener, 5)
        again = self.calls_of(simz_emulator_factory, listener, 5)
        other = self.calls_of(simz_emulator_factory, listener, 6)
        assert first == again
        assert len({row[0] for row in first}) == 6  # a second acceptance is another call
        assert other != first


class TestControlApi:
    def test_settings_faults_and_force_over_http(
        self, simz: SimzEmulator, listener: Listener
    ) -> None:
        """The control routes change the settings, queue faults and forced calls, list hooks."""
        base = simz.control_url
        put = httpx.put(base + "calls/settings", json={"delay": 0, "outcomes": {"busy": 1}})
        assert put.status_code == 200 and put.json()["settings"]["outcomes"] == {"busy": 1}
        fault = httpx.post(base + "calls/faults", json={"kind": "duplicate", "count": 1})
        assert fault.json()["faults"] == [{"kind": "duplicate", "remaining": 1}]
        force = httpx.post(base + "calls/force", json={"disposition": "callback"})
        assert force.json()["forced"][0]["disposition"] == "callback"
        submit(simz, leads(2), listener.url)
        wait_for(lambda: len(listener.hooks()) >= 3)
        settled(simz)
        state = httpx.get(base + "calls").json()
        assert [h["fault"] for h in state["hooks"]] == ["duplicate", "duplicate", None]
        assert state["hooks"][0]["body"]["call"]["disposition"] == "callback"
        assert state["hooks"][2]["body"]["call"]["outcome"] == "busy"

    @pytest.mark.parametrize(
        ("route", "body"),
        [
            ("calls/settings", {"delay": -1}),
            ("calls/settings", {"outcomes": {"hung_up": 1}}),
            ("calls/settings", {"fault_rates": {"duplicate": 2}}),
            ("calls/settings", {"colour": "red"}),
            ("calls/faults", {"kind": "late"}),
            ("calls/faults", {"kind": "duplicate", "count": 0}),
            ("calls/force", {"disposition": "maybe"}),
            ("calls/force", {}),
        ],
    )
    def test_bad_values_are_400(self, simz: SimzEmulator, route: str, body: Any) -> None:
        reply = httpx.post(simz.control_url + route, json=body)
        assert reply.status_code == 400 and reply.json()["error"]


class TestCommandLine:
    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (["--hook-fault", "late=0.1"], "KIND=RATE"),
            (["--hook-fault", "duplicate=2"], "from 0 to 1"),
            (["--outcomes", "answered=x"], "name=weight"),
            (["--dispositions", "maybe=1"], "unknown value"),
        ],
    )
    def test_bad_call_options_end_with_a_clear_error(self, args: list[str], words: str) -> None:
        from syncd.entrypoints.cli_sandbox_simz import simz

        result = CliRunner().invoke(simz, ["--port", "0", *args])
        assert result.exit_code == 1 and words in result.output, result.output

    def test_help_says_the_payload_is_an_example(self) -> None:
        from syncd.entrypoints.cli_sandbox_simz import simz

        result = CliRunner().invoke(simz, ["--help"])
        assert "is an EXAMPLE, not SimZ's contract" in " ".join(result.output.split())
