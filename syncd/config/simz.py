"""The SimZ API syncd delivers to: URL, key, timeouts, batching, retries."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, HttpUrl, SecretStr, ValidationInfo, field_validator, model_validator

from syncd.config.base import (
    StrictModel,
    allow_insecure_http_field,
    existing_file,
    header_safe,
    require_https,
)
from syncd.config.calls import WebhookConfig
from syncd.config.types import Duration

# --------------------------------------------------------------------------- simz


class TimeoutConfig(StrictModel):
    connect: float = Field(default=5.0, gt=0, le=300)
    """Seconds to open a connection; a failure here means nothing was sent."""
    read: float = Field(default=30.0, gt=0, le=600)
    """Seconds to wait for the next bytes of an answer; a timeout here makes the batch
    uncertain. The whole POST is bounded by ``total`` as well."""
    total: float = Field(
        default=20.0,
        gt=0,
        le=3600,
        description="Seconds a whole POST may take, answer included; past it the batch "
        "is uncertain. Keep it below daemon.shutdown_grace.",
    )

    @model_validator(mode="after")
    def _total_covers_connect(self) -> TimeoutConfig:
        if self.total < self.connect:
            raise ValueError("total must not be smaller than connect")
        return self


class BackoffConfig(StrictModel):
    initial: Duration = Field(default=timedelta(seconds=5))
    """First wait of the exponential backoff (retries, paused keys and agents)."""
    max: Duration = Field(default=timedelta(minutes=15))
    """Longest wait; at least initial."""
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0)
    """Growth of the wait per failure."""

    @model_validator(mode="after")
    def _ordered(self) -> BackoffConfig:
        if self.initial <= timedelta(0):
            raise ValueError("initial must be greater than zero")
        if self.max < self.initial:
            raise ValueError("max must not be smaller than initial")
        return self


class SimzConfig(StrictModel):
    # First, so that the base_url validator can read it.
    allow_insecure_http: bool = allow_insecure_http_field()
    base_url: HttpUrl = Field(default=HttpUrl("https://api.simz.com"))
    """SimZ API base URL."""
    api_key: SecretStr
    """The company API key (X-Company-API-Key); logs show only its fingerprint."""
    ca_bundle: str | None = Field(default=None, description="PEM file of CAs to trust.")
    timeout: TimeoutConfig = TimeoutConfig()
    """Connect and read timeouts of a POST."""
    batch_size: int = Field(default=100, ge=1, le=10_000, description="Leads per POST.")
    requests_per_second: float = Field(
        default=5.0, gt=0, le=1000, description="Client-side rate limit per API key."
    )
    max_attempts: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Retryable answers a lead may get before it becomes failed.",
    )
    backoff: BackoffConfig = BackoffConfig()
    """Exponential backoff with jitter for retries and paused keys or agents."""
    resend_uncertain: bool = Field(
        default=False,
        description="Opt-in: after each poll, fetch the sync's uncertain leads again from "
        "Salesforce and requeue those that still pass every rule. Risks calling a person twice.",
    )

    webhook: WebhookConfig | None = None
    """Opt-in: receive SimZ's call-outcome webhooks (docs/call-outcomes.md)."""

    _api_key_header_safe = field_validator("api_key")(header_safe)
    _ca_bundle_exists = field_validator("ca_bundle")(existing_file)

    @field_validator("base_url")
    @classmethod
    def _base_url_https(cls, value: HttpUrl, info: ValidationInfo) -> HttpUrl:
        require_https(value, info, "simz")
        return value
