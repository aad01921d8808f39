"""The shipped US state calling rules (``syncd/data/us_calling_rules.yaml``) and a sync's
overrides of them, turned into the domain's :class:`~syncd.domain.state_rules.StateRule`.

The data file is package data, read once per process and validated like the
configuration (unknown keys refused, every entry with its source and the date it
was checked). ``calling_hours.state_overrides`` replaces single fields of a state's
entry, or adds a state the file does not list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from syncd.config.base import StrictModel
from syncd.domain.calling_hours import Window, parse_window
from syncd.domain.state_rules import FEDERAL_WINDOW, StateRule
from syncd.domain.us_states import STATES

DATA_FILE = "us_calling_rules.yaml"
CLOSED = "closed"


def _day_window(value: str | None) -> str | None:
    if value is not None and value != CLOSED:
        parse_window(value)
    return value


def state_code_key(value: str) -> str:
    """A USPS state code as a key, upper-cased; anything else is refused."""
    code = value.strip().upper()
    if code not in STATES:
        raise ValueError(f"{value!r} is not a US state code (such as FL, NY or DC)")
    return code


class StateOverrideConfig(StrictModel):
    """Fields that replace those of one state's shipped entry (absent ones are kept)."""

    window: str | None = Field(
        default=None, description="Local window every day, e.g. 09:00-20:00 (null: federal)."
    )
    saturday: str | None = Field(
        default=None, description="Saturday's window, or closed (null: as window)."
    )
    sunday: str | None = Field(
        default=None, description="Sunday's window, or closed (null: as window)."
    )
    holidays: bool | None = Field(
        default=None, description="true: no calls on the state's public holidays."
    )
    max_per_24h: int | None = Field(
        default=None, ge=1, description="Calls per number per rolling 24 hours (null: no cap)."
    )

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
        return value

    @field_validator("saturday", "sunday")
    @classmethod
    def _weekend(cls, value: str | None) -> str | None:
        return _day_window(value)

    def given(self) -> dict[str, Any]:
        """The fields the sync set, explicit nulls included."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class StateEntry(StrictModel):
    """One state's entry in the data file."""

    name: str
    window: str | None = None
    saturday: str | None = None
    sunday: str | None = None
    holidays: bool = False
    max_per_24h: int | None = Field(default=None, ge=1)
    source: str = Field(min_length=1)
    checked: date
    note: str | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
        return value

    @field_validator("saturday", "sunday")
    @classmethod
    def _weekend(cls, value: str | None) -> str | None:
        return _day_window(value)

    def rule(self, code: str) -> StateRule:
        every = parse_window(self.window) if self.window is not None else FEDERAL_WINDOW
        saturday = _weekend_window(self.saturday, every)
        sunday = _weekend_window(self.sunday, every)
        windows = (every,) * 5 + (saturday, sunday)
        return StateRule(code, windows, self.holidays, self.max_per_24h, self.source, self.checked)

    def overridden(self, override: StateOverrideConfig) -> StateEntry:
        source = f"{self.source}, overridden by calling_hours.state_overrides"
        return self.model_copy(update={**override.given(), "source": source})


def _weekend_window(value: str | None, every: Window) -> Window | None:
    if value is None:
        return every
    return None if value == CLOSED else parse_window(value)


class FederalEntry(StrictModel):
    window: str
    source: str = Field(min_length=1)
    checked: date


class UsRulesFile(StrictModel):
    compiled: date
    federal: FederalEntry
    states: dict[str, StateEntry]

    @field_validator("states")
    @classmethod
    def _codes(cls, value: dict[str, StateEntry]) -> dict[str, StateEntry]:
        return {state_code_key(code): entry for code, entry in value.items()}


@dataclass(frozen=True)
class UsRules:
    """The data file as read: when it was compiled, and each state's entry by USPS code."""

    compiled: date
    federal: FederalEntry
    entries: Mapping[str, StateEntry]

    def rules(self, overrides: Mapping[str, StateOverrideConfig]) -> dict[str, StateRule]:
        """Every state's rule with a sync's overrides; a state the file lacks starts federal."""
        found = dict(self.entries)
        for code, override in overrides.items():
            base = found.get(code)
            found[code] = (
                base.overridden(override)
                if base is not None
                else StateEntry(
                    name=STATES[code],
                    source="calling_hours.state_overrides",
                    checked=self.compiled,
                    **override.given(),
                )
            )
        return {code: entry.rule(code) for code, entry in found.items()}


def parse_us_rules(text: str) -> UsRules:
    """The rules in ``text`` (the data file's YAML); ValueError naming what is wrong."""
    try:
        parsed = UsRulesFile.model_validate(yaml.safe_load(text))
    except (ValidationError, yaml.YAMLError) as exc:
        raise ValueError(f"the US calling rules data is invalid: {exc}") from None
    if parse_window(parsed.federal.window) != FEDERAL_WINDOW:
        raise ValueError("the US calling rules data must keep the federal window 08:00-21:00")
    return UsRules(parsed.compiled, parsed.federal, parsed.states)


@lru_cache(maxsize=1)
def us_rules() -> UsRules:
    """The shipped data file, read once."""
    text = resources.files("syncd").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    return parse_us_rules(text)
