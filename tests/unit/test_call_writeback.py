"""Call write-back, the pure part: a call as a Task, the lookup, the answers; its job."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from syncd.config import SyncConfig
from syncd.domain.call_writeback import (
    IN_DOUBT,
    Call,
    CallFields,
    call_field_problems,
    create_outcomes,
    field_values,
    found_tasks,
    lookup_query,
    subject,
    task_of,
    task_problems,
    task_record,
)
from syncd.entrypoints.scheduler import JobScheduler

STARTED = datetime(2026, 12, 7, 23, 59, 30, tzinfo=UTC)


def a_call(**changes: object) -> Call:
    values: dict[str, object] = {
        "call_key": "call_1",
        "salesforce_id": "00Q5e00000AbCdEFGH",
        "outcome": "answered",
        "disposition": "interested",
        "raw_disposition": "INTERESTED",
        "duration_seconds": 74,
        "started_at": STARTED,
        "ended_at": STARTED + timedelta(seconds=74),
        "recording_url": None,
        "received_at": STARTED + timedelta(minutes=5),
    }
    values.update(changes)
    return Call(**values)  # type: ignore[arg-type]


def test_a_task_for_a_lead_a_contact_and_another_record() -> None:
    record = task_record(a_call(), "Call: {disposition}")
    assert record["attributes"] == {"type": "Task"}
    assert record["WhoId"] == "00Q5e00000AbCdEFGH" and "WhatId" not in record
    assert (record["Subject"], record["Status"]) == ("Call: interested", "Completed")
    assert (record["Type"], record["TaskSubtype"], record["CallObject"]) == (
        "Call",
        "Call",
        "call_1",
    )
    assert (record["CallDisposition"], record["CallDurationInSeconds"]) == ("interested", 74)
    assert record["ActivityDate"] == "2026-12-07"  # the call's UTC day
    assert record["Description"].splitlines()[:3] == [
        "Outcome: answered",
        "Disposition: interested (SimZ: INTERESTED)",
        "Duration: 74 s",
    ]
    assert "WhoId" in task_record(a_call(salesforce_id="0035e00000AbCdEFGH"), "x")
    other = task_record(a_call(salesforce_id="0065e00000AbCdEFGH", duration_seconds=None), "x")
    assert other["WhatId"] == "0065e00000AbCdEFGH" and "WhoId" not in other
    assert "CallDurationInSeconds" not in other


def test_the_subject_is_filled_in_and_cut() -> None:
    assert subject("{outcome} / {disposition} {other}", a_call()) == "answered / interested {other}"
    assert subject("Call: {disposition}", a_call(disposition=None)) == "Call: answered"
    assert len(subject("{disposition}", a_call(disposition="x" * 400))) == 255


def test_the_lookup_escapes_the_call_keys() -> None:
    soql = lookup_query(["a'b", "c\\d", "a'b"])
    assert soql == (
        "SELECT Id, CallObject, WhoId, WhatId FROM Task WHERE CallObject IN ('a\\'b', 'c\\\\d')"
    )


def test_a_found_task_must_name_the_same_record() -> None:
    found = found_tasks(
        [
            {"Id": "00T1", "CallObject": "call_1", "WhoId": "00Q5e00000AbCdEFGH", "WhatId": None},
            {"Id": "00T2", "CallObject": "call_2", "WhoId": "00Q5e00000ZZZZZZZZ"},
            "junk",
        ]
    )
    assert task_of(found, a_call()) == "00T1"
    assert task_of(found, a_call(call_key="call_2")) is None


def test_an_unclear_create_answer_is_in_doubt() -> None:
    answer = [
        {"id": "00T1", "success": True, "errors": []},
        {"success": False, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "busy"}]},
        {"success": False, "errors": [{"statusCode": "INVALID_FIELD", "message": "no"}]},
        {"success": True},
    ]
    outcomes = create_outcomes(answer, 5)
    assert [o[0] for o in outcomes] == ["done", "retry", "failed", IN_DOUBT, IN_DOUBT]
    assert outcomes[0][2] == "00T1"
    assert {o[0] for o in create_outcomes({"oops": 1}, 2)} == {IN_DOUBT}


def test_fields_and_their_describe_problems() -> None:
    fields = CallFields("Outcome__c", None, "Called_At__c")
    assert field_values(fields, a_call()) == {
        "Outcome__c": "answered",
        "Called_At__c": "2026-12-07T23:59:30.000+0000",
    }
    described = [
        {"name": "Outcome__c", "type": "string", "updateable": True},
        {"name": "Called_At__c", "type": "string", "updateable": False},
    ]
    assert call_field_problems("Lead", fields, described) == [
        "call_writeback.fields.called_at: Lead.Called_At__c is not updateable by the "
        "integration user",
        "call_writeback.fields.called_at: Lead.Called_At__c is a string field; expected datetime",
    ]
    problems = task_problems([{"name": "CallObject", "createable": False}])
    assert "call_writeback: Task.CallObject is not createable by the integration user" in problems
    assert "call_writeback: Task.WhoId does not exist" in problems


def test_a_call_write_back_job_only_for_syncs_that_write_calls_back() -> None:
    base = {"agent": "agt_1", "mapping": {"phoneNumber": "Phone"}}
    plain = SyncConfig.model_validate({"name": "web", **base})
    calling = SyncConfig.model_validate({"name": "crm", **base, "call_writeback": {}})
    ran = threading.Event()

    def job(sync: SyncConfig, stop: threading.Event) -> None:
        assert sync.name == "crm"
        ran.set()

    scheduler = JobScheduler(
        [plain, calling],
        poll=lambda sync, stop: None,
        deliver=lambda sync, stop: None,
        call_writeback=job,
        stop=threading.Event(),
    )
    assert "call-writeback:crm" in scheduler.job_ids()
    assert not [j for j in scheduler.job_ids() if j.startswith("call-writeback:web")]
    scheduler.start()
    try:
        assert ran.wait(10)
    finally:
        scheduler.shutdown(5)
