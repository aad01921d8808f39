"""The top-level ``suppression`` section: where numbers nobody may call come from, and how fast.

The list itself lives in the database (``syncd suppress``); this section names
the Salesforce queries the daemon reads it from (``sources``) and the lag an
opt-out may take to reach it before ``syncd_suppression_late_total`` counts it
(docs/safety.md#the-suppression-list).
"""

from __future__ import annotations

from datetime import timedelta

import phonenumbers
from pydantic import Field, field_validator

from syncd.config.base import FIELD_NAME, SOBJECT_NAME, SYNC_NAME, StrictModel
from syncd.config.types import Duration
from syncd.domain.soql import STAMP_FIELD, QuerySpec
from syncd.domain.suppression import SourceQuery

#: The prefix of a source's cursor (``sync_state``) and lease names.
SOURCE_PREFIX = "suppression:"
#: A source name fits the cursor's 63 characters with its prefix.
MAX_SOURCE_NAME = 63 - len(SOURCE_PREFIX)


class SuppressionSourceConfig(StrictModel):
    """A Salesforce query whose records' numbers go on the suppression list."""

    name: str = Field(
        description="Unique, lower case: letters, digits, - and _ (it names the source's "
        "cursor, lease and metric label). A new name reads the object from the start again."
    )
    object: str = Field(default="Contact", description="Salesforce object to read, e.g. Contact.")
    where: str = Field(
        min_length=1,
        description="SOQL condition that selects the opt-outs, e.g. DoNotCall = true "
        "(required: every number the query returns is suppressed).",
    )
    phone_fields: list[str] = Field(
        min_length=1,
        description="The record fields holding numbers to suppress, e.g. [Phone, MobilePhone].",
    )
    every: Duration = Field(
        default=timedelta(minutes=5), description="How often the daemon reads the source."
    )
    region: str | None = Field(
        default=None,
        description="ISO 3166 region for numbers without a country code (default: the first "
        "sync's phone.default_region).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SYNC_NAME.match(value) or len(value) > MAX_SOURCE_NAME:
            raise ValueError(
                f"{value!r} is not a valid source name: use lower case letters, digits, - and _ "
                f"(at most {MAX_SOURCE_NAME} characters)"
            )
        return value

    @field_validator("object")
    @classmethod
    def _object(cls, value: str) -> str:
        if not SOBJECT_NAME.match(value):
            raise ValueError(f"{value!r} is not a Salesforce object name")
        return value

    @field_validator("where")
    @classmethod
    def _where(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("where is empty: it must select the opt-outs (e.g. DoNotCall = true)")
        return value.strip()

    @field_validator("phone_fields")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        for name in value:
            if not FIELD_NAME.match(name):
                raise ValueError(f"{name!r} is not a field name")
        if len({name.lower() for name in value}) != len(value):
            raise ValueError("a phone field is listed twice")
        return value

    @field_validator("every")
    @classmethod
    def _every(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("every must be at least 1s")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (e.g. US, GB, DE)")
        return value.upper() if value is not None else None

    @property
    def key(self) -> str:
        """The source's cursor (``sync_state``) and lease name."""
        return f"{SOURCE_PREFIX}{self.name}"

    def source_query(self, default_region: str) -> SourceQuery:
        """The source as the domain reads it; ``default_region`` when it names no region."""
        return SourceQuery(
            self.name,
            self.object,
            self.where,
            tuple(self.phone_fields),
            self.region or default_region,
        )

    @property
    def query_spec(self) -> QuerySpec:
        """What the source's query reads: its phone fields, by SystemModstamp, with its where."""
        return QuerySpec(self.object, STAMP_FIELD, tuple(self.phone_fields), self.where)


class SuppressionConfig(StrictModel):
    """Where the suppression list is read from, besides operators and DoNotCall records."""

    sources: list[SuppressionSourceConfig] = Field(
        default_factory=list,
        description="Salesforce queries whose records' numbers are suppressed, read by "
        "`syncd run` on their own schedule (one replica at a time).",
    )
    max_lag: Duration = Field(
        default=timedelta(hours=1),
        description="An opt-out added later than this after its record's SystemModstamp is "
        "counted in syncd_suppression_late_total (alert SyncdSuppressionLate).",
    )

    @field_validator("sources")
    @classmethod
    def _unique(cls, value: list[SuppressionSourceConfig]) -> list[SuppressionSourceConfig]:
        seen: set[str] = set()
        for source in value:
            if source.name in seen:
                raise ValueError(f"duplicate suppression source name {source.name!r}")
            seen.add(source.name)
        return value

    @field_validator("max_lag")
    @classmethod
    def _max_lag(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("max_lag must be positive")
        return value
