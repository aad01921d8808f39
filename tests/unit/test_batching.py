"""Request bodies: absent optional fields are left out, never sent as null or ""."""

from __future__ import annotations

from syncd.domain.batching import request_body
from syncd.sandbox.simz_spec import validate_request


class TestRequestBody:
    def test_nulls_and_empties_dropped(self) -> None:
        """None and empty strings disappear; customData keeps only real values."""
        body = request_body(
            [
                {
                    "phoneNumber": "+14155550100",
                    "firstName": None,
                    "lastName": "",
                    "email": "  ",
                    "salesforceId": "00Q000000000001AAA",
                    "customData": {"a": None, "b": 1, "c": ""},
                },
                {"phoneNumber": "+14155550101", "customData": {"x": None}},
            ],
            {"priority": "high", "enableAMD": None, "webhookUrl": ""},
        )
        assert body == {
            "leads": [
                {
                    "phoneNumber": "+14155550100",
                    "salesforceId": "00Q000000000001AAA",
                    "customData": {"b": 1},
                },
                {"phoneNumber": "+14155550101"},
            ],
            "options": {"priority": "high"},
        }
        assert validate_request(body) == []

    def test_no_options(self) -> None:
        """Without options (or only empty ones) the body has no options key."""
        assert request_body([{"phoneNumber": "+1"}], None) == {"leads": [{"phoneNumber": "+1"}]}
        assert "options" not in request_body([{"phoneNumber": "+1"}], {"priority": None})

    def test_false_is_kept(self) -> None:
        """A false flag is a value, not an absence."""
        assert request_body([], {"enableAMD": False})["options"] == {"enableAMD": False}
