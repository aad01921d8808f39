"""simz.webhook: the hook URL syncd sends, and its secrets' length, also when left unresolved."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from syncd.config.calls import WebhookConfig

TOKEN = "t0k/" + "x" * 36


def webhook(**overrides: Any) -> WebhookConfig:
    return WebhookConfig.model_validate(
        {
            "public_url": "https://hooks.example.com/base/",
            "token": TOKEN,
            "correlation_secret": "c" * 32,
            **overrides,
        }
    )


def test_the_hook_url_carries_the_token_quoted_or_masked() -> None:
    config = webhook()
    assert config.hook_url() == "https://hooks.example.com/base/hooks/simz/t0k%2F" + "x" * 36
    assert config.hook_url(masked=True) == "https://hooks.example.com/base/hooks/simz/***"


@pytest.mark.parametrize("field", ["token", "correlation_secret"])
def test_a_short_secret_is_refused(field: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        webhook(**{field: "s" * 31})


def test_a_short_previous_token_is_refused() -> None:
    with pytest.raises(ValidationError, match="previous_tokens"):
        webhook(previous_tokens=["short"])


def test_references_left_unresolved_pass() -> None:
    """The commands that read only the database load the file without its secrets."""
    config = webhook(
        token="${SIMZ_WEBHOOK_TOKEN}",
        correlation_secret="${file:/run/secrets/corr}",
        previous_tokens=["${OLD_TOKEN}"],
    )
    assert config.token.get_secret_value() == "${SIMZ_WEBHOOK_TOKEN}"
