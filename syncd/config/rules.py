"""What holds a sync's leads back: the safety rules, the blast-radius guard, calling hours."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from syncd.config.base import FIELD_NAME, StrictModel
from syncd.config.types import Duration
from syncd.config.us_calling_rules import StateOverrideConfig, state_code_key, us_rules
from syncd.domain.calling_hours import CallingHours, parse_days, parse_window, zone
from syncd.domain.consent import ConsentKind, ConsentRule
from syncd.domain.frequency import Cap
from syncd.domain.guard import GUARD_HISTORY
from syncd.domain.state_rules import StateRule

#: DoNotCall text values that mean "may be called" unless the sync names its own.
DEFAULT_CALLABLE_VALUES = ("false", "0", "no", "n")


class ConsentConfig(StrictModel):
    """Call a record only with the consent its field records (docs/safety.md#consent)."""

    field: str = Field(pattern=FIELD_NAME.pattern, description="The record field holding consent.")
    kind: ConsentKind = Field(
        description="boolean (a checkbox: true is consent), date or datetime (when it was given)."
    )
    max_age: Duration | None = Field(
        default=None,
        description="date or datetime only: consent older than this has lapsed (null: never).",
    )

    @model_validator(mode="after")
    def _age_needs_a_date(self) -> ConsentConfig:
        if self.max_age is not None and self.kind is ConsentKind.BOOLEAN:
            raise ValueError("max_age needs kind date or datetime: a checkbox has no age")
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        return self

    @property
    def rule(self) -> ConsentRule:
        return ConsentRule(self.field, self.kind, self.max_age)


class CapConfig(StrictModel):
    """At most ``count`` sends of one number per ``per``, across every agent and sync."""

    count: int = Field(ge=1, description="Sends allowed in the period.")
    per: Duration = Field(description="The rolling period, e.g. 24h or 7d.")

    @field_validator("per")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("per must be positive")
        return value

    @property
    def cap(self) -> Cap:
        return Cap(self.count, self.per)


class RulesConfig(StrictModel):
    respect_do_not_call: bool = Field(
        default=True, description="Skip records whose DoNotCall field is true."
    )
    do_not_call_field: str = Field(default="DoNotCall", pattern=FIELD_NAME.pattern)
    """The field that says do not call: a checkbox, or text whose callable values are listed
    in do_not_call_callable_values."""
    do_not_call_callable_values: list[str] = Field(
        default_factory=lambda: sorted(DEFAULT_CALLABLE_VALUES),
        description="For a DoNotCall field that is not a checkbox: the values that mean "
        "'may be called' (compared case-insensitively after trimming; an empty or null field "
        "is always callable). Any other value skips the lead.",
    )

    @field_validator("do_not_call_callable_values")
    @classmethod
    def _fold_callable(cls, values: list[str]) -> list[str]:
        return sorted({value.strip().lower() for value in values})

    duplicate_phone_window: Duration = Field(
        default=timedelta(hours=24),
        description="Do not send the same number to the same agent twice within this window "
        "(0 turns the rule off).",
    )
    propagate_do_not_call: bool = Field(
        default=True,
        description="A DoNotCall flag seen on any record of this sync puts its number on the "
        "suppression list, for every record, sync and agent.",
    )
    consent: ConsentConfig | None = Field(
        default=None, description="Skip leads without valid consent (off when absent)."
    )
    max_sends_per_number: list[CapConfig] = Field(
        default_factory=list,
        description="Frequency caps per number across all agents and syncs, e.g. "
        "[{count: 3, per: 24h}]; counted from sends that may have reached SimZ.",
    )
    over_cap: Literal["wait", "skip"] = Field(
        default="wait",
        description="A lead over a frequency cap waits for its window to open (no attempt "
        "used), or is skipped.",
    )


class GuardConfig(StrictModel):
    """The blast-radius guard: a poll with more new leads than this holds them all."""

    max_new_per_poll: int | None = Field(
        default=1000,
        ge=1,
        description="Hold a poll's new leads when it finds more than this many ready to call "
        "(null: no fixed limit).",
    )
    max_factor: float | None = Field(
        default=None,
        gt=1,
        description="Also hold when a poll finds more than this times the trailing average "
        "of new leads per poll (null: off).",
    )
    min_history: int = Field(
        default=5,
        ge=1,
        le=GUARD_HISTORY,
        description="Completed polls needed before max_factor applies.",
    )
    factor_floor: int = Field(
        default=100,
        ge=1,
        description="max_factor never holds a poll of this many new leads or fewer.",
    )
    stream_window: Duration = Field(
        default=timedelta(minutes=10),
        description="Streamed syncs: max_new_per_poll applies per rolling window of this "
        "length; past it, further leads are held.",
    )


class TimezoneField(StrictModel):
    field: str = Field(pattern=FIELD_NAME.pattern, description="Record field with an IANA zone.")


class CallingHoursConfig(StrictModel):
    """Deliver a lead only inside this window of its local time (off when absent)."""

    window: str | None = Field(
        default=None,
        description="Local time of day, e.g. 08:00-21:00 (end exclusive). Required without a "
        "profile; with one it narrows the profile's hours further.",
    )
    days: str = Field(default="mon-sun", description="e.g. mon-sun, mon-fri, mon-fri,sat.")
    timezone: Literal["from_phone"] | str | TimezoneField = Field(
        default="from_phone",
        description="from_phone, an IANA zone (e.g. America/New_York), or {field: Name}: "
        "a record field holding an IANA zone (the phone's zones when it is empty or unknown).",
    )
    profile: Literal["us"] | None = Field(
        default=None,
        description="us: the TCPA's 08:00-21:00 plus the shipped rules of the lead's US "
        "states (windows, Sundays, holidays, calls per 24 hours); see "
        "docs/safety.md#state-calling-rules.",
    )
    state_field: str | None = Field(
        default=None,
        pattern=FIELD_NAME.pattern,
        description="With profile us: a record field holding the address state (USPS code or "
        "name); its rules apply as well as those of the number's area code.",
    )
    state_overrides: dict[str, StateOverrideConfig] = Field(
        default_factory=dict,
        description="With profile us: per USPS code, fields that replace the shipped entry's: "
        "window, saturday, sunday (a window or closed), holidays (true/false), max_per_24h "
        "(a number, or null for no cap), e.g. {FL: {max_per_24h: 2}}.",
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: str) -> str:
        parse_days(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | TimezoneField) -> str | TimezoneField:
        if isinstance(value, str) and value != "from_phone" and zone(value) is None:
            raise ValueError(f"{value!r} is neither from_phone nor an IANA time zone")
        return value

    @field_validator("state_overrides", mode="before")
    @classmethod
    def _state_codes(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {state_code_key(str(code)): entry for code, entry in value.items()}
        return value

    @model_validator(mode="after")
    def _window_or_profile(self) -> CallingHoursConfig:
        if self.window is None and self.profile is None:
            raise ValueError("set a window (e.g. 08:00-21:00), a profile (us), or both")
        if self.profile is None and (self.state_field or self.state_overrides):
            raise ValueError("state_field and state_overrides need profile: us")
        return self

    @property
    def fixed_zone(self) -> str | None:
        """The one IANA zone every lead is called in, or None to take it from the phone."""
        return (
            self.timezone
            if isinstance(self.timezone, str) and self.timezone != "from_phone"
            else None
        )

    @property
    def zone_field(self) -> str | None:
        """The record field that names each lead's zone, or None."""
        return self.timezone.field if isinstance(self.timezone, TimezoneField) else None

    @property
    def hours(self) -> CallingHours:
        """The configured window on the configured days (all day without a window)."""
        start, end = parse_window(self.window or "00:00-24:00")
        return CallingHours(start, end, parse_days(self.days))

    @property
    def rule_text(self) -> str:
        """The window and days the sync configures, as logged and kept as evidence."""
        text = f"{self.window or '00:00-24:00'} {self.days}"
        if self.profile is None:
            return text
        base = f"{self.profile}: federal 08:00-21:00"
        return base if text == "00:00-24:00 mon-sun" else f"{base} within {text}"

    @property
    def state_rules(self) -> dict[str, StateRule]:
        """Each state's rule (the shipped data with this sync's overrides); none without
        the us profile."""
        if self.profile != "us":
            return {}
        return us_rules().rules(self.state_overrides)
