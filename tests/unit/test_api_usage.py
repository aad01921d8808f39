"""The API-usage guard shared by polling, stream reads and write-back."""

from __future__ import annotations

from syncd.domain.api_usage import usage_over_limit


def test_above_the_share_says_why() -> None:
    assert usage_over_limit((81, 100), 80) == (
        "Salesforce API usage 81/100 is above 80% of the daily limit"
    )


def test_at_or_below_the_share_and_unknown_usage_allow_calls() -> None:
    assert usage_over_limit((80, 100), 80) is None
    assert usage_over_limit(None, 80) is None
    assert usage_over_limit((5, 0), 80) is None
