"""The suppression list's pure parts: which numbers a read adds, the intake's screen, the lag,
a scrub file's rows, consent in the mapping, and the configuration of sources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from syncd.adapters.orm import SUPPRESSION_SOURCES
from syncd.config import Config, SyncConfig, parse_config
from syncd.domain.consent import ConsentKind, ConsentRule
from syncd.domain.fields import parse_field_ref
from syncd.domain.mapping import Mapper, MappingSpec
from syncd.domain.rules import NumberScreen, decide
from syncd.domain.states import LeadState
from syncd.domain.suppression import (
    DO_NOT_CALL,
    QUERY,
    SOURCES,
    OptOut,
    Scan,
    SourceQuery,
    do_not_call_opt_outs,
    lag_of,
    scan_numbers,
    source_opt_outs,
)

STAMP = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def mapper(**spec: Any) -> Mapper:
    return Mapper(
        MappingSpec(
            phone=parse_field_ref("Phone"),
            cursor_field="SystemModstamp",
            agent="agt_1",
            do_not_call_field="DoNotCall",
            callable_values=frozenset({"false", "no"}),
            **spec,
        )
    )


def record(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "Id": f"00Q00000000000{n}AAA",
        "Phone": f"+1202555{n:04d}",
        "SystemModstamp": STAMP.isoformat(),
        **fields,
    }


def test_the_sources_are_the_tables() -> None:
    assert SOURCES == SUPPRESSION_SOURCES


class TestDoNotCallOptOuts:
    def test_a_set_flag_adds_its_number_with_the_record_and_its_stamp(self) -> None:
        leads = [mapper().map(r) for r in (record(1, DoNotCall=True), record(2, DoNotCall=False))]
        found = do_not_call_opt_outs(leads, "web")
        assert found == {
            "+12025550001": OptOut(
                "+12025550001",
                DO_NOT_CALL,
                "DoNotCall is set on record 00Q000000000001AAA of sync web",
                "syncd (rules.propagate_do_not_call)",
                record_id="00Q000000000001AAA",
                sync_name="web",
                seen_at=STAMP,
            )
        }

    def test_an_unrecognised_value_fails_closed_for_the_number_too(self) -> None:
        [opt_out] = do_not_call_opt_outs([mapper().map(record(1, DoNotCall="Y"))], "web").values()
        assert opt_out.reason == (
            "DoNotCall value 'Y' is not a callable value (treated as do not call) "
            "on record 00Q000000000001AAA of sync web"
        )

    def test_no_valid_number_no_entry_and_the_first_record_of_a_number_wins(self) -> None:
        leads = [
            mapper().map(record(1, DoNotCall=True, Phone="12")),
            mapper().map(record(2, DoNotCall=True, Id="first")),
            mapper().map(record(2, DoNotCall=True, Id="second")),
        ]
        found = do_not_call_opt_outs(leads, "web")
        assert [(o.phone_e164, o.record_id) for o in found.values()] == [("+12025550002", "first")]

    def test_an_invalid_lead_still_propagates(self) -> None:
        lead = mapper().map(record(1, DoNotCall=True, SystemModstamp=None))
        assert lead.state is LeadState.INVALID
        [opt_out] = do_not_call_opt_outs([lead], "web").values()
        assert opt_out.seen_at is None  # stored as "when added"

    @pytest.mark.parametrize(
        ("phone", "source"), [("2025550101", DO_NOT_CALL), ("+12025550101", "nobody")]
    )
    def test_an_opt_out_checks_its_values(self, phone: str, source: str) -> None:
        with pytest.raises(ValueError):
            OptOut(phone, source, "why", "who")


class TestScreen:
    def test_the_list_then_consent_hold_a_lead_back(self) -> None:
        rule = ConsentRule("Consent__c", ConsentKind.BOOLEAN)
        m = mapper(consent_field="Consent__c")
        leads = [
            m.map(record(1, Consent__c=True)),
            m.map(record(2, Consent__c=True)),
            m.map(record(3, Consent__c=False)),
            m.map(record(4, Consent__c=None, DoNotCall=True)),
        ]
        screen = NumberScreen(
            {"+12025550001": "number is on the suppression list (x: y)"}, rule, NOW
        )
        decisions = decide(
            leads,
            recent=set(),
            respect_do_not_call=True,
            duplicate_window_label=None,
            screen=screen,
        )
        assert [(d.state.value, d.note) for d in decisions] == [
            ("skipped", "number is on the suppression list (x: y)"),
            ("queued", None),
            ("skipped", "no consent: Consent__c is false"),
            ("skipped", "DoNotCall is set on the record"),  # DoNotCall comes first
        ]

    def test_a_suppressed_number_takes_no_place_in_the_duplicate_window(self) -> None:
        leads = [mapper().map(record(1)), mapper().map(record(1, Id="other"))]
        screen = NumberScreen({"+12025550001": "listed"})
        decisions = decide(
            leads,
            recent=set(),
            respect_do_not_call=True,
            duplicate_window_label="1d",
            screen=screen,
        )
        assert [d.note for d in decisions] == ["listed", "listed"]

    def test_consent_needs_the_time(self) -> None:
        screen = NumberScreen({}, ConsentRule("C", ConsentKind.BOOLEAN))
        with pytest.raises(ValueError, match="needs the time"):
            screen.held_back(mapper().map(record(1)))


class TestConsentInTheMapping:
    def test_the_value_is_read_as_text_and_is_part_of_the_digest(self) -> None:
        m = mapper(consent_field="Consent__c")
        given, withdrawn = m.map(record(1, Consent__c=True)), m.map(record(1, Consent__c=False))
        assert (given.consent, withdrawn.consent) == ("true", "false")
        assert given.digest != withdrawn.digest

    def test_a_sync_without_the_rule_keeps_its_digests(self) -> None:
        plain = mapper().map(record(1, Consent__c=True))
        assert plain.consent is None
        assert plain.digest == mapper().map(record(1)).digest
        assert plain.digest != mapper(consent_field="Consent__c").map(record(1)).digest


class TestLag:
    def test_late_only_past_max_lag_and_never_negative(self) -> None:
        hour = timedelta(hours=1)
        assert lag_of(STAMP, STAMP + hour, hour).late is False
        assert lag_of(STAMP, STAMP + hour + timedelta(seconds=1), hour).late is True
        assert lag_of(STAMP, STAMP - hour, hour).seconds == 0


class TestSourceOptOuts:
    QUERY = SourceQuery("dnc", "Contact", "DoNotCall = true", ("Phone", "MobilePhone"), "US")

    def test_every_phone_field_first_record_per_number_and_the_newest_stamp(self) -> None:
        later = (STAMP + timedelta(minutes=5)).isoformat()
        records = [
            {"Id": "003A", "Phone": "(202) 555-0101", "MobilePhone": None, "SystemModstamp": STAMP},
            {"Id": "003B", "Phone": "", "MobilePhone": "202 555 0102", "SystemModstamp": later},
            {"Id": "003C", "Phone": "+1 202 555 0101", "MobilePhone": "n/a"},
        ]
        found, newest = source_opt_outs(records, self.QUERY)
        assert {p: (o.record_id, o.seen_at) for p, o in found.items()} == {
            "+12025550101": ("003A", STAMP),
            "+12025550102": ("003B", STAMP + timedelta(minutes=5)),
        }
        assert newest == STAMP + timedelta(minutes=5)
        assert {o.source for o in found.values()} == {QUERY}
        assert found["+12025550101"].reason == (
            "returned by suppression source dnc: Contact where DoNotCall = true"
        )

    def test_no_records_no_stamp(self) -> None:
        assert source_opt_outs([], self.QUERY) == ({}, None)


class TestScan:
    def test_numbers_as_leads_read_them_with_unreadable_lines(self) -> None:
        scan = scan_numbers(
            [
                (2, "2025550101"),
                (3, "nope"),
                (4, "+1 (202) 555-0101"),
                (5, None),
                (6, "202.555.0102"),
            ],
            "US",
            Scan.empty(),
        )
        assert scan.numbers == {"+12025550101": 2, "+12025550102": 6}
        assert scan.unreadable == [(3, "nope"), (5, "")]
        assert scan.repeated == 1


def config(**suppression: Any) -> Config:
    data = {
        "salesforce": {
            "auth": {"method": "session", "session_id": "x", "instance_url": "https://h.example"}
        },
        "simz": {"base_url": "https://simz.example", "api_key": "k"},
        "syncs": [
            {
                "name": "web",
                "agent": "a",
                "mapping": {"phoneNumber": "Phone"},
                "phone": {"default_region": "GB"},
            }
        ],
        "suppression": suppression,
    }
    return parse_config(yaml.safe_dump(data))


class TestConfig:
    SOURCE = {"name": "dnc", "where": "DoNotCall = true", "phone_fields": ["Phone"]}

    def test_defaults_and_the_region(self) -> None:
        found = config(sources=[self.SOURCE])
        [source] = found.suppression.sources
        assert (source.object, source.every, found.suppression.max_lag) == (
            "Contact",
            timedelta(minutes=5),
            timedelta(hours=1),
        )
        assert source.key == "suppression:dnc"
        assert source.source_query(found.default_region).region == "GB"

    @pytest.mark.parametrize(
        ("change", "problem"),
        [
            ({"name": "Bad Name"}, "not a valid source name"),
            ({"where": "  "}, "where is empty"),
            ({"phone_fields": []}, "at least 1 item"),
            ({"phone_fields": ["Phone", "phone"]}, "listed twice"),
            ({"phone_fields": ["Ph one"]}, "not a field name"),
            ({"every": "0s"}, "at least 1s"),
            ({"region": "XX"}, "not a region"),
            ({"object": "Con tact"}, "not a Salesforce object name"),
        ],
    )
    def test_bad_sources_are_refused(self, change: dict[str, Any], problem: str) -> None:
        with pytest.raises(Exception, match=problem):
            config(sources=[{**self.SOURCE, **change}])

    def test_names_are_unique_and_max_lag_positive(self) -> None:
        with pytest.raises(Exception, match="duplicate suppression source name"):
            config(sources=[self.SOURCE, self.SOURCE])
        with pytest.raises(Exception, match="max_lag must be positive"):
            config(max_lag="0s")

    def test_consent_is_read_and_propagation_needs_the_field(self) -> None:
        sync = SyncConfig.model_validate(
            {
                "name": "web",
                "agent": "a",
                "mapping": {"phoneNumber": "Phone"},
                "rules": {"consent": {"field": "Consent__c", "kind": "boolean"}},
            }
        )
        assert "Consent__c" in sync.query_spec.read_fields
        assert sync.mapping_spec.consent_field == "Consent__c"
        assert sync.intake_rules.consent == ConsentRule("Consent__c", ConsentKind.BOOLEAN)
        assert sync.intake_rules.propagate_do_not_call is True
        ignoring = sync.model_copy(
            update={"rules": sync.rules.model_copy(update={"respect_do_not_call": False})}
        )
        assert ignoring.intake_rules.propagate_do_not_call is False

    def test_a_consent_field_written_back_is_refused(self) -> None:
        with pytest.raises(ValidationError, match=r"rules\.consent\.field reads Consent__c"):
            SyncConfig.model_validate(
                {
                    "name": "web",
                    "agent": "a",
                    "mapping": {"phoneNumber": "Phone"},
                    "rules": {"consent": {"field": "Consent__c", "kind": "boolean"}},
                    "writeback": {"fields": {"status": "Consent__c"}},
                }
            )
