"""The emulator's SOQL subset: parsing, checking against the catalog, evaluating."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.sandbox.sf_soql import (
    SoqlError,
    compile_query,
    decode_string,
    format_datetime,
    id_suffix,
    normalize_id,
    parse,
)
from syncd.sandbox.sf_store import RecordError, RecordStore


@pytest.fixture
def store() -> RecordStore:
    store = RecordStore()
    (owner,) = store.add([{"sobject": "User", "Email": "boss@example.com"}])
    store.add(
        [
            {"sobject": "Lead", "LastName": "alpha", "Phone": "1", "Score__c": 5,
             "OwnerId": owner, "SystemModstamp": "2024-01-01T00:00:00Z", "DoNotCall": False},
            {"sobject": "Lead", "LastName": "Beta", "Phone": None, "Score__c": 7,
             "OwnerId": None, "SystemModstamp": "2024-01-02T00:00:00Z", "DoNotCall": True},
            {"sobject": "Lead", "LastName": "gamma_x", "Phone": "3", "Score__c": None,
             "OwnerId": owner, "SystemModstamp": "2024-01-02T00:00:00Z", "DoNotCall": False},
        ]
    )  # fmt: skip
    return store


def run(store: RecordStore, soql: str) -> list[dict[str, Any]]:
    query = compile_query(soql, store)
    return [query.project(r, "61.0") for r in query.run(store.snapshot(query.sobject))]


def names(store: RecordStore, soql: str) -> list[str]:
    return [r["LastName"] for r in run(store, soql)]


def refused(store: RecordStore, soql: str) -> str:
    with pytest.raises(SoqlError) as exc:
        compile_query(soql, store)
    return exc.value.code


class TestIds:
    def test_checksum_matches_salesforce(self) -> None:
        """The case-safe suffix of a known Salesforce Id is computed correctly."""
        assert id_suffix("001A0000006Vm9r") == "IAC"  # the example in Salesforce's docs
        assert normalize_id("00Q000000000001") == "00Q000000000001EAA"
        assert normalize_id("001A0000006Vm9rIAC") == "001A0000006Vm9rIAC"
        assert normalize_id("a0B5g00000ABCDE") == "a0B5g00000ABCDE" + id_suffix("a0B5g00000ABCDE")

    def test_bad_ids_are_rejected(self) -> None:
        """An Id of the wrong length, characters or checksum is not an Id."""
        assert normalize_id("00Q00000000000") is None
        assert normalize_id("00Q000000000001ZZZ") is None
        assert normalize_id("00Q-00000000001") is None


class TestParsing:
    def test_string_escapes_are_decoded(self) -> None:
        """SOQL escapes in string literals give the characters they stand for."""
        assert decode_string(r"'O\'Brien \\ \n'") == "O'Brien \\ \n"

    def test_unknown_escape_is_malformed(self) -> None:
        """An escape SOQL does not define is MALFORMED_QUERY."""
        with pytest.raises(SoqlError) as exc:
            decode_string(r"'\q'")
        assert exc.value.code == "MALFORMED_QUERY"

    @pytest.mark.parametrize(
        "soql",
        [
            "SELECT FROM Lead",
            "SELECT Id Lead",
            "SELECT Id FROM Lead WHERE",
            "SELECT Id FROM Lead WHERE LastName = 'a' AND Phone = '1' OR Phone = '2'",
            "SELECT Id FROM Lead WHERE SystemModstamp > 2024-01-01T00:00:00",
            "SELECT Id FROM Lead LIMIT -1",
            "SELECT Id FROM Lead WHERE LastName = 'unterminated",
            "SELECT Id FROM Lead ORDER BY",
            "SELECT Id FROM Lead extra",
        ],
    )
    def test_syntax_errors_are_malformed_query(self, soql: str) -> None:
        """Anything outside the grammar is MALFORMED_QUERY, never a guess."""
        with pytest.raises(SoqlError) as exc:
            parse(soql)
        assert exc.value.code == "MALFORMED_QUERY"

    def test_keywords_are_case_insensitive(self) -> None:
        """select/from/where/order by parse in any case."""
        parsed = parse(
            "select Id from Lead where not (LastName = 'a') order by Id desc nulls first"
        )
        assert parsed.sobject == "Lead"
        assert parsed.order_by[0].descending and not parsed.order_by[0].nulls_last


class TestChecking:
    @pytest.mark.parametrize(
        ("soql", "code"),
        [
            ("SELECT Nope FROM Lead", "INVALID_FIELD"),
            ("SELECT Boss.Email FROM Lead", "INVALID_FIELD"),
            ("SELECT Owner.Nope FROM Lead", "INVALID_FIELD"),
            ("SELECT Id FROM Lead WHERE Nope = 1", "INVALID_FIELD"),
            ("SELECT Id FROM Lead ORDER BY Nope", "INVALID_FIELD"),
            ("SELECT Id FROM Thing__c", "INVALID_TYPE"),
            ("SELECT Id FROM Lead WHERE SystemModstamp > '2024-01-01T00:00:00Z'", "INVALID_FIELD"),
            ("SELECT Id FROM Lead WHERE SystemModstamp > 2024-01-01", "INVALID_FIELD"),
            ("SELECT Id FROM Lead WHERE LastName = 5", "INVALID_FIELD"),
            ("SELECT Id FROM Lead WHERE Score__c = '5'", "INVALID_FIELD"),
            ("SELECT Id FROM Lead WHERE DoNotCall = 'true'", "INVALID_FIELD"),
            ("SELECT Id FROM Lead WHERE DoNotCall > true", "INVALID_FIELD"),
            ("SELECT Id FROM Lead WHERE Score__c LIKE '5%'", "INVALID_FIELD"),
            ("SELECT Id FROM Lead WHERE Id = 'abc'", "INVALID_QUERY_FILTER_OPERATOR"),
            ("SELECT Id, id FROM Lead", "MALFORMED_QUERY"),
            ("SELECT Id FROM Lead WHERE Score__c > null", "MALFORMED_QUERY"),
        ],
    )
    def test_refusals_carry_salesforce_codes(
        self, store: RecordStore, soql: str, code: str
    ) -> None:
        """Unknown names and literals of the wrong type are refused with Salesforce's code."""
        assert refused(store, soql) == code

    def test_empty_standard_objects_are_queryable(self, store: RecordStore) -> None:
        """A standard object with no records still knows its common fields."""
        assert run(store, "SELECT Id, Name, Email, AccountId FROM Contact") == []


class TestEvaluation:
    def test_comparisons_ignore_case_for_strings(self, store: RecordStore) -> None:
        """= and LIKE on strings ignore case, as in Salesforce."""
        assert names(store, "SELECT LastName FROM Lead WHERE LastName = 'ALPHA'") == ["alpha"]
        assert names(store, "SELECT LastName FROM Lead WHERE LastName LIKE 'b%'") == ["Beta"]

    def test_like_wildcards_and_escapes(self, store: RecordStore) -> None:
        """_ matches one character and \\_ only an underscore."""
        assert names(store, "SELECT LastName FROM Lead WHERE LastName LIKE 'gamm_\\_%'") == [
            "gamma_x"
        ]
        assert names(store, "SELECT LastName FROM Lead WHERE LastName LIKE 'alph\\_'") == []

    def test_null_semantics(self, store: RecordStore) -> None:
        """= null finds missing values; != 'x' includes nulls; ranges skip nulls."""
        assert names(store, "SELECT LastName FROM Lead WHERE Phone = null") == ["Beta"]
        assert names(store, "SELECT LastName FROM Lead WHERE Phone != '1'") == ["Beta", "gamma_x"]
        assert names(store, "SELECT LastName FROM Lead WHERE Score__c >= 6") == ["Beta"]

    def test_in_not_in_and_boolean_logic(self, store: RecordStore) -> None:
        """IN, NOT IN, NOT and parentheses combine as expected."""
        soql = (
            "SELECT LastName FROM Lead WHERE (Phone IN ('1', '3') OR DoNotCall = true) "
            "AND NOT LastName NOT IN ('alpha', 'Beta')"
        )
        assert names(store, soql) == ["alpha", "Beta"]

    def test_datetime_literals_with_offsets(self, store: RecordStore) -> None:
        """A datetime literal with an offset compares as the same instant in UTC."""
        soql = "SELECT LastName FROM Lead WHERE SystemModstamp >= 2024-01-02T02:00:00.000+02:00"
        assert names(store, soql) == ["Beta", "gamma_x"]

    def test_order_by_several_keys_and_null_placement(self, store: RecordStore) -> None:
        """ORDER BY honours each key's direction and NULLS FIRST/LAST."""
        soql = "SELECT LastName FROM Lead ORDER BY SystemModstamp DESC, LastName ASC"
        assert names(store, soql) == ["Beta", "gamma_x", "alpha"]
        soql = "SELECT LastName FROM Lead ORDER BY Score__c NULLS LAST"
        assert names(store, soql) == ["alpha", "Beta", "gamma_x"]
        soql = "SELECT LastName FROM Lead ORDER BY Score__c DESC NULLS FIRST"
        assert names(store, soql) == ["gamma_x", "Beta", "alpha"]

    def test_limit_offset_and_count(self, store: RecordStore) -> None:
        """LIMIT and OFFSET slice the sorted rows; COUNT() counts matches."""
        assert names(store, "SELECT LastName FROM Lead ORDER BY LastName LIMIT 1 OFFSET 1") == [
            "Beta"
        ]
        query = compile_query("SELECT COUNT() FROM Lead WHERE DoNotCall = false", store)
        assert query.count and len(query.run(store.snapshot("Lead"))) == 2

    def test_relationship_projection_and_filter(self, store: RecordStore) -> None:
        """Owner.Email is projected as a nested object and can be filtered on."""
        rows = run(store, "SELECT LastName, Owner.Email FROM Lead WHERE Owner.Email != null")
        assert [r["Owner"]["Email"] for r in rows] == ["boss@example.com"] * 2
        assert (
            run(store, "SELECT Owner.Email FROM Lead WHERE LastName = 'Beta'")[0]["Owner"] is None
        )

    def test_datetimes_are_projected_in_salesforce_format(self, store: RecordStore) -> None:
        """Datetime values leave in the 2024-01-01T00:00:00.000+0000 shape."""
        rows = run(store, "SELECT SystemModstamp FROM Lead WHERE LastName = 'alpha'")
        assert rows[0]["SystemModstamp"] == "2024-01-01T00:00:00.000+0000"
        assert rows[0]["attributes"]["type"] == "Lead"


class TestStore:
    def test_generated_ids_carry_prefix_and_checksum(self) -> None:
        """New records get 18-character Ids with their object's key prefix and a valid suffix."""
        store = RecordStore()
        ids = store.add([{"sobject": s} for s in ("Lead", "Contact", "Account", "Opportunity")])
        assert [i[:3] for i in ids] == ["00Q", "003", "001", "006"]
        assert all(normalize_id(i) == i for i in ids)

    def test_bad_records_are_refused_whole(self) -> None:
        """A value of the wrong type refuses the batch and stores nothing."""
        store = RecordStore()
        with pytest.raises(RecordError):
            store.add(
                [
                    {"sobject": "Lead", "LastName": "ok"},
                    {"sobject": "Lead", "SystemModstamp": "yesterday"},
                ]
            )
        assert store.count() == 0

    def test_update_stamps_and_keeps_snapshots(self) -> None:
        """An update replaces the record and moves SystemModstamp; the old object is untouched."""
        store = RecordStore()
        (lead,) = store.add([{"sobject": "Lead", "SystemModstamp": "2024-01-01T00:00:00Z"}])
        before = store.get("Lead", lead)
        after = store.update("Lead", lead, {"Phone": "1"})
        assert before is not None and "Phone" not in before
        assert format_datetime(after["SystemModstamp"]) > "2024-01-01T00:00:00.000+0000"


class TestErrorPositions:
    @pytest.mark.parametrize(
        ("soql", "column"),
        [
            ("SELECT Id, Phonee FROM Lead", 12),
            ("SELECT Id FROM Lead WHERE Boss.Email = 'x'", 27),
            ("SELECT Id FROM Lead WHERE LastName = 'a' AND AND Phone = '1'", 46),
            ("SELECT Id FROM Lead ORDER BY Nope__c", 30),
            ("SELECT Id FROM Widget", 16),
            ("SELECT Id FROM Lead WHERE IsConverted = 'false'", 27),
        ],
        ids=["field", "relationship", "syntax", "order-by", "object", "literal-type"],
    )
    def test_refusals_name_row_and_column(self, store: RecordStore, soql: str, column: int) -> None:
        """Like Salesforce, a refusal repeats the query line, a caret, then Row and Column."""
        with pytest.raises(SoqlError) as exc:
            compile_query(soql, store)
        message = exc.value.answer_message(soql)
        first, line, caret, where, *rest = message.split("\n")
        assert first == "" and line == soql
        assert caret == " " * (column - 1) + "^"
        assert where == f"ERROR at Row:1:Column:{column}"
        assert rest == [exc.value.message]
