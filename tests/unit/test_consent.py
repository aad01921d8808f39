"""The consent rule (syncd.domain.consent): every branch, with plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.domain.consent import (
    FUTURE_TOLERANCE,
    ConsentCheck,
    ConsentKind,
    ConsentRule,
    consent_text,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CHECKBOX = ConsentRule("Consent__c", ConsentKind.BOOLEAN)
ON_DATE = ConsentRule("Consent_Date__c", ConsentKind.DATE, max_age=timedelta(days=365))
AT_TIME = ConsentRule("Consent_At__c", ConsentKind.DATETIME)


class TestConsentText:
    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (None, None),
            (True, "true"),
            (False, "false"),
            ("  yes ", "yes"),
            ("", None),
            ("   ", None),
            (1, "1"),
            ("x" * 70, "x" * 64),
            ("2026-01-02", "2026-01-02"),
        ],
    )
    def test_values_as_stored(self, value: object, text: str | None) -> None:
        assert consent_text(value) == text


class TestEmpty:
    @pytest.mark.parametrize("value", [None, "", "  "])
    @pytest.mark.parametrize("rule", [CHECKBOX, ON_DATE, AT_TIME])
    def test_an_empty_field_is_no_consent(self, rule: ConsentRule, value: str | None) -> None:
        check = rule.check(value, NOW)
        assert check.reason == f"no consent: {rule.field} is empty"
        assert check.value == value and check.given_at is None


class TestCheckbox:
    @pytest.mark.parametrize("value", ["true", "TRUE", " 1 ", "yes", "Y"])
    def test_true_values_are_consent(self, value: str) -> None:
        assert CHECKBOX.check(value, NOW) == ConsentCheck(None, value)

    @pytest.mark.parametrize("value", ["false", "0", "No", "n"])
    def test_false_values_are_no_consent(self, value: str) -> None:
        assert CHECKBOX.check(value, NOW).reason == "no consent: Consent__c is false"

    @pytest.mark.parametrize("value", ["maybe", "2026-01-01", "on"])
    def test_anything_else_fails_closed(self, value: str) -> None:
        assert CHECKBOX.check(value, NOW).reason == (
            f"consent unreadable: Consent__c = {value!r} is not a checkbox value "
            "(treated as no consent)"
        )


class TestDates:
    def test_a_date_within_max_age_is_consent(self) -> None:
        check = ON_DATE.check("2026-01-15", NOW)
        assert check.reason is None
        assert check.given_at == datetime(2026, 1, 15, tzinfo=UTC)
        assert check.age(NOW) == NOW - datetime(2026, 1, 15, tzinfo=UTC)

    def test_a_date_older_than_max_age_has_lapsed(self) -> None:
        check = ON_DATE.check("2025-01-15", NOW)
        assert check.reason == ("consent lapsed: Consent_Date__c = 2025-01-15 is older than 365d")
        assert check.given_at == datetime(2025, 1, 15, tzinfo=UTC)

    @pytest.mark.parametrize("value", ["15/01/2026", "2026-1-5", "2026-02-30", "yesterday"])
    def test_an_unreadable_date_fails_closed(self, value: str) -> None:
        assert ON_DATE.check(value, NOW).reason == (
            f"consent unreadable: Consent_Date__c = {value!r} is not a date (treated as no consent)"
        )

    def test_a_datetime_in_salesforce_form_is_consent_without_max_age(self) -> None:
        check = AT_TIME.check("2019-03-04T05:06:07.000+0000", NOW)
        assert check.reason is None
        assert check.given_at == datetime(2019, 3, 4, 5, 6, 7, tzinfo=UTC)

    def test_an_unreadable_datetime_fails_closed(self) -> None:
        assert AT_TIME.check("soon", NOW).reason == (
            "consent unreadable: Consent_At__c = 'soon' is not a datetime (treated as no consent)"
        )

    def test_a_stamp_in_the_future_fails_closed(self) -> None:
        later = (NOW + FUTURE_TOLERANCE + timedelta(seconds=1)).isoformat()
        check = AT_TIME.check(later, NOW)
        assert check.reason == (
            f"consent unreadable: Consent_At__c = {later!r} lies in the future "
            "(treated as no consent)"
        )
        assert check.given_at is not None

    def test_clock_skew_within_the_tolerance_is_consent(self) -> None:
        check = AT_TIME.check((NOW + FUTURE_TOLERANCE).isoformat(), NOW)
        assert check.reason is None
        assert check.age(NOW) == timedelta(0)  # never negative


class TestWords:
    def test_describe(self) -> None:
        assert CHECKBOX.describe() == "Consent__c (boolean)"
        assert ON_DATE.describe() == "Consent_Date__c (date, lapsing after 365d)"

    def test_a_check_without_a_stamp_has_no_age(self) -> None:
        assert ConsentCheck(None, "true").age(NOW) is None
