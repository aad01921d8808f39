"""The fault matrix, end to end: what an operator sees for each SimZ answer and Salesforce fault.

Every row runs through the real ``syncd run`` subprocess against both
emulators and asserts what the operator can see: the lead's state and audit
trail (``syncd leads --json --history``), the log event (the daemon's JSON
lines, matched by batch id), the metric (``/metrics``, as a delta over the
row) and the status page (``/status.json``). docs/fault-matrix.md is this table.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Daemon, Harness, lead_records

READ_TIMEOUT = 1.0
UNCERTAIN_EVENT = "batch sent, outcome unknown: leads uncertain"
NOTHING_SENT_EVENT = "nothing sent"


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        h.write_config(
            simz={"timeout": {"connect": 2, "read": READ_TIMEOUT}, "batch_size": 10},
            sync={"delivery": {"every": "300ms"}},
        )
        yield h


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(daemon: Daemon) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = daemon.get("/metrics")
    assert status == 200
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], family: str, /, **labels: str
) -> float:
    """Sum of the samples of ``family`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == family and wanted <= lbl)


def leads_json(harness: Harness, *ids: str) -> dict[str, dict[str, Any]]:
    """``syncd leads --json --history`` for these Ids, by Salesforce Id."""
    args = ["leads", "--json", "--history", "--limit", "1000"]
    for sf_id in ids:
        args += ["--id", sf_id]
    result = harness.cli(*args, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return {lead["salesforce_id"]: lead for lead in json.loads(result.stdout)["leads"]}


def ready(daemon: Daemon) -> tuple[int, set[str]]:
    status, body = daemon.get_json("/status.json")
    return status, {str(item["check"]) for item in body.get("failing", [])}


@dataclass
class SimzRow:
    """One SimZ answer: the fault to inject, and what the operator must see."""

    answer: str
    fault: str | None
    params: dict[str, Any] = field(default_factory=dict)
    count: int = 1
    records: int = 1
    #: Final lead states, by record.
    states: tuple[str, ...] = ("accepted",)
    #: A transition reason (substring) the first record's audit trail must show.
    reason: str | None = None
    event: str = "batch sent"
    log: dict[str, Any] = field(default_factory=dict)
    #: ``syncd_batches_total`` result label that must grow.
    result: str = "accepted"


CUSTOM_REJECT = json.dumps(
    {
        "success": True,
        "batchId": "batch_custom",
        "accepted": 1,
        "rejected": 1,
        "errors": [{"index": 1, "code": "INVALID_PHONE_NUMBER", "message": "bad number"}],
    }
)

SIMZ_ROWS = [
    SimzRow("200", None, log={"outcome": "accepted", "status": 200}),
    SimzRow(
        "200 with errors[]",
        "custom_200",
        {"body": CUSTOM_REJECT},
        records=2,
        states=("accepted", "rejected"),
        log={"outcome": "accepted", "status": 200, "rejected": 1},
    ),
    SimzRow(
        "200, unreadable body",
        "garbage_200",
        states=("uncertain",),
        reason="200 with an unreadable body",
        event=UNCERTAIN_EVENT,
        log={"status": 200, "alert": True},
        result="uncertain",
    ),
    SimzRow(
        "400 (one lead)",
        "400",
        states=("rejected",),
        reason="400 nothing queued",
        event=NOTHING_SENT_EVENT,
        log={"outcome": "rejected", "status": 400},
        result="rejected",
    ),
    SimzRow(
        "413 (two leads: split, then each alone)",
        "413",
        count=3,
        records=2,
        states=("rejected", "rejected"),
        reason="413 nothing queued",
        event=NOTHING_SENT_EVENT,
        log={"outcome": "split", "status": 413},
        result="split",
    ),
    SimzRow(
        "429 Retry-After",
        "429",
        {"retry_after": 1},
        reason="429 rate limited",
        event=NOTHING_SENT_EVENT,
        log={"outcome": "retry", "status": 429},
        result="retry",
    ),
    SimzRow(
        "503",
        "503",
        reason="503 billing check failed",
        event=NOTHING_SENT_EVENT,
        log={"outcome": "retry", "status": 503},
        result="retry",
    ),
    SimzRow(
        "500",
        "500",
        states=("uncertain",),
        reason="unexpected HTTP 500",
        event=UNCERTAIN_EVENT,
        log={"status": 500, "alert": True},
        result="uncertain",
    ),
    SimzRow(
        "no answer (connection closed)",
        "lost_response",
        states=("uncertain",),
        reason="outcome unknown",
        event=UNCERTAIN_EVENT,
        log={"status": None, "alert": True},
        result="uncertain",
    ),
    SimzRow(
        "connection reset",
        "reset",
        states=("uncertain",),
        reason="outcome unknown",
        event=UNCERTAIN_EVENT,
        log={"status": None, "alert": True},
        result="uncertain",
    ),
    SimzRow(
        "read timeout (answer later than timeout.read)",
        "delay",
        {"seconds": READ_TIMEOUT + 1.5},
        states=("uncertain",),
        reason="outcome unknown",
        event=UNCERTAIN_EVENT,
        log={"status": None, "alert": True},
        result="uncertain",
    ),
]


class TestSimzAnswers:
    def test_each_answer_end_to_end(self, harness: Harness) -> None:
        """Each SimZ answer (docs/design.md#simz-answers): lead state, log, metric, status page."""
        daemon = harness.start()
        harness.wait_until(lambda: harness.successful_polls() >= 1, "a first poll")
        seen: list[str] = []
        rows: list[tuple[SimzRow, list[str]]] = []
        start = 0
        for row in SIMZ_ROWS:
            before = scrape(daemon)
            if row.fault is not None:
                harness.simz.inject(row.fault, row.count, **row.params)
            ids = harness.salesforce.add_records(lead_records(row.records, start=start))
            start += row.records
            seen += ids

            def settled(ids: list[str] = ids, row: SimzRow = row) -> bool:
                states = harness.lead_states()
                return [states.get(i) for i in ids] == list(row.states)

            harness.wait_until(settled, f"{row.answer}: states {row.states}")
            batches = {
                r[0]
                for r in harness.query(
                    "SELECT t.batch_id FROM lead_transitions t JOIN leads l ON l.id = t.lead_id "
                    "WHERE l.salesforce_id = ? AND t.batch_id IS NOT NULL",
                    [ids[0]],
                )
            }
            entry = harness.wait_until(
                lambda row=row, batches=batches: next(
                    (
                        e
                        for e in reversed(daemon.logs())
                        if e.get("event") == row.event
                        and e.get("batch") in batches
                        and all(e.get(k) == v for k, v in row.log.items())
                    ),
                    None,
                ),
                f"{row.answer}: log {row.event} {row.log}",
            )
            assert entry["sync"] == "web" and entry["agent"] == "agt_1"
            after = scrape(daemon)
            grew = metric(after, "syncd_batches_total", result=row.result) - metric(
                before, "syncd_batches_total", result=row.result
            )
            assert grew >= 1, (row.answer, row.result)
            assert ready(daemon) == (200, set()), row.answer
            rows.append((row, ids))

        # What `syncd leads --json --history` shows for each row's records.
        leads = leads_json(harness, *seen)
        for row, ids in rows:
            assert [leads[i]["state"] for i in ids] == list(row.states), row.answer
            history = leads[ids[0]]["history"]
            if row.reason is not None:
                assert any(row.reason in h["reason"] for h in history), (row.answer, history)
            if "rejected" in row.states:
                rejected = leads[ids[row.states.index("rejected")]]
                assert rejected["error_code"], (row.answer, rejected)

        counts = harness.simz.received_counts()
        assert max(counts.values()) == 1  # never twice, whatever the answer
        uncertain = sum(1 for s in harness.lead_states().values() if s == "uncertain")
        delivered = metric(scrape(daemon), "syncd_leads_delivered_total", outcome="uncertain")
        assert delivered == uncertain == 5
        assert daemon.stop() == 0


class TestSimzPauses:
    def test_402_and_404_pause_and_resume(self, harness: Harness) -> None:
        """402 pauses the key and 404 the agent: leads stay queued, logged, then go once fixed."""
        harness.simz.set_credits(0)
        daemon = harness.start()
        [first] = harness.salesforce.add_records(lead_records(1))
        entry = daemon.wait_log("delivery paused", status=402)
        assert entry["scope"] == "api_key"
        assert entry["action_required"]
        assert harness.lead_states()[first] == "queued"
        assert metric(scrape(daemon), "syncd_batches_total", result="paused") >= 1
        assert ready(daemon) == (200, set())
        harness.simz.set_credits(None)
        harness.wait_until(lambda: harness.lead_states()[first] == "accepted", "402 resolved")

        harness.simz.remove_agent("agt_1")
        [second] = harness.salesforce.add_records(lead_records(1, start=1))
        entry = daemon.wait_log("delivery paused", status=404)
        assert entry["scope"] == "agent" and entry["agent"] == "agt_1"
        assert harness.lead_states()[second] == "queued"
        assert ready(daemon) == (200, set())
        harness.simz.add_agent("agt_1")
        harness.wait_until(lambda: harness.lead_states()[second] == "accepted", "404 resolved")
        history = leads_json(harness, second)[second]["history"]
        assert any("404 agent not found" in h["reason"] for h in history)
        assert daemon.stop() == 0
        assert set(harness.simz.received_counts().values()) == {1}

    def test_401_fails_simz_auth(self, harness: Harness) -> None:
        """401 leaves the lead queued, logs the pause and makes /status.json 503 (simz_auth)."""
        harness.write_config(
            simz={"api_key": "not-the-key", "timeout": {"connect": 2, "read": READ_TIMEOUT}}
        )
        [sf_id] = harness.salesforce.add_records(lead_records(1))
        daemon = harness.start()
        entry = daemon.wait_log("delivery paused", status=401)
        assert entry["scope"] == "api_key"
        harness.wait_until(lambda: ready(daemon) == (503, {"simz_auth"}), "503 simz_auth")
        assert harness.lead_states()[sf_id] == "queued"
        assert metric(scrape(daemon), "syncd_batches_total", result="paused") >= 1
        assert daemon.stop() == 0

    def test_connection_refused_requeues(self, harness: Harness) -> None:
        """A closed SimZ port: nothing sent, the lead stays queued with a retry, still ready."""
        harness.write_config(simz={"base_url": f"http://127.0.0.1:{closed_port()}"})
        [sf_id] = harness.salesforce.add_records(lead_records(1))
        daemon = harness.start()
        entry = daemon.wait_log(NOTHING_SENT_EVENT, outcome="retry", status=None)
        assert "nothing sent" in entry["reason"]
        assert harness.lead_states()[sf_id] == "queued"
        history = leads_json(harness, sf_id)[sf_id]["history"]
        assert any("nothing sent" in h["reason"] for h in history)
        assert metric(scrape(daemon), "syncd_batches_total", result="retry") >= 1
        assert ready(daemon) == (200, set())
        assert daemon.stop() == 0


def sf_harness(harness: Harness, **salesforce: Any) -> None:
    config = harness.config()
    config["salesforce"].update(salesforce)
    config["simz"]["timeout"] = {"connect": 2, "read": READ_TIMEOUT}
    harness.write_config(**config)


def next_poll(harness: Harness, daemon: Daemon, after: int, **fields: Any) -> dict[str, Any]:
    """The first "poll finished" line after the ``after``-th one that has ``fields``."""

    def find() -> dict[str, Any] | None:
        polls = [e for e in daemon.logs() if e.get("event") == "poll finished"][after:]
        return next((e for e in polls if all(e.get(k) == v for k, v in fields.items())), None)

    found: dict[str, Any] = harness.wait_until(find, f"poll finished {fields}")
    return found


def poll_count(daemon: Daemon) -> int:
    return sum(1 for e in daemon.logs() if e.get("event") == "poll finished")


class TestSalesforceFaults:
    def test_each_fault_end_to_end(self, harness: Harness) -> None:
        """Session expiry re-logs in; limits pause; 500, timeouts and bad JSON are poll errors."""
        sf_harness(harness, timeout=1.0, limit_pause="2s")
        daemon = harness.start()
        harness.wait_until(lambda: harness.successful_polls() >= 1, "a first poll")
        start = 0

        def delivered_after(count: int = 1) -> None:
            nonlocal start
            ids = harness.salesforce.add_records(lead_records(count, start=start))
            start += count
            harness.wait_until(
                lambda: all(harness.lead_states().get(i) == "accepted" for i in ids),
                "records delivered after the fault",
            )

        # Session expiry, both ways: a fresh login and the poll succeeds.
        for expire in (
            lambda: harness.salesforce.inject("INVALID_SESSION_ID"),
            harness.salesforce.expire_sessions,
        ):
            mark = poll_count(daemon)
            logins = sum(1 for e in daemon.logs() if "session expired" in str(e.get("event")))
            expire()
            next_poll(harness, daemon, mark, status="ok")
            harness.wait_until(
                lambda logins=logins: (
                    sum(1 for e in daemon.logs() if "session expired" in str(e.get("event")))
                    > logins
                ),
                "a session-expired log line",
            )
            delivered_after()

        before = scrape(daemon)
        mark = poll_count(daemon)
        harness.salesforce.inject("REQUEST_LIMIT_EXCEEDED")
        paused = next_poll(harness, daemon, mark, status="paused")
        assert (
            "REQUEST_LIMIT_EXCEEDED" in str(paused["error"])
            or "limit" in str(paused["error"]).lower()
        )
        assert daemon.find("polling paused") is not None
        after = scrape(daemon)
        assert metric(after, "syncd_polls_total", status="paused") > metric(
            before, "syncd_polls_total", status="paused"
        )
        assert metric(after, "syncd_paused", scope="polling", name="web") == 1
        assert ready(daemon)[0] == 200  # one paused poll is not an outage
        delivered_after()  # polling resumes after limit_pause
        assert metric(scrape(daemon), "syncd_paused", scope="polling", name="web") == 0

        for name, inject in (
            ("500", lambda: harness.salesforce.inject("500")),
            ("timeout", lambda: harness.salesforce.inject("delay", seconds=2.5)),
            ("malformed JSON", lambda: harness.salesforce.inject("malformed_json")),
        ):
            before = scrape(daemon)
            mark = poll_count(daemon)
            inject()
            failed = next_poll(harness, daemon, mark, status="error")
            assert failed["error"], name
            assert daemon.find("poll error") is not None
            after = scrape(daemon)
            assert metric(after, "syncd_polls_total", status="error") > metric(
                before, "syncd_polls_total", status="error"
            ), name
            delivered_after()  # the next poll reads what the failed one missed

        assert "Traceback" not in daemon.output()
        assert daemon.stop() == 0
        assert set(harness.simz.received_counts().values()) == {1}

    def test_unreachable_host(self, harness: Harness) -> None:
        """A closed Salesforce port: poll errors, metric, status 503 poll:web; delivery goes on."""
        sf_harness(harness, login_url=f"https://127.0.0.1:{closed_port()}")
        daemon = harness.start()
        failed = next_poll(harness, daemon, 0, status="error")
        assert failed["error"]
        harness.wait_until(lambda: ready(daemon) == (503, {"poll:web"}), "503 poll:web")
        assert metric(scrape(daemon), "syncd_polls_total", status="error") >= 1
        assert "Traceback" not in daemon.output()
        assert daemon.stop() == 0
