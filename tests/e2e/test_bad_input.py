"""Bad input, end to end through ``syncd once``: odd records and odd SimZ answers.

Each case ends in a recorded lead state and a log line, never a traceback and
never a lost record: records with no phone, letters in the phone, a national
number that is not valid in the default region, a 1 MB text field, non-ASCII
names, a null relationship (``Owner: null``), a record created with a
15-character Id; and SimZ 200 answers that are not JSON, miss fields, or name
an ``errors[].index`` outside the batch.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.sf_soql import normalize_id
from syncd.sandbox.simz import SimzEmulator
from tests.e2e.harness import Harness, json_lines, lead_records

MEGABYTE = 1024 * 1024


@pytest.fixture
def harness(tmp_path: Path, simz_emulator: SimzEmulator) -> Iterator[Harness]:
    with Harness(tmp_path, simz_emulator) as h:
        h.write_config(
            sync={
                "mapping": {
                    "phoneNumber": "Phone",
                    "firstName": "FirstName",
                    "lastName": "LastName",
                    "customData": {"company": "Company", "owner": "Owner.Email"},
                }
            }
        )
        yield h


def once(harness: Harness, expect: int = 0) -> list[dict[str, Any]]:
    """Run ``syncd once``; it must exit ``expect`` without a traceback. Its JSON log lines.

    (``syncd once`` exits 1 when a delivery needs an operator, e.g. uncertain leads.)
    """
    # The poll window's end is now - lag rounded down to a whole second, so a
    # record stamped in this very second is only in the window from the next one.
    time.sleep(math.floor(time.time()) + 1.05 - time.time())
    result = harness.cli("once", timeout=120)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    assert result.returncode == expect, output[-3000:]
    return json_lines(output)


def lead_rows(harness: Harness) -> dict[str, dict[str, Any]]:
    rows = harness.query("SELECT salesforce_id, state, note, error_code, payload FROM leads")
    return {
        r[0]: {"state": r[1], "note": r[2], "error_code": r[3], "payload": json.loads(r[4])}
        for r in rows
    }


class TestBadRecords:
    def test_each_bad_record_is_recorded(self, harness: Harness) -> None:
        """Odd records each get a lead row with a state and a note; the good ones go out once."""
        [owner] = harness.salesforce.add_records(
            [{"sobject": "User", "Username": "o@example.com", "Email": "owner@example.com"}]
        )
        base = {"sobject": "Lead", "LastName": "Case", "Company": "Acme"}
        cases: dict[str, dict[str, Any]] = {
            "no phone": {**base, "Phone": None},
            "empty phone": {**base, "Phone": "   "},
            "letters": {**base, "Phone": "call me maybe"},
            "national, other region": {**base, "Phone": "020 7946 0123"},
            "too short": {**base, "Phone": "555"},
            "huge field": {**base, "Phone": "+1 202 555 0101", "Company": "x" * MEGABYTE},
            "non-ASCII": {
                **base,
                "Phone": "+1 202 555 0102",
                "FirstName": "Zoë Ørsted",
                "LastName": "山田 Ñúñez",
                "Company": "Café ☕ \u200b",
            },
            "null owner": {**base, "Phone": "+1 202 555 0103", "OwnerId": None},
            "with owner": {**base, "Phone": "+1 202 555 0104", "OwnerId": owner},
            "15-char Id": {**base, "Phone": "+1 202 555 0105", "Id": "00Q8d00000Zz9Ab"},
        }
        ids = dict(zip(cases, harness.salesforce.add_records(cases.values()), strict=True))
        logs = once(harness)

        rows = lead_rows(harness)
        assert set(rows) == set(ids.values())  # nothing lost
        state = {name: rows[ids[name]]["state"] for name in cases}
        for name in ("no phone", "empty phone", "letters", "national, other region", "too short"):
            assert state[name] == "invalid", name
            assert "phone" in rows[ids[name]]["note"], name
        assert "no phone number" in rows[ids["no phone"]]["note"]
        assert "not a valid number" in rows[ids["letters"]]["note"]
        for name in ("huge field", "non-ASCII", "null owner", "with owner", "15-char Id"):
            assert state[name] in ("accepted", "rejected"), (name, rows[ids[name]])

        received = {r["salesforceId"]: r for r in harness.simz.received()}
        assert set(harness.simz.received_counts().values()) == {1}
        # The 18-character form: the emulator (like Salesforce) answers 18 characters.
        fifteen = ids["15-char Id"]
        assert fifteen == normalize_id("00Q8d00000Zz9Ab") and len(fifteen) == 18
        assert fifteen in received and len(rows) == len(cases)
        assert all(len(sf_id) == 18 for sf_id in rows)
        lead = received[ids["non-ASCII"]]["lead"]
        assert (lead["firstName"], lead["lastName"]) == ("Zoë Ørsted", "山田 Ñúñez")
        assert "owner" not in received[ids["null owner"]]["lead"].get("customData", {})
        assert received[ids["with owner"]]["lead"]["customData"]["owner"] == "owner@example.com"
        huge = rows[ids["huge field"]]
        if huge["state"] == "accepted":
            assert len(received[ids["huge field"]]["lead"]["customData"]["company"]) == MEGABYTE
        else:
            assert huge["error_code"], huge

        poll = next(e for e in logs if e.get("event") == "poll finished")
        assert poll["status"] == "ok" and poll["invalid"] == 5 and poll["fetched"] == len(cases)
        assert any(e.get("event") == "batch sent" for e in logs)
        # Logs name leads by Id only: no phone number, name or the huge value.
        text = json.dumps(logs)
        assert "555 0102" not in text and "Ørsted" not in text and "x" * 1000 not in text


class TestBadSimzAnswers:
    @pytest.mark.parametrize(
        ("body", "states", "event"),
        [
            pytest.param(
                "not json at all",
                ["uncertain"] * 2,
                "batch sent, outcome unknown: leads uncertain",
                id="not-json",
            ),
            pytest.param(
                "[1, 2]",
                ["uncertain"] * 2,
                "batch sent, outcome unknown: leads uncertain",
                id="json-array",
            ),
            pytest.param("{}", ["accepted"] * 2, "batch sent", id="missing-fields"),
            pytest.param(
                json.dumps(
                    {
                        "success": True,
                        "batchId": None,
                        "accepted": 2,
                        "rejected": 1,
                        "errors": [{"index": 7, "code": "X", "message": "y"}],
                    }
                ),
                ["accepted"] * 2,
                "odd SimZ answer",
                id="index-out-of-range",
            ),
            pytest.param(
                json.dumps({"success": True, "batchId": "b", "accepted": "two", "errors": []}),
                ["uncertain"] * 2,
                "batch sent, outcome unknown: leads uncertain",
                id="wrong-types",
            ),
        ],
    )
    def test_odd_200_is_recorded(
        self, harness: Harness, body: str, states: list[str], event: str
    ) -> None:
        """An odd 200 body gives every lead of its batch a state and a log line; no crash."""
        harness.simz.inject("custom_200", body=body)
        ids = harness.salesforce.add_records(lead_records(2))
        logs = once(harness, expect=1 if "uncertain" in states else 0)
        rows = lead_rows(harness)
        assert [rows[i]["state"] for i in ids] == states
        assert any(e.get("event") == event for e in logs), [e.get("event") for e in logs]
        assert set(harness.simz.received_counts().values()) == {1}


class TestEmulatorControls:
    def test_custom_200_and_clearing_faults(self, simz_emulator: SimzEmulator) -> None:
        """custom_200 answers its body verbatim after recording; DELETE faults drops the rest."""
        import urllib.request

        body = {"leads": [{"phoneNumber": "+12025550101", "salesforceId": "00Q8d00000Zz9AbEAJ"}]}

        def post(url: str, data: Any, method: str = "POST") -> tuple[int, bytes]:
            request = urllib.request.Request(
                url,
                data=json.dumps(data).encode(),
                method=method,
                headers={"Content-Type": "application/json", "X-Company-API-Key": "test-key"},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status), answer.read()

        simz_emulator.inject("custom_200", body="not json")
        simz_emulator.inject("503", count=3)
        assert post(simz_emulator.lead_url("agt_1"), body) == (200, b"not json")
        assert simz_emulator.received_counts() == {"00Q8d00000Zz9AbEAJ": 1}
        status, answer = post(simz_emulator.control_url + "faults", {}, method="DELETE")
        assert status == 200 and json.loads(answer) == {"faults": []}
        status, _ = post(simz_emulator.lead_url("agt_1"), body)
        assert status == 200
