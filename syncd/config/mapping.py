"""What a sync sends: the SimZ lead fields, the agent routing, phone parsing, request options."""

from __future__ import annotations

import phonenumbers
from pydantic import Field, HttpUrl, field_validator

from syncd.config.base import StrictModel
from syncd.config.types import FieldRefValue


class RouteConfig(StrictModel):
    field: FieldRefValue = Field(description="Field whose value picks the agent.")
    values: dict[str, str] = Field(min_length=1, description="Field value -> agent id.")
    default: str | None = Field(
        default=None, description="Agent for values not listed; without it such leads are invalid."
    )

    @field_validator("values")
    @classmethod
    def _agents(cls, value: dict[str, str]) -> dict[str, str]:
        for key, agent in value.items():
            if not agent.strip():
                raise ValueError(f"agent id for {key!r} is empty")
        return value


class MappingConfig(StrictModel):
    phoneNumber: FieldRefValue
    """The phone number, normalised to E.164; an unusable one makes the lead invalid."""
    firstName: FieldRefValue | None = None
    """First name; absent or empty values are left out of the request."""
    lastName: FieldRefValue | None = None
    """Last name; absent or empty values are left out of the request."""
    email: FieldRefValue | None = None
    """Email; a value that is not an email address is left out, with a note on the lead."""
    campaignType: FieldRefValue | None = None
    """SimZ campaign type; absent or empty values are left out of the request."""
    customData: dict[str, FieldRefValue] = Field(default_factory=dict)
    """Extra SimZ customData: key -> field path or {const: value}."""


class PhoneConfig(StrictModel):
    default_region: str = Field(
        default="US", description="ISO 3166 region for numbers written without a country code."
    )

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (e.g. US, GB, DE)")
        return value.upper()


class OptionsConfig(StrictModel):
    """SimZ per-request options (LeadSubmissionOptions); absent ones are left out."""

    priority: str | None = None
    """SimZ priority of the submitted leads."""
    enableAMD: bool | None = None
    """Ask SimZ for answering-machine detection."""
    webhookUrl: HttpUrl | None = None
    """URL SimZ calls back with call results."""
