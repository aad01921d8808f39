"""The SimZ emulator over real HTTP on loopback: every status, every fault, its records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from syncd.sandbox.simz import SimzEmulator
from syncd.sandbox.simz_spec import validate_schema
from tests.simz_fixtures import SimzFactory, assert_no_violations, simz_config_for

KEY = "test-key"
REPO = Path(__file__).resolve().parents[2]
SYNCD = Path(sys.executable).with_name("syncd")


def lead(sf_id: str, phone: str = "+14155552671", **fields: Any) -> dict[str, Any]:
    return {"phoneNumber": phone, "salesforceId": sf_id, **fields}


def path_for(agent_id: str) -> str:
    return f"/api/lead-receive-service/agent/receiveLead/{quote(agent_id, safe='')}"


@pytest.fixture
def client(simz_emulator: SimzEmulator) -> Iterator[httpx.Client]:
    """An httpx client with the right key, reusing its connection as the real client does."""
    with httpx.Client(
        base_url=simz_emulator.url, headers={"X-Company-API-Key": KEY}, timeout=30
    ) as c:
        yield c


def submit(
    client: httpx.Client, leads: list[Any], agent: str = "agt_1", **kw: Any
) -> httpx.Response:
    return client.post(path_for(agent), json={"leads": leads}, **kw)


class TestAuthentication:
    @pytest.mark.allow_invalid_requests
    def test_a_missing_key_is_401_and_a_spec_violation(self, simz_emulator: SimzEmulator) -> None:
        """Without X-Company-API-Key the answer is a 401 ErrorResponse and nothing is recorded."""
        reply = httpx.post(simz_emulator.url + path_for("agt_1"), json={"leads": [lead("a")]})
        assert reply.status_code == 401
        assert validate_schema("ErrorResponse", reply.json()) == []
        assert reply.json()["success"] is False
        assert simz_emulator.received() == []
        assert "X-Company-API-Key" in simz_emulator.schema_violations()[0]["problems"][0]

    def test_a_wrong_key_is_401(self, simz_emulator: SimzEmulator) -> None:
        """A wrong key is refused with 401 before the body or the agent is looked at."""
        reply = httpx.post(
            simz_emulator.url + path_for("no_such_agent"),
            json={"leads": [lead("a")]},
            headers={"X-Company-API-Key": "wrong"},
        )
        assert reply.status_code == 401
        assert reply.json()["code"] == "UNAUTHORIZED"
        assert simz_emulator.received() == []


class TestRequestBody:
    @pytest.mark.allow_invalid_requests
    def test_a_body_that_is_not_json_is_400(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A body that does not parse is a 400 ErrorResponse and a recorded violation."""
        reply = client.post(
            path_for("agt_1"), content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert reply.status_code == 400
        assert validate_schema("ErrorResponse", reply.json()) == []
        assert "not JSON" in simz_emulator.schema_violations()[0]["problems"][0]

    @pytest.mark.allow_invalid_requests
    def test_a_body_breaking_the_schema_is_400_naming_the_problem(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A lead without phoneNumber makes the whole request a 400; nothing is recorded."""
        reply = submit(client, [lead("a"), {"salesforceId": "b"}])
        assert reply.status_code == 400
        assert "leads[1]: 'phoneNumber' is a required property" in reply.json()["message"]
        assert simz_emulator.received() == []
        assert simz_emulator.schema_violations()[0]["problems"] == [
            "leads[1]: 'phoneNumber' is a required property"
        ]

    @pytest.mark.allow_invalid_requests
    def test_a_body_checked_before_the_agent(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A bad body to an unknown agent is a 400, not a 404: the body is checked first."""
        assert submit(client, "not a list", agent="nobody").status_code == 400  # type: ignore[arg-type]

    @pytest.mark.allow_invalid_requests
    def test_a_wrong_content_type_is_a_violation(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """The spec's body is application/json; anything else is refused and recorded."""
        reply = client.post(
            path_for("agt_1"), content=b'{"leads": []}', headers={"Content-Type": "text/plain"}
        )
        assert reply.status_code == 400
        assert "Content-Type" in simz_emulator.schema_violations()[0]["problems"][0]


class TestAgents:
    def test_an_unknown_agent_is_404(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A valid request to an agent that does not exist is a 404 ErrorResponse."""
        reply = submit(client, [lead("a")], agent="agt_404")
        assert reply.status_code == 404
        assert validate_schema("ErrorResponse", reply.json()) == []
        assert simz_emulator.received() == []

    def test_the_agent_id_is_url_decoded(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """An agent id with reserved characters reaches the agent once URL-decoded."""
        simz_emulator.add_agent("team a/7")
        assert submit(client, [lead("a")], agent="team a/7").status_code == 200
        assert simz_emulator.received()[0]["agentId"] == "team a/7"

    @pytest.mark.allow_invalid_requests
    def test_a_path_outside_the_spec_is_404_and_a_violation(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """Calling anything but the documented operation is recorded as a violation."""
        assert client.post("/api/leads", json={"leads": []}).status_code == 404
        assert client.get(path_for("agt_1")).status_code == 405
        assert len(simz_emulator.schema_violations()) == 2


class TestCredits:
    def test_zero_credits_is_402_with_the_documented_body(
        self, simz_emulator_factory: SimzFactory
    ) -> None:
        """At a zero balance the batch is refused with the InsufficientCreditsResponse body."""
        emulator = simz_emulator_factory(credits=0)
        reply = httpx.post(
            emulator.url + path_for("agt_2"),
            json={"leads": [lead("a"), lead("b")]},
            headers={"X-Company-API-Key": KEY},
        )
        assert reply.status_code == 402
        body = reply.json()
        assert validate_schema("InsufficientCreditsResponse", body) == []
        assert body["success"] is False
        assert body["code"] == "INSUFFICIENT_CREDITS"
        data = body["data"]
        assert data["agentId"] == "agt_2"
        assert data["companyId"]
        assert (data["totalCredits"], data["totalLeads"]) == (0, 2)
        assert (data["acceptedLeads"], data["rejectedLeads"]) == (0, 2)
        assert data["reason"] and data["actionRequired"]
        assert emulator.received() == []

    def test_a_batch_larger_than_the_balance_is_accepted_then_402(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A positive balance accepts the whole batch (going below zero); the next one is 402."""
        simz_emulator.set_credits(2)
        assert submit(client, [lead("a"), lead("b"), lead("c")]).json()["accepted"] == 3
        assert simz_emulator.credits == -1
        reply = submit(client, [lead("d")])
        assert reply.status_code == 402
        assert reply.json()["data"]["totalCredits"] == -1

    def test_only_accepted_leads_cost_credits(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A lead rejected per lead costs nothing; None means unlimited again."""
        simz_emulator.set_credits(5)
        submit(client, [lead("a"), lead("b", phone="4155552671")])
        assert simz_emulator.credits == 4
        simz_emulator.set_credits(None)
        assert submit(client, [lead("c")]).status_code == 200
        assert simz_emulator.credits is None

    def test_an_unknown_agent_is_404_even_without_credits(
        self, simz_emulator_factory: SimzFactory
    ) -> None:
        """The agent is checked before the credits."""
        emulator = simz_emulator_factory(credits=0)
        reply = httpx.post(
            emulator.url + path_for("agt_9"),
            json={"leads": [lead("a")]},
            headers={"X-Company-API-Key": KEY},
        )
        assert reply.status_code == 404


class TestAccepted:
    def test_mixed_phone_numbers_are_rejected_by_index(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """Non-E.164 numbers are rejected in errors[] by index; the others are accepted."""
        leads = [
            lead("a"),
            lead("b", phone="(415) 555-2671"),
            lead("c", phone="+442071838750"),
            lead("d", phone="+0123"),
        ]
        reply = submit(client, leads)
        assert reply.status_code == 200
        body = reply.json()
        assert validate_schema("LeadSubmissionResponse", body) == []
        assert (body["success"], body["accepted"], body["rejected"]) == (True, 2, 2)
        assert [e["index"] for e in body["errors"]] == [1, 3]
        assert {e["code"] for e in body["errors"]} == {"INVALID_PHONE_NUMBER"}
        received = {r["salesforceId"]: r for r in simz_emulator.received()}
        assert received["a"]["accepted"] and received["c"]["accepted"]
        assert not received["b"]["accepted"] and received["b"]["batchId"] is None
        assert received["a"]["batchId"] == body["batchId"]

    def test_every_batch_gets_its_own_id(self, client: httpx.Client) -> None:
        """Two submissions get two different batch ids."""
        first = submit(client, [lead("a")]).json()["batchId"]
        second = submit(client, [lead("b")]).json()["batchId"]
        assert first and second and first != second

    def test_a_submission_with_nothing_accepted_has_no_batch(self, client: httpx.Client) -> None:
        """When every lead is rejected the 200 carries batchId null, as the spec allows."""
        body = submit(client, [lead("a", phone="555")]).json()
        assert (body["accepted"], body["rejected"], body["batchId"]) == (0, 1, None)

    def test_concurrent_submissions_are_all_recorded(self, simz_emulator: SimzEmulator) -> None:
        """Submissions from several threads at once are each recorded exactly once."""

        def send(worker: int) -> None:
            with httpx.Client(base_url=simz_emulator.url, headers={"X-Company-API-Key": KEY}) as c:
                for n in range(10):
                    ids = [f"w{worker}-{n}-{i}" for i in range(20)]
                    assert submit(c, [lead(i) for i in ids]).status_code == 200

        threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        counts = simz_emulator.received_counts()
        assert len(counts) == 4 * 10 * 20
        assert set(counts.values()) == {1}


class TestFaults:
    def test_429_carries_retry_after_then_service_resumes(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A 429 fault answers the next N submissions with Retry-After, then normal service."""
        simz_emulator.inject("429", count=2, retry_after=7)
        for _ in range(2):
            reply = submit(client, [lead("a")])
            assert reply.status_code == 429
            assert reply.headers["Retry-After"] == "7"
            assert validate_schema("ErrorResponse", reply.json()) == []
        assert submit(client, [lead("a")]).status_code == 200
        assert simz_emulator.received_counts() == {"a": 1}

    def test_429_can_omit_retry_after(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """retry_after=None gives a 429 without the header."""
        simz_emulator.inject("429", retry_after=None)
        reply = submit(client, [lead("a")])
        assert reply.status_code == 429 and "Retry-After" not in reply.headers

    def test_503_is_a_billing_check_failure(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A 503 fault answers the BillingCheckFailedResponse body and queues nothing."""
        simz_emulator.inject("503")
        reply = submit(client, [lead("a")], agent="agt_2")
        assert reply.status_code == 503
        assert validate_schema("BillingCheckFailedResponse", reply.json()) == []
        assert reply.json()["data"]["agentId"] == "agt_2"
        assert simz_emulator.received() == []

    @pytest.mark.parametrize("kind", ["400", "413"])
    def test_client_error_faults_record_nothing(
        self, simz_emulator: SimzEmulator, client: httpx.Client, kind: str
    ) -> None:
        """Injected 400 and 413 answer an ErrorResponse and queue nothing."""
        simz_emulator.inject(kind)
        reply = submit(client, [lead("a")])
        assert reply.status_code == int(kind)
        assert validate_schema("ErrorResponse", reply.json()) == []
        assert simz_emulator.received() == []

    def test_500_records_the_batch_by_default(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A 500 fault processes the batch first: the leads were queued, yet the answer failed."""
        simz_emulator.inject("500")
        assert submit(client, [lead("a")]).status_code == 500
        assert simz_emulator.received_counts() == {"a": 1}

    def test_500_without_record_queues_nothing(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """record=False gives a 500 that queued nothing."""
        simz_emulator.inject("500", record=False)
        assert submit(client, [lead("a")]).status_code == 500
        assert simz_emulator.received() == []

    def test_delay_then_a_normal_answer(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A delay fault holds the answer, then answers normally."""
        simz_emulator.inject("delay", seconds=0.2)
        assert submit(client, [lead("a")]).status_code == 200
        assert simz_emulator.requests()[-1]["fault"] == "delay"
        assert simz_emulator.received_counts() == {"a": 1}

    def test_a_client_timing_out_during_a_delay_had_its_leads_queued(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A delayed answer comes after processing: the leads are recorded before the wait."""
        simz_emulator.inject("delay", seconds=3)
        with pytest.raises(httpx.ReadTimeout):
            submit(client, [lead("a")], timeout=httpx.Timeout(30, read=0.2))
        assert simz_emulator.received_counts() == {"a": 1}

    def test_trickle_records_then_answers_byte_by_byte(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A trickle fault processes the batch, then sends a valid answer one byte at a time."""
        simz_emulator.inject("trickle", seconds=0.3, interval=0.01)
        with client.stream("POST", path_for("agt_1"), json={"leads": [lead("a")]}) as reply:
            assert reply.status_code == 200
            chunks = list(reply.iter_raw())
        assert len(chunks) > 10  # many small writes, each quick
        answer = httpx.Response(200, content=b"".join(chunks)).json()
        assert validate_schema("LeadSubmissionResponse", answer) == []
        assert simz_emulator.received_counts() == {"a": 1}

    def test_custom_answers_status_body_and_retry_after_verbatim(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A custom fault answers its status, body and Retry-After as given, queuing nothing."""
        simz_emulator.inject("custom", status=503, body='{"code": "X"}', retry_after="²")
        reply = submit(client, [lead("a")])
        assert (reply.status_code, reply.text, reply.headers["retry-after"]) == (
            503,
            '{"code": "X"}',
            "²",
        )
        assert simz_emulator.received() == []

    @pytest.mark.parametrize(
        "params",
        [{"status": 99}, {"status": "200"}, {"body": 1}, {"retry_after": 5}],
    )
    def test_custom_checks_its_parameters(
        self, simz_emulator: SimzEmulator, params: dict[str, Any]
    ) -> None:
        """A custom fault with a bad status, body or header is refused when injected."""
        with pytest.raises(ValueError):
            simz_emulator.inject("custom", **params)

    def test_a_lost_response_records_the_leads_but_the_client_gets_no_answer(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """The leads are queued and charged, then the connection closes without an answer."""
        simz_emulator.set_credits(10)
        simz_emulator.inject("lost_response")
        with pytest.raises(httpx.TransportError):
            submit(client, [lead("a"), lead("b")])
        assert simz_emulator.received_counts() == {"a": 1, "b": 1}
        assert simz_emulator.credits == 8
        assert simz_emulator.requests()[-1]["status"] is None
        assert submit(client, [lead("c")]).status_code == 200  # the client reconnects

    def test_garbage_200_records_the_leads_with_an_unreadable_body(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A 200 whose body is not JSON, after the leads were queued."""
        simz_emulator.inject("garbage_200")
        reply = submit(client, [lead("a")])
        assert reply.status_code == 200
        with pytest.raises(ValueError):
            reply.json()
        assert simz_emulator.received_counts() == {"a": 1}

    def test_reset_closes_the_connection_and_records_nothing(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """The connection is reset before the body is read: an error, nothing queued."""
        simz_emulator.inject("reset")
        with pytest.raises(httpx.TransportError):
            submit(client, [lead("a")])
        assert simz_emulator.received() == []
        assert simz_emulator.requests()[-1]["fault"] == "reset"

    def test_faults_apply_in_the_order_injected(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """Several faults are used first in, first out, one per submission."""
        simz_emulator.inject("503")
        simz_emulator.inject("429", count=2)
        statuses = [submit(client, [lead("a")]).status_code for _ in range(4)]
        assert statuses == [503, 429, 429, 200]

    @pytest.mark.parametrize(
        ("kind", "count", "params"),
        [
            ("teapot", 1, {}),
            ("429", 0, {}),
            ("503", 1, {"seconds": 1}),
            ("delay", 1, {"seconds": -1}),
        ],
    )
    def test_a_bad_fault_is_refused(
        self, simz_emulator: SimzEmulator, kind: str, count: int, params: dict[str, Any]
    ) -> None:
        """Unknown kinds, counts below one and unknown parameters are errors, not no-ops."""
        with pytest.raises(ValueError):
            simz_emulator.inject(kind, count, **params)
        assert simz_emulator.pending_faults() == []


class TestRecords:
    def test_counts_per_salesforce_id_across_submissions(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """Each salesforceId is counted every time it arrives, accepted or not."""
        submit(client, [lead("a"), lead("b")])
        submit(client, [lead("a"), lead("c", phone="555")], agent="agt_2")
        assert simz_emulator.received_counts() == {"a": 2, "b": 1, "c": 1}
        assert simz_emulator.received_counts(accepted_only=True) == {"a": 2, "b": 1}

    def test_received_leads_carry_agent_batch_and_time(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """A received lead records the agent, the batch, its index, the time and the lead."""
        sent = lead("a", firstName="Ann", customData={"k": 1})
        batch_id = submit(client, [sent], agent="agt_2").json()["batchId"]
        (record,) = simz_emulator.received()
        assert record["agentId"] == "agt_2"
        assert record["batchId"] == batch_id
        assert record["index"] == 0
        assert record["receivedAt"].endswith("+00:00")
        assert record["lead"] == sent

    def test_the_request_log_lists_method_path_and_status(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """Every API request is logged with its status; the control API is not."""
        submit(client, [lead("a")])
        submit(client, [lead("a")], agent="agt_404")
        httpx.get(simz_emulator.control_url + "state")
        log = simz_emulator.requests()
        assert [(r["method"], r["path"], r["status"]) for r in log] == [
            ("POST", path_for("agt_1"), 200),
            ("POST", path_for("agt_404"), 404),
        ]

    def test_reset_forgets_records_and_restores_settings(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """reset() clears leads, requests and faults and restores agents and credits."""
        simz_emulator.add_agent("agt_3")
        simz_emulator.set_credits(0)
        simz_emulator.inject("429")
        submit(client, [lead("a")])
        simz_emulator.reset()
        assert simz_emulator.received() == [] and simz_emulator.requests() == []
        assert simz_emulator.pending_faults() == [] and simz_emulator.credits is None
        assert submit(client, [lead("a")], agent="agt_3").status_code == 404

    def test_a_config_for_the_emulator_points_at_it(self, simz_emulator: SimzEmulator) -> None:
        """simz_config_for builds a SimzConfig with the emulator's URL and key."""
        config = simz_config_for(simz_emulator, batch_size=7)
        assert str(config.base_url).rstrip("/") == simz_emulator.url
        assert config.api_key.get_secret_value() == KEY
        assert config.batch_size == 7


class TestControlApi:
    def test_the_control_api_mirrors_the_python_methods(
        self, simz_emulator: SimzEmulator, client: httpx.Client
    ) -> None:
        """Agents, credits, faults, records and reset all work over HTTP with JSON."""
        control = httpx.Client(base_url=simz_emulator.control_url, timeout=30)
        with control:
            assert control.post("agents", json={"agentId": "agt_9"}).status_code == 200
            assert control.put("credits", json={"credits": 5}).json() == {"credits": 5}
            faults = control.post("faults", json={"kind": "429", "count": 1, "retry_after": 3})
            assert faults.json()["faults"] == [{"kind": "429", "remaining": 1, "retry_after": 3}]
            assert submit(client, [lead("a")], agent="agt_9").headers["Retry-After"] == "3"
            assert submit(client, [lead("a")], agent="agt_9").status_code == 200
            (received,) = control.get("received").json()["leads"]
            assert received["agentId"] == "agt_9"
            assert control.get("received/counts").json() == {"counts": {"a": 1}}
            assert [r["status"] for r in control.get("requests").json()["requests"]] == [429, 200]
            state = control.get("state").json()
            assert state["credits"] == 4 and "agt_9" in state["agents"]
            assert control.get("violations").json() == {"violations": []}
            assert control.delete("agents/agt_9").status_code == 200
            assert control.post("reset").json() == {"reset": True}
            assert control.get("received").json() == {"leads": []}

    def test_bad_control_requests_are_400_or_404(self, simz_emulator: SimzEmulator) -> None:
        """A bad control request explains itself instead of being ignored."""
        with httpx.Client(base_url=simz_emulator.control_url, timeout=30) as control:
            assert control.post("faults", json={"kind": "teapot"}).status_code == 400
            assert control.put("credits", json={"credits": "many"}).status_code == 400
            assert control.post("agents", json={}).status_code == 400
            assert control.post("agents", content=b"{oops").status_code == 400
            assert control.get("nothing-here").status_code == 404
        assert simz_emulator.pending_faults() == []


class TestViolationGuard:
    def test_the_guard_fails_a_test_on_any_violation(
        self, simz_emulator_factory: SimzFactory
    ) -> None:
        """assert_no_violations fails with the problem when a request broke the spec."""
        emulator = simz_emulator_factory()
        httpx.post(emulator.url + path_for("agt_1"), json={"leads": [{}]})
        with pytest.raises(pytest.fail.Exception, match="'phoneNumber' is a required property"):
            assert_no_violations([emulator])
        emulator.reset()  # so this test's own teardown passes

    def test_the_fixture_fails_unmarked_tests_at_teardown(self, tmp_path: Path) -> None:
        """In a real pytest run, an invalid request errors an unmarked test but not a marked one."""
        (tmp_path / "test_guard.py").write_text(
            textwrap.dedent(
                """
                import httpx, pytest

                PATH = "/api/lead-receive-service/agent/receiveLead/agt_1"

                def test_unmarked(simz_emulator):
                    httpx.post(simz_emulator.url + PATH, json={"leads": "x"},
                               headers={"X-Company-API-Key": "test-key"})

                @pytest.mark.allow_invalid_requests
                def test_marked(simz_emulator):
                    httpx.post(simz_emulator.url + PATH, json={"leads": "x"},
                               headers={"X-Company-API-Key": "test-key"})

                def test_valid(simz_emulator):
                    httpx.post(simz_emulator.url + PATH, json={"leads": []},
                               headers={"X-Company-API-Key": "test-key"})
                """
            )
        )
        (tmp_path / "pytest.ini").write_text("[pytest]\n")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "tests.simz_fixtures",
                "-p",
                "no:cacheprovider",
                str(tmp_path),
            ],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "3 passed, 1 error" in result.stdout, result.stdout + result.stderr
        assert "ERROR at teardown of test_unmarked" in result.stdout


class TestCli:
    def test_syncd_sandbox_simz_serves_until_sigterm(self) -> None:
        """The CLI prints its URLs, answers a submission, and exits 0 on SIGTERM."""
        process = subprocess.Popen(
            [
                str(SYNCD),
                "sandbox",
                "simz",
                "--port",
                "0",
                "--api-key",
                "k1",
                "--agent",
                "agt_x",
                "--credits",
                "3",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            first = process.stdout.readline().strip()
            second = process.stdout.readline().strip()
            assert first.startswith("SimZ emulator on http://127.0.0.1:")
            url = first.rsplit(" ", 1)[1]
            assert second == f"control API on {url}/__sandbox/"
            reply = httpx.post(
                url + path_for("agt_x"),
                json={"leads": [lead("a")]},
                headers={"X-Company-API-Key": "k1"},
                timeout=30,
            )
            assert reply.status_code == 200 and reply.json()["accepted"] == 1
            assert httpx.get(url + "/__sandbox/state", timeout=30).json()["credits"] == 2
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    def test_a_busy_port_is_one_clear_line(self, simz_emulator: SimzEmulator) -> None:
        """A port already in use exits 1 with one line naming it, not a traceback."""
        port = simz_emulator.url.rsplit(":", 1)[1]
        result = subprocess.run(
            [str(SYNCD), "sandbox", "simz", "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert result.stderr.startswith(f"syncd: cannot listen on 127.0.0.1:{port}")
        assert "Traceback" not in result.stderr
