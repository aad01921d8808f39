"""``syncd explain`` and ``syncd audit export`` as an operator runs them: the real CLI.

``syncd once`` sends two records to the SimZ emulator, so the leads, their
audit trail and the batch with SimZ's answer are the ones delivery writes. The
send gate's dial decision for the first lead, its rules version and an
operator's action about the number are then written through the ORM into the
same SQLite file; the second lead stays without a decision, as one sent before
decisions were recorded.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.orm import DialDecision, Lead, OperatorAction, RulesVersion
from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, lead_records
from tests.simz_fixtures import SIMZ_TEST_AGENTS, SIMZ_TEST_KEY, assert_no_violations

FIRST = "+12025550100"
SECOND = "+12025550101"
INPUTS: dict[str, Any] = {
    "do_not_call": False,
    "consent": None,
    "suppression": {"checked": True, "listed": False},
    "frequency": [
        {
            "cap": "3 per 24h (rules.max_sends_per_number)",
            "count": 3,
            "per_seconds": 86400,
            "sent": 0,
        }
    ],
    "duplicate_window_seconds": 0,
    "calling_hours": {
        "rule": "08:00-21:00 mon-sun",
        "zones": ["America/New_York"],
        "zone_source": "phone",
        "local_time": "2026-01-05T08:00:00-05:00",
    },
}


def syncd(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    result = harness.cli(*args)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Harness, list[str]]]:
    """Two records sent and accepted by ``syncd once``; a dial decision for the first.

    Built once for the module (the commands under test only read it); the SimZ
    emulator's requests are checked against the spec at the end, as its fixture does.
    """
    simz = SimzEmulator(api_key=SIMZ_TEST_KEY, agents=SIMZ_TEST_AGENTS)
    simz.start()
    try:
        yield from _sent(tmp_path_factory.mktemp("explain"), simz)
    finally:
        simz.stop()
    assert_no_violations([simz])


def _sent(tmp_path: Path, simz: SimzEmulator) -> Iterator[tuple[Harness, list[str]]]:
    with Harness(tmp_path, simz) as harness:
        ids = harness.salesforce.add_records(lead_records(2))
        once = syncd(harness, "once")
        assert once.returncode == 0, once.stdout + once.stderr
        assert harness.lead_states() == {sf_id: "accepted" for sf_id in ids}
        engine = make_engine(f"sqlite:///{harness.db_path}")
        try:
            with make_session_factory(engine).begin() as session:
                lead = session.scalars(select(Lead).where(Lead.salesforce_id == ids[0])).one()
                assert lead.phone_e164 == FIRST and lead.batch_id is not None
                session.add(
                    DialDecision(
                        lead_id=lead.id,
                        sync_name="web",
                        agent_id="agt_1",
                        phone_e164=FIRST,
                        batch_id=lead.batch_id,
                        decided_at=lead.sent_at or datetime.now(UTC),
                        rules_version="0badc0ffee123456",
                        inputs=INPUTS,
                    )
                )
                session.add(
                    RulesVersion(
                        version="0badc0ffee123456",
                        sync_name="web",
                        rules={"duplicate_phone_window": "0s"},
                        first_seen_at=datetime.now(UTC),
                    )
                )
                session.add(
                    OperatorAction(
                        at=datetime.now(UTC),
                        actor="ana",
                        action="note",
                        scope="number",
                        name=FIRST,
                        reason="the person asked who called",
                    )
                )
        finally:
            engine.dispose()
        yield harness, ids


class TestExplain:
    def test_the_history_in_words(self, sent: tuple[Harness, list[str]]) -> None:
        harness, ids = sent
        result = syncd(harness, "explain", "--id", ids[0])
        assert result.returncode == 0, result.stderr
        text = result.stdout
        assert text.startswith(
            f"lead 1: record {ids[0]}, sync web, agent agt_1, number ending 0100"
        )
        lines = text.splitlines()
        order = [
            next(i for i, line in enumerate(lines) if marker in line)
            for marker in ("new -> queued", "dial decision", "queued -> sending", "batch 1 to")
        ]
        assert order == sorted(order), text
        assert "      sends of this number in the last 24h: 0 of 3 allowed" in lines
        assert (
            "      local time 08:00 Monday in America/New_York (from the phone number), "
            "inside 08:00-21:00 mon-sun" in lines
        )
        assert "SimZ answered HTTP 200: accepted" in text
        assert "operator ana: note (number ending 0100): the person asked who called" in text
        assert FIRST not in text

    def test_json_gives_the_same_events(self, sent: tuple[Harness, list[str]]) -> None:
        harness, ids = sent
        result = syncd(harness, "explain", "--id", "1", "--json")
        assert result.returncode == 0, result.stderr
        (lead,) = json.loads(result.stdout)["leads"]
        assert lead["salesforce_id"] == ids[0] and lead["state"] == "accepted"
        kinds = [event["kind"] for event in lead["events"]]
        assert {"transition", "decision", "batch", "operator_action"} == set(kinds)
        decision = next(e for e in lead["events"] if e["kind"] == "decision")
        assert decision["inputs"] == INPUTS and decision["rules_version"] == "0badc0ffee123456"
        assert decision["lines"][0] == "DoNotCall not set"

    def test_a_lead_without_a_decision_still_explains(
        self, sent: tuple[Harness, list[str]]
    ) -> None:
        harness, ids = sent
        result = syncd(harness, "explain", "--id", ids[1])
        assert result.returncode == 0, result.stderr
        assert "dial decision" not in result.stdout
        assert "sending -> accepted" in result.stdout

    @pytest.mark.parametrize(
        ("ident", "message"),
        [
            ("00Q000000000000XYZ", "syncd: no lead with id or Salesforce id '00Q000000000000XYZ'"),
            ("424242", "syncd: no lead with id or Salesforce id '424242'"),
            (" ", "syncd: --id is empty"),
        ],
    )
    def test_an_unknown_id_exits_1(
        self, sent: tuple[Harness, list[str]], ident: str, message: str
    ) -> None:
        result = syncd(sent[0], "explain", "--id", ident)
        assert result.returncode == 1 and result.stderr.startswith(message), result.stderr


class TestAuditExport:
    def test_json_holds_the_decision_its_rules_and_the_number_actions(
        self, sent: tuple[Harness, list[str]]
    ) -> None:
        harness, ids = sent
        result = syncd(harness, "audit", "export", "--phone", "(202) 555-0100")
        assert result.returncode == 0, result.stderr
        pack = json.loads(result.stdout)
        assert pack["phone_e164"] == FIRST
        (row,) = pack["rows"]
        assert (row["kind"], row["record_id"], row["outcome"]) == ("decision", ids[0], "accepted")
        assert row["simz_batch_id"] and row["inputs"] == INPUTS
        assert pack["rules_versions"][0]["rules"] == {"duplicate_phone_window": "0s"}
        assert pack["suppression"] is None
        assert [a["reason"] for a in pack["operator_actions"]] == ["the person asked who called"]

    def test_csv_to_a_file_and_a_send_without_a_decision(
        self, sent: tuple[Harness, list[str]]
    ) -> None:
        harness, ids = sent
        out = harness.tmp / "evidence.csv"
        result = syncd(
            harness, "audit", "export", "--phone", SECOND, "--format", "csv", "-o", str(out)
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "" and "wrote 1 row(s)" in result.stderr
        (row,) = list(csv.DictReader(io.StringIO(out.read_text("utf-8"))))
        assert (row["kind"], row["record_id"], row["outcome"]) == ("send", ids[1], "accepted")
        assert row["explanation"].startswith("no dial decision recorded")

    def test_csv_flattens_the_inputs(self, sent: tuple[Harness, list[str]]) -> None:
        result = syncd(sent[0], "audit", "export", "--phone", FIRST, "--format", "csv")
        assert result.returncode == 0, result.stderr
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert rows[0]["frequency.0.count"] == "3"
        assert rows[0]["calling_hours.zone_source"] == "phone"
        assert rows[-1]["kind"] == "operator_action"

    def test_a_number_never_called_is_an_empty_pack(self, sent: tuple[Harness, list[str]]) -> None:
        result = syncd(sent[0], "audit", "export", "--phone", "+12025550177")
        assert result.returncode == 0
        assert json.loads(result.stdout)["rows"] == []
        assert "no dial decision or send recorded for +12025550177" in result.stderr

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--phone", "not a number"], "is not a valid phone number"),
            (["--phone", "5550100", "--region", "ZZ"], "is not a region"),
            (["--phone", FIRST, "--format", "xml"], "Invalid value for '--format'"),
        ],
    )
    def test_bad_arguments_exit_2(
        self, sent: tuple[Harness, list[str]], args: list[str], message: str
    ) -> None:
        result = syncd(sent[0], "audit", "export", *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
