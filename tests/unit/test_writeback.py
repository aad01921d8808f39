"""Unit tests for write-back's pure parts: config, record values, answers, describe checks,
and that written fields never reach the poll query or the change digest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from syncd.config.models import SyncConfig, WritebackFieldsConfig
from syncd.domain.mapping import Mapper
from syncd.domain.soql import query_fields
from syncd.domain.writeback import (
    DONE,
    FAILED,
    RETRY,
    classify,
    classify_all,
    collection_body,
    error_length,
    field_problems,
    record_values,
    salesforce_datetime,
)

FIELDS = {
    "status": "SimZ_Status__c",
    "batch_id": "SimZ_Batch_Id__c",
    "sent_at": "SimZ_Sent_At__c",
    "error": "SimZ_Error__c",
}


def sync(writeback: dict[str, Any] | None = None, **overrides: Any) -> SyncConfig:
    base: dict[str, Any] = {
        "name": "web",
        "agent": "agt_1",
        "mapping": {"phoneNumber": "Phone", "firstName": "FirstName"},
        "writeback": writeback if writeback is not None else {"fields": FIELDS},
    }
    base.update(overrides)
    return SyncConfig.model_validate(base)


class TestConfig:
    def test_defaults(self) -> None:
        config = sync()
        assert config.writeback is not None
        assert config.writeback.states == ["accepted", "rejected", "uncertain", "failed"]
        assert config.writeback.fields.names() == FIELDS

    def test_held_and_intake_states_are_accepted(self) -> None:
        config = sync({"fields": {"status": "S__c"}, "states": ["held", "invalid", "skipped"]})
        assert config.writeback is not None and config.writeback.states[0] == "held"

    @pytest.mark.parametrize(
        ("writeback", "message"),
        [
            ({"fields": {}}, "at least one"),
            ({"fields": {"status": "S__c"}, "states": ["sending"]}, "states"),
            ({"fields": {"status": "S__c"}, "states": []}, "states"),
            ({"fields": {"status": "S__c", "error": "s__C"}}, "its own field"),
            ({"fields": {"status": "S__c", "colour": "C__c"}}, "colour"),
            ({"fields": {"status": "bad name"}}, "status"),
        ],
    )
    def test_bad_sections_are_refused(self, writeback: dict[str, Any], message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            sync(writeback)

    def test_a_written_field_cannot_also_be_read(self) -> None:
        """Mapping a field syncd writes would make every write-back look like a change."""
        with pytest.raises(ValidationError, match="SimZ_Status__c, which write-back writes"):
            sync(mapping={"phoneNumber": "Phone", "customData": {"s": "SimZ_Status__c"}})


class TestPollNeverReadsWrittenFields:
    def test_query_fields_leave_written_fields_out(self) -> None:
        assert not {f.lower() for f in query_fields(sync().query_spec)} & {
            v.lower() for v in FIELDS.values()
        }

    def test_digest_ignores_written_fields_and_the_modstamp(self) -> None:
        """A record after a write-back (new values, new SystemModstamp) has the same digest."""
        mapper = Mapper(sync().mapping_spec)
        record = {
            "Id": "00Q000000000001AAA",
            "Phone": "+14155550100",
            "FirstName": "Ada",
            "SystemModstamp": "2026-01-05T09:00:00.000+0000",
        }
        after = {
            **record,
            "SystemModstamp": "2026-01-05T09:05:00.000+0000",
            "SimZ_Status__c": "accepted",
            "SimZ_Error__c": "x",
        }
        assert mapper.map(record).digest == mapper.map(after).digest


class TestValues:
    def test_record_values(self) -> None:
        values = record_values(
            WritebackFieldsConfig.model_validate(FIELDS).spec,
            state="rejected",
            simz_batch_id="sb_1",
            sent_at=datetime(2026, 1, 5, 9, 0, 1, 234000, tzinfo=UTC),
            error_code="INVALID_PHONE",
            error_message="not a number",
            error_length=20,
        )
        assert values == {
            "SimZ_Status__c": "rejected",
            "SimZ_Batch_Id__c": "sb_1",
            "SimZ_Sent_At__c": "2026-01-05T09:00:01.234+0000",
            "SimZ_Error__c": "INVALID_PHONE: not a",
        }

    def test_only_configured_fields_and_nulls_clear(self) -> None:
        fields = WritebackFieldsConfig.model_validate({"status": "S__c", "error": "E__c"}).spec
        values = record_values(
            fields,
            state="accepted",
            simz_batch_id=None,
            sent_at=None,
            error_code=None,
            error_message=None,
        )
        assert values == {"S__c": "accepted", "E__c": None}

    def test_salesforce_datetime_is_utc(self) -> None:
        local = datetime(2026, 1, 5, 10, 0, tzinfo=UTC) + timedelta(0)
        assert salesforce_datetime(local) == "2026-01-05T10:00:00.000+0000"
        with pytest.raises(ValueError):
            salesforce_datetime(datetime(2026, 1, 5))

    def test_collection_body(self) -> None:
        assert collection_body("Lead", [("00Q1", {"S__c": "accepted"})]) == {
            "allOrNone": False,
            "records": [{"attributes": {"type": "Lead"}, "id": "00Q1", "S__c": "accepted"}],
        }


class TestAnswers:
    @pytest.mark.parametrize(
        ("code", "outcome"),
        [
            ("UNABLE_TO_LOCK_ROW", RETRY),
            ("REQUEST_LIMIT_EXCEEDED", RETRY),
            ("ENTITY_IS_DELETED", FAILED),
            ("INVALID_FIELD_FOR_INSERT_UPDATE", FAILED),
            ("FIELD_INTEGRITY_EXCEPTION", FAILED),
            ("INSUFFICIENT_ACCESS_OR_READONLY", FAILED),
            ("SOMETHING_NEW", FAILED),
        ],
    )
    def test_error_codes(self, code: str, outcome: str) -> None:
        result = {"id": "x", "success": False, "errors": [{"statusCode": code, "message": "m"}]}
        assert classify(result) == (outcome, f"{code}: m")

    def test_success_and_fields(self) -> None:
        assert classify({"id": "x", "success": True, "errors": []}) == (DONE, None)
        error = {"statusCode": "STRING_TOO_LONG", "message": "too long", "fields": ["E__c"]}
        assert classify({"success": False, "errors": [error]}) == (
            FAILED,
            "STRING_TOO_LONG: too long (fields: E__c)",
        )

    def test_a_short_or_unreadable_answer_is_retried_never_taken_as_done(self) -> None:
        ok = {"success": True}
        assert classify_all([ok], 3) == [
            (DONE, None),
            (RETRY, "no result for this record in the answer"),
            (RETRY, "no result for this record in the answer"),
        ]
        assert [o for o, _ in classify_all({"oops": 1}, 2)] == [RETRY, RETRY]
        assert classify_all(["x"], 1)[0][0] == RETRY


class TestDescribe:
    DESCRIBED = [
        {"name": "SimZ_Status__c", "type": "picklist", "updateable": True, "length": 40},
        {"name": "SimZ_Batch_Id__c", "type": "double", "updateable": True, "length": 0},
        {"name": "SimZ_Sent_At__c", "type": "datetime", "updateable": False, "length": 0},
        {"name": "SimZ_Error__c", "type": "textarea", "updateable": True, "length": 131},
    ]

    def test_problems_one_line_each(self) -> None:
        fields = WritebackFieldsConfig.model_validate({**FIELDS, "status": "SimZ_Statu__c"}).spec
        assert field_problems("Lead", fields, self.DESCRIBED) == [
            "writeback.fields.status: Lead.SimZ_Statu__c does not exist",
            "writeback.fields.batch_id: Lead.SimZ_Batch_Id__c is a double field; "
            "expected picklist or string or textarea",
            "writeback.fields.sent_at: Lead.SimZ_Sent_At__c is not updateable "
            "by the integration user",
        ]

    def test_names_compare_case_insensitively(self) -> None:
        fields = WritebackFieldsConfig.model_validate({"status": "simz_status__C"}).spec
        assert field_problems("Lead", fields, self.DESCRIBED) == []

    def test_error_length(self) -> None:
        fields = WritebackFieldsConfig.model_validate(FIELDS).spec
        assert error_length(fields, self.DESCRIBED) == 131
        assert error_length(fields, []) == 255


def test_the_due_query_selects_the_row_fields_in_order() -> None:
    """``due`` builds its rows positionally: the query's columns must match the dataclass."""
    import dataclasses

    from syncd.adapters.writeback_store import _DUE, DueWriteback

    columns = [column.name for column in _DUE.selected_columns]
    assert columns == [field.name for field in dataclasses.fields(DueWriteback)]
