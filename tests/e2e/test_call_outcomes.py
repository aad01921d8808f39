"""Call outcomes end to end: SimZ's hooks become one Task per call, forgeries change nothing,
an opt-out stops the number's other leads.

Real subprocesses (``syncd run``, ``syncd once`` and the operator CLI) on one
SQLite file (the one-Task tests on PostgreSQL too), both emulators in the test
process. The daemon's webhook receiver listens on a free loopback port that the
SimZ emulator posts to, as the ``options.webhookUrl`` syncd sends says. SimZ
records every lead it received, so "sent once" and "never sent" are checked at
the receiving end; the Salesforce emulator holds the Tasks.
"""

from __future__ import annotations

import http.client
import json
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from syncd.domain.call_ref import make_ref
from syncd.entrypoints.demo_calls import free_loopback_port, webhook_section
from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Daemon, Harness, lead_records, wait_until

NUMBER = "+12025550177"


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    simz_emulator.configure_calls(delay=0.2)
    with Harness(tmp_path, simz_emulator) as h:
        yield h


class Database:
    """The daemon's database as the test reads it: the harness's SQLite file, or a
    PostgreSQL schema the config names instead (``url``)."""

    def __init__(self, harness: Harness, url: str | None = None) -> None:
        self.harness = harness
        self.url = url
        self.engine: Engine | None = create_engine(url) if url is not None else None

    def overrides(self) -> dict[str, Any]:
        return {} if self.url is None else {"database": {"url": self.url}}

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Read-only SQL with ``?`` placeholders."""
        if self.engine is None:
            return self.harness.query(sql, params)
        with self.engine.connect() as connection:
            rows = connection.exec_driver_sql(sql.replace("?", "%s"), tuple(params))
            return [tuple(row) for row in rows]

    def states(self) -> dict[str, str]:
        """Salesforce Id -> state of every lead."""
        return {
            sf_id: state for sf_id, state in self.query("SELECT salesforce_id, state FROM leads")
        }


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, harness: Harness) -> Iterator[Database]:
    """The harness's SQLite file, or a fresh PostgreSQL schema (skipped when unset)."""
    url = None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))
    database = Database(harness, url)
    yield database
    if database.engine is not None:
        database.engine.dispose()


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def with_webhook(harness: Harness, **overrides: Any) -> dict[str, Any]:
    """Write a config with ``simz.webhook`` on a free loopback port (and ``overrides``);
    the webhook section it holds."""
    webhook = webhook_section(free_loopback_port())
    harness.write_config(simz={"webhook": webhook}, **overrides)
    return webhook


def tasks_mode(harness: Harness, db: Database | None = None) -> dict[str, Any]:
    overrides = db.overrides() if db is not None else {}
    return with_webhook(harness, sync={"call_writeback": {"mode": "tasks"}}, **overrides)


def posted(harness: Harness, count: int) -> list[dict[str, Any]]:
    """SimZ's hooks once ``count`` were posted, each answered 200 by the receiver."""
    harness.wait_until(lambda: len(harness.simz.hooks()) >= count, f"{count} hook(s) posted")
    hooks = harness.simz.hooks()
    assert [(h["status"], h["error"]) for h in hooks] == [(200, None)] * count, hooks
    return hooks


def outcomes(harness: Harness | Database) -> list[tuple[Any, ...]]:
    """(Salesforce Id, call key, disposition, write-back status, Task Id) of every outcome."""
    return harness.query(
        "SELECT salesforce_id, call_key, disposition, writeback_status, task_id "
        "FROM call_outcomes ORDER BY id"
    )


def events(harness: Harness | Database) -> list[tuple[Any, ...]]:
    """(id, status, detail) of every stored call event."""
    return harness.query("SELECT id, status, detail FROM call_events ORDER BY id")


def written(harness: Harness | Database, count: int) -> list[tuple[Any, ...]]:
    """The outcomes once ``count`` are written back as a Task (and none is left to write)."""

    def done() -> list[tuple[Any, ...]] | None:
        rows = outcomes(harness)
        statuses = [row[3] for row in rows]
        return rows if statuses.count("done") == count and len(rows) == count else None

    rows: list[tuple[Any, ...]] = wait_until(done, f"{count} Task(s) written back")
    return rows


def sends(harness: Harness | Database, salesforce_id: str) -> int:
    """How many times the lead was claimed for a send (its transitions into ``sending``)."""
    [(count,)] = harness.query(
        "SELECT COUNT(*) FROM lead_transitions t JOIN leads l ON l.id = t.lead_id "
        "WHERE l.salesforce_id = ? AND t.to_state = 'sending'",
        [salesforce_id],
    )
    return int(count)


def one_task_each(harness: Harness, rows: list[tuple[Any, ...]]) -> None:
    """Exactly one Task per call outcome on Salesforce: its record, its call, its Id."""
    tasks = harness.salesforce.tasks()
    assert sorted((t["WhoId"], t["CallObject"], t["Id"]) for t in tasks) == sorted(
        (sf_id, key, task_id) for sf_id, key, _disposition, _status, task_id in rows
    )
    for task in tasks:
        assert (task["Status"], task["Type"], task["TaskSubtype"]) == ("Completed", "Call", "Call")


class TestOneTaskPerCall:
    """On SQLite and on PostgreSQL (``SYNCD_TEST_POSTGRES_URL``; skipped when unset)."""

    def test_a_hook_twice_and_a_late_hook_of_the_same_call_make_one_task_each(
        self, harness: Harness, db: Database
    ) -> None:
        """Three leads: a hook delivered twice byte for byte, a call reported twice with other
        bytes (an older hook arriving late), a plain one. The first Task create's answer is
        lost: the in-doubt rows are looked up by CallObject, never created twice."""
        tasks_mode(harness, db)
        harness.simz.inject_call_fault("duplicate")
        harness.simz.inject_call_fault("out_of_order")
        harness.salesforce.lose_create_answers(1)
        leads = harness.salesforce.add_records(lead_records(3))
        daemon = harness.start()

        hooks = posted(harness, 5)
        rows = written(db, 3)
        assert daemon.stop() == 0

        assert sorted(row[0] for row in rows) == sorted(leads)
        one_task_each(harness, rows)
        faults = {h["salesforceId"]: h["fault"] for h in hooks}
        assert Counter(faults.values()) == Counter(["duplicate", "out_of_order", None])
        # Five posts, four bodies stored (the duplicate once), every one matched.
        stored = events(db)
        assert [status for _id, status, _detail in stored] == ["matched"] * 4
        late = next(h for h in hooks[::-1] if h["fault"] == "out_of_order")
        first = next(h for h in hooks if h["fault"] == "out_of_order")
        assert late["callId"] == first["callId"] and late["body"] != first["body"]
        kept = {key: disposition for _sf, key, disposition, _status, _task in rows}
        assert kept[first["callId"]] == first["body"]["call"]["disposition"]
        assert any(f"call {first['callId']} was stored already" in (d or "") for *_, d in stored)
        # The lost answer made the rows in doubt; they were looked up, not created again.
        assert daemon.find("call write-back call failed") is not None
        assert [q for q in harness.salesforce.query_log() if "CallObject" in str(q)]

        assert harness.simz.received_counts() == {lead: 1 for lead in leads}
        assert db.states() == {lead: "accepted" for lead in leads}
        assert [sends(db, lead) for lead in leads] == [1, 1, 1]
        first_calls = db.query("SELECT COUNT(*) FROM leads WHERE first_call_at IS NOT NULL")
        assert first_calls == [(3,)]

    @pytest.mark.parametrize(
        ("fault", "params", "state"),
        [("delay", {"seconds": 10}, "accepted"), ("lost_response", {}, "uncertain")],
    )
    def test_a_hook_before_the_accept_is_recorded(
        self, harness: Harness, db: Database, fault: str, params: dict[str, Any], state: str
    ) -> None:
        """SimZ calls at once and answers late (or never): the hook is stored and read while
        the lead is still ``sending``; one Task, the lead is neither requeued nor resent."""
        tasks_mode(harness, db)
        harness.simz.configure_calls(delay=0)
        harness.simz.inject(fault, **params)
        [lead] = harness.salesforce.add_records(lead_records(1))
        daemon = harness.start()

        posted(harness, 1)
        rows = written(db, 1)
        wait_until(lambda: db.states() == {lead: state}, f"the lead {state}")
        assert daemon.stop() == 0

        one_task_each(harness, rows)
        assert [status for _id, status, _detail in events(db)] == ["matched"]
        [(processed, accepted, first_call)] = db.query(
            "SELECT e.processed_at, l.accepted_at, l.first_call_at "
            "FROM call_events e JOIN leads l ON l.id = e.lead_id"
        )
        assert first_call is not None
        if accepted is not None:  # the answer came after the hook was read
            assert moment(processed) < moment(accepted)
        assert harness.simz.received_counts() == {lead: 1}
        assert sends(db, lead) == 1
        assert harness.salesforce.tasks()[0]["WhoId"] == lead


def moment(value: datetime | str) -> datetime:
    """A stored time: a datetime (PostgreSQL) or its ISO text (SQLite)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def receiver(daemon: Daemon) -> tuple[str, int]:
    line = daemon.wait_log("webhook receiver listening")
    host, port = str(line["listen"]).rsplit(":", 1)
    return host, int(port)


def post_hook(address: tuple[str, int], token: str, payload: dict[str, Any]) -> dict[str, Any]:
    connection = http.client.HTTPConnection(*address, timeout=60)
    try:
        body = json.dumps(payload).encode()
        connection.request(
            "POST", f"/hooks/simz/{token}", body, {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        assert response.status == 200
        answer: dict[str, Any] = json.loads(response.read())
        return answer
    finally:
        connection.close()


def hook_for(sent: dict[str, Any], custom: dict[str, Any], call_id: str) -> dict[str, Any]:
    """The example payload of a call of the lead SimZ received as ``sent``."""
    return {
        "event": "call.completed",
        "callId": call_id,
        "lead": {
            "salesforceId": sent["salesforceId"],
            "phoneNumber": sent["phoneNumber"],
            "customData": custom,
        },
        "call": {"outcome": "answered", "disposition": "do_not_call", "durationSeconds": 30},
    }


class TestForgedHooks:
    def test_forged_and_unmatched_hooks_change_nothing_and_are_listed(
        self, harness: Harness
    ) -> None:
        """A forged MAC, no correlation value, a genuine MAC of a lead that does not exist:
        each is stored and listed as unmatched; no outcome, no Task, no opt-out, no lead
        change. A genuine hook posted the same way afterwards does match."""
        harness.simz.configure_calls(enabled=False)
        webhook = tasks_mode(harness)
        token, secret = webhook["token"], webhook["correlation_secret"].encode()
        [lead] = harness.salesforce.add_records(lead_records(1, Phone=NUMBER))
        daemon = harness.start()
        address = receiver(daemon)
        harness.wait_until(lambda: harness.lead_states() == {lead: "accepted"}, "the lead sent")
        [sent] = [r["lead"] for r in harness.simz.received()]
        genuine = sent["customData"]["syncdRef"]
        [(lead_id,)] = harness.query("SELECT id FROM leads")
        assert genuine == make_ref(secret, lead, lead_id)
        forged = genuine[:-4] + ("0000" if not genuine.endswith("0000") else "1111")
        custom = {k: v for k, v in sent["customData"].items() if k != "syncdRef"}
        bad = [
            hook_for(sent, {**custom, "syncdRef": forged}, "call_forged"),
            hook_for(sent, custom, "call_noref"),
            hook_for(sent, {"syncdRef": make_ref(secret, lead, lead_id + 1000)}, "call_nolead"),
        ]
        for payload in bad:
            assert post_hook(address, token, payload) == {"status": "stored"}

        def processed() -> list[tuple[Any, ...]] | None:
            rows = events(harness)
            return rows if len(rows) == 3 and all(s != "new" for _i, s, _d in rows) else None

        rows = harness.wait_until(processed, "the three hooks processed")
        assert [status for _id, status, _detail in rows] == ["unmatched"] * 3
        details = [detail for _id, _status, detail in rows]
        assert "its MAC does not match" in details[0]
        assert details[1] == "no syncdRef in the payload: it names no lead"
        assert details[2] == f"no such lead: {lead} lead {lead_id + 1000}"

        listed = json.loads(ok(harness.cli("calls", "--unmatched", "--json")))
        assert sorted(e["id"] for e in listed["events"]) == [row[0] for row in rows]
        assert {e["lead_id"] for e in listed["events"]} == {None}
        table = ok(harness.cli("calls", "--unmatched")).splitlines()
        assert len(table) == 4 and "no such lead" in table[1]
        assert outcomes(harness) == []
        assert harness.query("SELECT COUNT(*) FROM suppressions") == [(0,)]
        assert harness.query("SELECT state, first_call_at FROM leads") == [("accepted", None)]
        assert sends(harness, lead) == 1

        # The same route with the genuine value matches: the above were refused on merit.
        assert post_hook(address, token, hook_for(sent, sent["customData"], "call_real")) == {
            "status": "stored"
        }
        written(harness, 1)
        assert daemon.stop() == 0
        assert [t["CallObject"] for t in harness.salesforce.tasks()] == ["call_real"]
        assert harness.query("SELECT phone_e164, source FROM suppressions") == [
            (NUMBER, "call_outcome")
        ]
        assert ok(harness.cli("calls", "--unmatched")).count("unmatched") == 3


class TestOptOut:
    def test_an_opt_out_on_a_call_skips_the_numbers_lead_queued_in_another_sync(
        self, harness: Harness
    ) -> None:
        """Sync ``web`` sends a lead whose call ends ``do_not_call``; sync ``partner`` holds a
        lead with the same number, queued while it is paused. The hook puts the number on the
        suppression list and skips the partner's lead: SimZ never receives it."""
        base = harness.config()["syncs"][0]
        web = {**base, "where": "LeadSource = 'Web'"}
        partner = {**base, "name": "partner", "where": "LeadSource = 'Partner'", "agent": "agt_2"}
        with_webhook(harness, syncs=[web, partner])
        ok(harness.cli("migrate"))
        ok(harness.cli("pause", "--sync", "partner", "--reason", "campaign change"))
        [other] = harness.salesforce.add_records(
            lead_records(1, start=1, Phone="202 555 0177", LeadSource="Partner")
        )
        out = ok(harness.cli("once", "--sync", "partner"))
        assert "; paused" in out
        assert harness.lead_states() == {other: "queued"}

        harness.simz.force_calls("do_not_call")
        [called] = harness.salesforce.add_records(lead_records(1, Phone=NUMBER, LeadSource="Web"))
        daemon = harness.start()
        posted(harness, 1)
        harness.wait_until(
            lambda: harness.lead_states() == {called: "accepted", other: "skipped"},
            "the partner's lead skipped",
        )
        ok(harness.cli("resume", "--sync", "partner"))
        polls = harness.successful_polls()
        harness.wait_until(lambda: harness.successful_polls() >= polls + 4, "two more cycles")
        assert daemon.stop() == 0

        assert [r["salesforceId"] for r in harness.simz.received()] == [called]
        assert harness.lead_states() == {called: "accepted", other: "skipped"}
        [(note, reason)] = harness.query(
            "SELECT l.note, t.reason FROM leads l JOIN lead_transitions t ON t.lead_id = l.id "
            "WHERE l.salesforce_id = ? AND t.to_state = 'skipped'",
            [other],
        )
        assert note == reason == "number opted out on a call: do_not_call"
        listed = json.loads(ok(harness.cli("suppress", "list", "--json")))["entries"]
        assert [(e["phone"], e["source"]) for e in listed] == [(NUMBER, "call_outcome")]
        [(record_id, sync_name)] = harness.query("SELECT record_id, sync_name FROM suppressions")
        assert (record_id, sync_name) == (called, "web")
        assert [status for _id, status, _detail in events(harness)] == ["matched"]
        assert daemon.find("number opted out on a call", skipped_leads=1) is not None
        assert Counter(harness.simz.received_counts()) == Counter({called: 1})
