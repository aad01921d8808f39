"""Unit tests for syncd.domain.mapping: record -> lead."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from syncd.config.models import SyncConfig
from syncd.domain.mapping import Mapper, json_safe, normalise_phone, resolve
from syncd.domain.states import LeadState
from syncd.sandbox.example import example_sync

STAMP = "2024-03-01T10:00:00.000+0000"


def sync(**overrides: Any) -> SyncConfig:
    return SyncConfig.model_validate(example_sync("web", **{"agent": "agt_1", **overrides}))


def record(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "attributes": {"type": "Lead", "url": "/x"},
        "Id": "00Q000000000001AAA",
        "SystemModstamp": STAMP,
        "Phone": "(415) 555-0123",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Email": "ada@example.com",
        "Company": "Engines",
        "DoNotCall": False,
        "Owner": {"attributes": {"type": "User"}, "Email": "owner@example.com"},
    }
    base.update(fields)
    return base


class TestResolve:
    def test_relationship_path(self) -> None:
        """A dotted path follows a relationship object."""
        assert resolve(record(), "Owner.Email") == "owner@example.com"

    def test_case_insensitive(self) -> None:
        """Field names match whatever their case, as in Salesforce."""
        assert resolve(record(), "owner.EMAIL") == "owner@example.com"
        assert resolve(record(), "phone") == "(415) 555-0123"

    def test_null_relationship(self) -> None:
        """A null relationship object gives None for the field behind it."""
        assert resolve(record(Owner=None), "Owner.Email") is None

    def test_absent_field(self) -> None:
        """A field that is not in the record gives None."""
        assert resolve(record(), "Nope.Email") is None


class TestPayload:
    def test_full_lead(self) -> None:
        """A good record becomes a queued lead with every mapped field."""
        lead = Mapper(sync().mapping_spec).map(record())
        assert lead.state is LeadState.QUEUED
        assert lead.agent_id == "agt_1"
        assert lead.cursor == datetime(2024, 3, 1, 10, tzinfo=UTC)
        assert lead.payload == {
            "phoneNumber": "+14155550123",
            "salesforceId": "00Q000000000001AAA",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "email": "ada@example.com",
            "campaignType": "web-inbound",
            "customData": {"owner": "owner@example.com", "company": "Engines"},
        }
        assert lead.note is None

    def test_constants(self) -> None:
        """A {const: ...} mapping puts the constant in the lead, as text for string fields."""
        cfg = sync(
            mapping={
                "phoneNumber": "Phone",
                "campaignType": {"const": 42},
                "customData": {"source": {"const": "web"}, "flag": {"const": True}},
            }
        )
        lead = Mapper(cfg.mapping_spec).map(record())
        assert lead.payload["campaignType"] == "42"
        assert lead.payload["customData"] == {"source": "web", "flag": True}

    def test_empty_strings_absent(self) -> None:
        """Empty or blank strings are left out, never sent as ""."""
        lead = Mapper(sync().mapping_spec).map(
            record(FirstName="", LastName="   ", Email="", Company="")
        )
        assert "firstName" not in lead.payload
        assert "lastName" not in lead.payload
        assert "email" not in lead.payload
        assert lead.payload["customData"] == {"owner": "owner@example.com"}
        assert lead.note is None

    def test_null_relationship_left_out(self) -> None:
        """customData from a null relationship is left out, and the lead still goes."""
        lead = Mapper(sync().mapping_spec).map(record(Owner=None))
        assert lead.state is LeadState.QUEUED
        assert lead.payload["customData"] == {"company": "Engines"}

    def test_bad_email_dropped_with_note(self) -> None:
        """An email that is not an email address is left out with a note; the lead still goes."""
        lead = Mapper(sync().mapping_spec).map(record(Email="not-an-email"))
        assert lead.state is LeadState.QUEUED
        assert "email" not in lead.payload
        assert lead.note == "email left out: not an email address"

    def test_non_ascii_email_left_out(self) -> None:
        """A non-ASCII address is not a spec ``email`` (SimZ would 400 the batch): left out."""
        lead = Mapper(sync().mapping_spec).map(record(Email="jürgen.1@example.com"))
        assert lead.state is LeadState.QUEUED
        assert "email" not in lead.payload

    def test_custom_data_json_safe(self) -> None:
        """Dates, decimals and nested values in customData become JSON values."""
        cfg = sync(
            mapping={
                "phoneNumber": "Phone",
                "customData": {"when": "D", "amount": "A", "whole": "W", "nested": "N"},
            }
        )
        rec = record(
            D=date(2024, 1, 2),
            A=Decimal("12.50"),
            W=Decimal("3"),
            N={"attributes": {"type": "X"}, "at": datetime(2024, 1, 2, tzinfo=UTC), "l": [1.5]},
        )
        lead = Mapper(cfg.mapping_spec).map(rec)
        custom = lead.payload["customData"]
        assert custom == {
            "when": "2024-01-02",
            "amount": 12.5,
            "whole": 3,
            "nested": {"at": "2024-01-02T00:00:00+00:00", "l": [1.5]},
        }
        json.dumps(lead.payload, allow_nan=False)

    def test_json_safe_non_finite(self) -> None:
        """NaN has no JSON form and becomes text."""
        assert json_safe(float("nan")) == "nan"
        assert json_safe(Decimal("Infinity")) == "Infinity"


class TestPhone:
    def test_region(self) -> None:
        """A national number is read in the sync's default region."""
        assert normalise_phone("020 7183 8750", "GB") == "+442071838750"
        assert normalise_phone("(415) 555-0123", "US") == "+14155550123"

    def test_international_ignores_region(self) -> None:
        """A number with a country code keeps it whatever the region."""
        assert normalise_phone("+44 20 7183 8750", "US") == "+442071838750"

    def test_bad_phone_invalid(self) -> None:
        """An unusable number makes the lead invalid, without the number in the note."""
        lead = Mapper(sync().mapping_spec).map(record(Phone="12345"))
        assert lead.state is LeadState.INVALID
        assert lead.note == "phone number in Phone is not a valid number"
        assert "phoneNumber" not in lead.payload
        assert lead.phone_e164 is None

    def test_missing_phone_invalid(self) -> None:
        """No phone at all makes the lead invalid with a clear note."""
        lead = Mapper(sync().mapping_spec).map(record(Phone=None))
        assert lead.state is LeadState.INVALID
        assert lead.note == "no phone number in Phone"

    def test_garbage_phone(self) -> None:
        """Letters in the phone field are invalid, not an exception."""
        assert Mapper(sync().mapping_spec).map(record(Phone="call me")).state is LeadState.INVALID


class TestRouting:
    def route_sync(self, default: str | None) -> SyncConfig:
        route: dict[str, Any] = {"field": "Country", "values": {"US": "agt_us", "GB": "agt_gb"}}
        if default:
            route["default"] = default
        return sync(agent=None, route=route)

    def test_route_by_value(self) -> None:
        """The field's value picks the agent."""
        assert (
            Mapper(self.route_sync(None).mapping_spec).map(record(Country="GB")).agent_id
            == "agt_gb"
        )

    def test_route_default(self) -> None:
        """A value not listed goes to the default agent."""
        assert (
            Mapper(self.route_sync("agt_x").mapping_spec).map(record(Country="FR")).agent_id
            == "agt_x"
        )

    def test_no_route(self) -> None:
        """Without a default, an unlisted value makes the lead invalid with a clear note."""
        lead = Mapper(self.route_sync(None).mapping_spec).map(record(Country="FR"))
        assert lead.state is LeadState.INVALID
        assert lead.agent_id is None
        assert lead.note == "no route for Country=FR"

    def test_no_route_null(self) -> None:
        """A null routing value is named null in the note."""
        lead = Mapper(self.route_sync(None).mapping_spec).map(record(Country=None))
        assert lead.note == "no route for Country=null"


class TestDigest:
    def test_stable(self) -> None:
        """The same record gives the same digest; key order does not matter."""
        rec = record()
        again = dict(reversed(list(rec.items())))
        assert (
            Mapper(sync().mapping_spec).map(rec).digest
            == Mapper(sync().mapping_spec).map(again).digest
        )

    def test_changes_with_data(self) -> None:
        """A change to any mapped value changes the digest."""
        mapper = Mapper(sync().mapping_spec)
        assert mapper.map(record()).digest != mapper.map(record(Company="Other")).digest
        assert mapper.map(record()).digest != mapper.map(record(DoNotCall=True)).digest

    def test_ignores_unmapped_and_cursor(self) -> None:
        """A new SystemModstamp or an unmapped field alone is not a change."""
        mapper = Mapper(sync().mapping_spec)
        bumped = record(SystemModstamp="2024-03-02T10:00:00.000+0000", Title="CEO")
        assert mapper.map(record()).digest == mapper.map(bumped).digest
