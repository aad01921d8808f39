"""The Salesforce emulator gives a new record the standard fields' defaults, as an org does.

Without them a sync whose ``where`` reads ``IsConverted = false`` (the example
configuration's) would read nothing from the emulator, while an org returns
every unconverted lead.
"""

from __future__ import annotations

from typing import Any

import pytest

from syncd.sandbox.sf_objects import LEAD_STATUSES
from syncd.sandbox.sf_soql import compile_query
from syncd.sandbox.sf_store import DeclaredField, RecordStore

LEAD_DEFAULTS = {
    "IsDeleted": False,
    "IsConverted": False,
    "Status": "Open - Not Contacted",
    "HasOptedOutOfEmail": False,
    "DoNotCall": False,
}
CONTACT_DEFAULTS = {"IsDeleted": False, "HasOptedOutOfEmail": False, "DoNotCall": False}


def stored(store: RecordStore, record_id: str) -> dict[str, Any]:
    record = store.lookup(record_id)
    assert record is not None
    return dict(record)


def count(store: RecordStore, soql: str) -> int:
    query = compile_query(soql, store)
    sobject = "Contact" if " FROM Contact" in soql else "Lead"
    return len(query.run(store.snapshot(sobject)))


class TestCreate:
    def test_a_lead_without_them_gets_them(self) -> None:
        store = RecordStore()
        [lead] = store.add([{"sobject": "Lead", "LastName": "Lovelace"}])
        record = stored(store, lead)
        assert {name: record[name] for name in LEAD_DEFAULTS} == LEAD_DEFAULTS

    def test_a_contact_without_them_gets_them(self) -> None:
        store = RecordStore()
        [contact] = store.add([{"sobject": "Contact", "LastName": "Hopper"}])
        record = stored(store, contact)
        assert {name: record[name] for name in CONTACT_DEFAULTS} == CONTACT_DEFAULTS
        assert "IsConverted" not in record and "Status" not in record  # Lead fields only

    def test_given_values_are_kept(self) -> None:
        store = RecordStore()
        given = {"IsConverted": True, "Status": "Working - Contacted", "DoNotCall": True}
        [lead] = store.add([{"sobject": "Lead", "LastName": "Turing", **given}])
        record = stored(store, lead)
        assert {name: record[name] for name in given} == given
        assert record["HasOptedOutOfEmail"] is False

    def test_a_null_checkbox_is_false_and_a_null_status_stays_null(self) -> None:
        store = RecordStore()
        [lead] = store.add([{"sobject": "Lead", "DoNotCall": None, "Status": None}])
        record = stored(store, lead)
        assert record["DoNotCall"] is False
        assert record["Status"] is None

    def test_other_objects_get_no_lead_fields(self) -> None:
        store = RecordStore()
        [account] = store.add([{"sobject": "Account", "Name": "Acme"}])
        record = stored(store, account)
        assert record["IsDeleted"] is False
        assert "DoNotCall" not in record


class TestUpdate:
    def test_a_checkbox_set_to_null_becomes_false(self) -> None:
        store = RecordStore()
        [lead] = store.add([{"sobject": "Lead", "LastName": "x", "DoNotCall": True}])
        store.update("Lead", lead, {"DoNotCall": None})
        assert stored(store, lead)["DoNotCall"] is False

    def test_an_upsert_by_id_keeps_what_the_record_has(self) -> None:
        store = RecordStore()
        [lead] = store.add([{"sobject": "Lead", "LastName": "x", "Status": "Working - Contacted"}])
        store.add([{"sobject": "Lead", "Id": lead, "Phone": "+1 415 555 0101"}])
        assert stored(store, lead)["Status"] == "Working - Contacted"

    def test_a_field_redeclared_with_another_type_gets_no_default(self) -> None:
        store = RecordStore()
        store.declare_field(DeclaredField("Lead", "DoNotCall", "string"))
        [lead] = store.add([{"sobject": "Lead", "LastName": "x"}])
        assert "DoNotCall" not in stored(store, lead)


class TestQueries:
    @pytest.mark.parametrize(
        ("condition", "expected"),
        [
            ("IsConverted = false", 3),
            ("IsDeleted = false", 4),
            ("DoNotCall = false", 4),
            ("HasOptedOutOfEmail = false", 4),
            ("Status = 'Open - Not Contacted'", 4),
            ("LeadSource = 'Web' AND IsConverted = false", 3),
        ],
    )
    def test_filters_on_defaults_match_records_created_without_them(
        self, condition: str, expected: int
    ) -> None:
        """Three web leads and one converted lead, none naming the defaulted fields."""
        store = RecordStore()
        store.add([{"sobject": "Lead", "LastName": str(n), "LeadSource": "Web"} for n in range(3)])
        store.add([{"sobject": "Lead", "LastName": "converted", "IsConverted": True}])
        assert count(store, f"SELECT Id FROM Lead WHERE {condition}") == expected

    def test_contact_filters(self) -> None:
        store = RecordStore()
        store.add(
            [{"sobject": "Contact", "LastName": "a"}, {"sobject": "Contact", "DoNotCall": True}]
        )
        assert count(store, "SELECT Id FROM Contact WHERE DoNotCall = false") == 1
        assert count(store, "SELECT Id FROM Contact WHERE HasOptedOutOfEmail = false") == 2


class TestDescribe:
    def test_defaults_are_described(self) -> None:
        fields = {field["name"]: field for field in RecordStore().describe("Lead")}
        for name in ("IsConverted", "DoNotCall", "HasOptedOutOfEmail", "IsDeleted"):
            field = fields[name]
            assert (field["type"], field["defaultedOnCreate"], field["nillable"]) == (
                "boolean",
                True,
                False,
            ), name
            assert field["defaultValue"] is False, name
        status = fields["Status"]
        assert (status["type"], status["defaultedOnCreate"], status["nillable"]) == (
            "picklist",
            True,
            False,
        )
        values = [entry["value"] for entry in status["picklistValues"]]
        assert values == list(LEAD_STATUSES)
        [default] = [entry["value"] for entry in status["picklistValues"] if entry["defaultValue"]]
        assert default == "Open - Not Contacted"

    def test_fields_without_a_default_say_so(self) -> None:
        fields = {field["name"]: field for field in RecordStore().describe("Lead")}
        assert (fields["Phone"]["defaultedOnCreate"], fields["Phone"]["nillable"]) == (False, True)

    def test_contact_checkboxes_are_described(self) -> None:
        fields = {field["name"]: field for field in RecordStore().describe("Contact")}
        assert fields["DoNotCall"]["defaultedOnCreate"] is True
        assert fields["HasOptedOutOfEmail"]["defaultValue"] is False
