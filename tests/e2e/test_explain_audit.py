"""``syncd explain`` and ``syncd audit export`` as an operator runs them: the real CLI.

``syncd once`` sends three records to the SimZ emulator on a Monday morning in
Washington (``SYNCD_TEST_NOW``), with consent, a frequency cap and calling
hours on: two with one number, so the second's decision counts the first's
send, and one with another number. The leads, their audit trail, the batch
with SimZ's answer and the dial decisions are the ones delivery and the send
gate write. Then the third lead's decision is deleted, to stand for a send
made before decisions were recorded, and ``syncd suppress add`` puts the first
number on the list (the person asked not to be called again).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from syncd.domain.dial_record import rules_version
from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, clean_env, lead_records
from tests.simz_fixtures import SIMZ_TEST_AGENTS, SIMZ_TEST_KEY, assert_no_violations

FIRST = "+12025550100"
SECOND = "+12025550101"
#: Monday 2026-01-05 13:10Z: 08:10 in Washington.
MONDAY = datetime(2026, 1, 5, 13, 10, tzinfo=UTC)
CONSENTED = MONDAY - timedelta(days=40)
RULES: dict[str, Any] = {
    "duplicate_phone_window": "0s",
    "consent": {"field": "ConsentDate__c", "kind": "datetime", "max_age": "365d"},
    "max_sends_per_number": [{"count": 3, "per": "24h"}],
}
HOURS = {"window": "08:00-21:00", "timezone": "from_phone"}
OPTED_OUT = "the person asked not to be called again"


def syncd(harness: Harness, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = harness.cli(*args, env=clean_env(**env))
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


class Sent:
    """What the module's one real send left: the harness, the record Ids, the decisions."""

    def __init__(self, harness: Harness, ids: list[str]) -> None:
        self.harness = harness
        self.ids = ids
        rows = harness.query(
            "SELECT l.salesforce_id, d.decided_at, d.rules_version, d.inputs "
            "FROM dial_decisions d JOIN leads l ON l.id = d.lead_id ORDER BY d.id"
        )
        #: Salesforce Id -> (decided_at, rules version, inputs) of its dial decision.
        self.decisions = {
            sf_id: (datetime.fromisoformat(at).replace(tzinfo=UTC), version, json.loads(inputs))
            for sf_id, at, version, inputs in rows
        }

    def local_time(self, sf_id: str) -> str:
        """The decision's time as explain words it: ``08:10 Monday`` in Washington."""
        decided_at = self.decisions[sf_id][0]
        return decided_at.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M %A")


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sent]:
    """Three records sent and accepted by ``syncd once``; built once for the module (the
    commands under test only read it). The SimZ emulator's requests are checked against
    the spec at the end, as its fixture does."""
    simz = SimzEmulator(api_key=SIMZ_TEST_KEY, agents=SIMZ_TEST_AGENTS)
    simz.start()
    try:
        yield from _sent(tmp_path_factory.mktemp("explain"), simz)
    finally:
        simz.stop()
    assert_no_violations([simz])


def _sent(tmp_path: Path, simz: SimzEmulator) -> Iterator[Sent]:
    with Harness(tmp_path, simz) as harness:
        harness.salesforce.declare_field("Lead.ConsentDate__c:datetime")
        harness.write_config(sync={"rules": RULES, "calling_hours": HOURS})
        fields = {
            "ConsentDate__c": CONSENTED.isoformat(),
            "SystemModstamp": (MONDAY - timedelta(hours=1)).isoformat(),
        }
        ids = harness.salesforce.add_records(
            lead_records(1, **fields)
            + lead_records(1, Phone="(202) 555-0100", **fields)
            + lead_records(1, start=1, **fields)
        )
        once = syncd(harness, "once", SYNCD_TEST_NOW=MONDAY.strftime("%Y-%m-%dT%H:%M:%SZ"))
        assert once.returncode == 0, once.stdout + once.stderr
        assert harness.lead_states() == {sf_id: "accepted" for sf_id in ids}
        assert simz.received_counts() == {sf_id: 1 for sf_id in ids}
        connection = sqlite3.connect(harness.db_path)
        try:
            with connection:
                connection.execute(
                    "DELETE FROM dial_decisions WHERE lead_id = "
                    "(SELECT id FROM leads WHERE salesforce_id = ?)",
                    [ids[2]],
                )
        finally:
            connection.close()
        added = syncd(harness, "suppress", "add", FIRST, "--reason", OPTED_OUT)
        assert added.returncode == 0, added.stderr
        yield Sent(harness, ids)


class TestExplain:
    def test_the_history_in_words(self, sent: Sent) -> None:
        result = syncd(sent.harness, "explain", "--id", sent.ids[0])
        assert result.returncode == 0, result.stderr
        text = result.stdout
        assert text.startswith(
            f"lead 1: record {sent.ids[0]}, sync web, agent agt_1, number ending 0100"
        )
        lines = text.splitlines()
        order = [
            next(i for i, line in enumerate(lines) if marker in line)
            for marker in ("new -> queued", "dial decision", "queued -> sending", "batch 1 to")
        ]
        assert order == sorted(order), text
        version = sent.decisions[sent.ids[0]][1]
        assert f"number ending 0100, rules version {version}" in lines[order[1]]
        words = lines[order[1] + 1 : order[2]]
        assert words == [
            "      DoNotCall not set",
            "      consent ConsentDate__c = 2025-11-26T13:10:00.000+0000, 40 days old, within 365d",
            "      number not on the suppression list",
            "      duplicate-phone window off",
            "      sends of this number in the last 24h: 0 of 3 allowed",
            f"      local time {sent.local_time(sent.ids[0])} in America/New_York (from the "
            "phone number), inside 08:00-21:00 mon-sun",
        ], text
        assert "SimZ answered HTTP 200: accepted" in text
        assert f"operator opuser: suppress (number ending 0100): {OPTED_OUT}" in text
        assert FIRST not in text

    def test_the_second_send_of_the_number_counts_the_first(self, sent: Sent) -> None:
        result = syncd(sent.harness, "explain", "--id", sent.ids[1])
        assert result.returncode == 0, result.stderr
        assert "      sends of this number in the last 24h: 1 of 3 allowed" in result.stdout

    def test_json_gives_the_same_events(self, sent: Sent) -> None:
        result = syncd(sent.harness, "explain", "--id", "1", "--json")
        assert result.returncode == 0, result.stderr
        (lead,) = json.loads(result.stdout)["leads"]
        assert lead["salesforce_id"] == sent.ids[0] and lead["state"] == "accepted"
        kinds = [event["kind"] for event in lead["events"]]
        assert {"transition", "decision", "batch", "operator_action"} == set(kinds)
        decision = next(e for e in lead["events"] if e["kind"] == "decision")
        _, version, inputs = sent.decisions[sent.ids[0]]
        assert decision["inputs"] == inputs and decision["rules_version"] == version
        assert decision["lines"][0] == "DoNotCall not set"
        assert inputs["consent"]["rule"] == "ConsentDate__c (datetime, lapsing after 365d)"
        assert inputs["suppression"] == {"checked": True, "listed": False}
        assert inputs["calling_hours"]["zones"] == ["America/New_York"]

    def test_a_lead_without_a_decision_still_explains(self, sent: Sent) -> None:
        result = syncd(sent.harness, "explain", "--id", sent.ids[2])
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
    def test_an_unknown_id_exits_1(self, sent: Sent, ident: str, message: str) -> None:
        result = syncd(sent.harness, "explain", "--id", ident)
        assert result.returncode == 1 and result.stderr.startswith(message), result.stderr


class TestAuditExport:
    def test_json_holds_the_decisions_their_rules_and_the_number_actions(self, sent: Sent) -> None:
        result = syncd(sent.harness, "audit", "export", "--phone", "(202) 555-0100")
        assert result.returncode == 0, result.stderr
        pack = json.loads(result.stdout)
        assert pack["phone_e164"] == FIRST
        rows = pack["rows"]
        assert [(r["kind"], r["record_id"], r["outcome"]) for r in rows] == [
            ("decision", sent.ids[0], "accepted"),
            ("decision", sent.ids[1], "accepted"),
        ]
        assert all(r["simz_batch_id"] for r in rows)
        assert [r["inputs"] for r in rows] == [sent.decisions[i][2] for i in sent.ids[:2]]
        assert [r["inputs"]["consent"]["age_seconds"] // 86400 for r in rows] == [40, 40]
        [body] = pack["rules_versions"]
        assert body["version"] == rows[0]["rules_version"] == rows[1]["rules_version"]
        assert rules_version(body["rules"]) == body["version"]
        rules = body["rules"]["rules"]
        assert rules["consent"] == RULES["consent"]
        assert rules["max_sends_per_number"] == [{"count": 3, "per": "1d"}]
        assert body["rules"]["calling_hours"]["window"] == HOURS["window"]
        assert (pack["suppression"]["source"], pack["suppression"]["reason"]) == (
            "operator",
            OPTED_OUT,
        )
        assert [a["reason"] for a in pack["operator_actions"]] == [OPTED_OUT]

    def test_csv_to_a_file_and_a_send_without_a_decision(self, sent: Sent) -> None:
        out = sent.harness.tmp / "evidence.csv"
        result = syncd(
            sent.harness, "audit", "export", "--phone", SECOND, "--format", "csv", "-o", str(out)
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "" and "wrote 1 row(s)" in result.stderr
        (row,) = list(csv.DictReader(io.StringIO(out.read_text("utf-8"))))
        assert (row["kind"], row["record_id"], row["outcome"]) == ("send", sent.ids[2], "accepted")
        assert row["explanation"].startswith("no dial decision recorded")

    def test_csv_flattens_the_inputs(self, sent: Sent) -> None:
        result = syncd(sent.harness, "audit", "export", "--phone", FIRST, "--format", "csv")
        assert result.returncode == 0, result.stderr
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert [row["kind"] for row in rows] == [
            "decision",
            "decision",
            "suppression",
            "operator_action",
        ]
        version = sent.decisions[sent.ids[0]][1]
        for row, sent_before in zip(rows, ("0", "1"), strict=False):
            assert row["rules_version"] == version
            assert row["consent.value"] == "2025-11-26T13:10:00.000+0000"
            assert row["suppression.listed"] == "false"
            assert row["frequency.0.count"] == "3"
            assert row["frequency.0.sent"] == sent_before
            assert row["calling_hours.zones"] == "America/New_York"
            assert row["calling_hours.zone_source"] == "phone"
        assert (
            rows[0]["calling_hours.local_time"]
            == (sent.decisions[sent.ids[0]][2]["calling_hours"]["local_time"])
        )
        assert "number ON the suppression list" not in rows[0]["explanation"]
        assert rows[2]["explanation"].startswith("number is on the suppression list (operator: ")

    def test_a_number_never_called_is_an_empty_pack(self, sent: Sent) -> None:
        result = syncd(sent.harness, "audit", "export", "--phone", "+12025550177")
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
    def test_bad_arguments_exit_2(self, sent: Sent, args: list[str], message: str) -> None:
        result = syncd(sent.harness, "audit", "export", *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
