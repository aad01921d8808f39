"""The consent rule: may this record's number be called, by its consent field (pure, no I/O).

Since FCC 24-17 (February 2024) an AI-generated voice is an "artificial or
prerecorded voice" under the TCPA, so a telemarketing call made with one needs
the called person's prior express written consent. A sync that turns the rule
on names the record field that holds it (docs/safety.md#consent):

* ``boolean``: a checkbox; true is consent;
* ``date`` / ``datetime``: when consent was given; with ``max_age`` it lapses.

The rule fails closed: an empty field is no consent, and a value it cannot read
(text in a checkbox rule, a date it cannot parse, a date in the future) is not
consent either. :meth:`ConsentRule.check` returns the reason a lead may not be
called, or None; the same check runs at intake and again at the send gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from syncd.domain.durations import format_duration
from syncd.domain.soql import parse_datetime

#: A consent stamp this far ahead of our clock is still read as given now (clock skew).
FUTURE_TOLERANCE = timedelta(minutes=5)

_TRUE = frozenset({"true", "1", "yes", "y"})
_FALSE = frozenset({"false", "0", "no", "n"})


class ConsentKind(StrEnum):
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"


def consent_text(value: Any) -> str | None:
    """A record's consent value as ``leads.consent`` stores it: text, None when empty."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text[:64] or None


@dataclass(frozen=True)
class ConsentCheck:
    """What the rule read: the verdict (``reason`` None: consent holds) and its inputs."""

    reason: str | None
    value: str | None
    given_at: datetime | None = None

    def age(self, now: datetime) -> timedelta | None:
        return None if self.given_at is None else max(now - self.given_at, timedelta(0))


@dataclass(frozen=True)
class ConsentRule:
    """Consent held in ``field`` of kind ``kind``; older than ``max_age`` it has lapsed."""

    field: str
    kind: ConsentKind
    max_age: timedelta | None = None

    def describe(self) -> str:
        lapse = f", lapsing after {format_duration(self.max_age)}" if self.max_age else ""
        return f"{self.field} ({self.kind.value}{lapse})"

    def check(self, value: str | None, now: datetime) -> ConsentCheck:
        """Whether the stored ``value`` of the field is consent at ``now``."""
        if value is None or not value.strip():
            return ConsentCheck(f"no consent: {self.field} is empty", value)
        if self.kind is ConsentKind.BOOLEAN:
            return self._boolean(value)
        given_at = self._stamp(value)
        if given_at is None:
            return ConsentCheck(
                f"consent unreadable: {self.field} = {value!r} is not a {self.kind.value} "
                "(treated as no consent)",
                value,
            )
        if given_at > now + FUTURE_TOLERANCE:
            return ConsentCheck(
                f"consent unreadable: {self.field} = {value!r} lies in the future "
                "(treated as no consent)",
                value,
                given_at,
            )
        if self.max_age is not None and now - given_at > self.max_age:
            return ConsentCheck(
                f"consent lapsed: {self.field} = {value} is older than "
                f"{format_duration(self.max_age)}",
                value,
                given_at,
            )
        return ConsentCheck(None, value, given_at)

    def _boolean(self, value: str) -> ConsentCheck:
        folded = value.strip().lower()
        if folded in _TRUE:
            return ConsentCheck(None, value)
        if folded in _FALSE:
            return ConsentCheck(f"no consent: {self.field} is false", value)
        return ConsentCheck(
            f"consent unreadable: {self.field} = {value!r} is not a checkbox value "
            "(treated as no consent)",
            value,
        )

    def _stamp(self, value: str) -> datetime | None:
        text = value.strip()
        try:
            if self.kind is ConsentKind.DATE:
                day = date.fromisoformat(text[:10]) if len(text) == 10 else None
                return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)
            return parse_datetime(text)
        except ValueError:
            return None
