"""calling_hours.profile: us: the federal window, the states' days off, holidays and caps.

The check the claim runs (``services.call_window.calling_rules``) on plain due
leads and instants; the numbers' area codes place them (Alabama +1 205, Florida
+1 305, Rhode Island +1 401, Connecticut +1 203, toll-free +1 800).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from syncd.config.models import CallingHoursConfig
from syncd.domain.calling_hours import LocalHours, next_opening
from syncd.domain.frequency import Cap
from syncd.domain.local_rules import DueLead, LocalCall
from syncd.domain.state_rules import FEDERAL, lead_states
from syncd.domain.us_states import holiday_dates, state_code, state_for_number
from syncd.services.call_window import calling_rules

ALABAMA = "+12055550101"  # America/Chicago
FLORIDA = "+13055550101"  # America/New_York
RHODE_ISLAND = "+14015550101"
CONNECTICUT = "+12035550101"
TOLL_FREE = "+18005550101"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def ask(
    phone: str, at: datetime, *, region: str | None = None, zone: str | None = None, **hours: Any
) -> LocalCall:
    """The profile's answer for one lead with ``phone`` at ``at``."""
    config = CallingHoursConfig.model_validate({"profile": "us", **hours})
    check = calling_rules(config)
    assert check is not None
    return check([DueLead(1, phone, zone, region)], at)[1]


class TestDaysOffAndHolidays:
    def test_a_sunday_in_alabama_waits_until_monday_0800_local(self) -> None:
        """Sunday 2026-12-06 15:00 in Birmingham (CST, UTC-6): Monday 08:00 CST is 14:00 UTC."""
        answer = ask(ALABAMA, utc(2026, 12, 6, 21, 0))
        assert answer.opens == utc(2026, 12, 7, 14, 0)
        assert answer.evidence["states"] == ["AL"]
        assert answer.evidence["state_source"] == "area code"
        assert "AL mon-sat 08:00-20:00, sun closed, holidays closed" in answer.evidence["rule"]

    def test_the_same_sunday_afternoon_is_open_without_a_state_rule(self) -> None:
        """A Sunday is no day off under the federal window (Washington DC has no state rule)."""
        assert ask("+12025550101", utc(2026, 12, 6, 20, 0)).opens is None

    def test_july_4th_in_rhode_island_waits(self) -> None:
        """Friday 2025-07-04 11:00 EDT: closed all day; Saturday opens at 10:00 EDT."""
        answer = ask(RHODE_ISLAND, utc(2025, 7, 4, 15, 0))
        assert answer.opens == utc(2025, 7, 5, 14, 0)

    def test_a_saturday_july_4th_and_its_sunday_wait_for_monday(self) -> None:
        """2026-07-04 is a Saturday (observed Friday the 3rd): Monday 09:00 EDT is next."""
        assert ask(RHODE_ISLAND, utc(2026, 7, 3, 15, 0)).opens == utc(2026, 7, 6, 13, 0)
        assert ask(RHODE_ISLAND, utc(2026, 7, 4, 15, 0)).opens == utc(2026, 7, 6, 13, 0)

    def test_connecticut_0830_waits_until_0900(self) -> None:
        """Tuesday 2026-12-08 08:30 EST: the federal window is open, Connecticut's at 09:00."""
        answer = ask(CONNECTICUT, utc(2026, 12, 8, 13, 30))
        assert answer.opens == utc(2026, 12, 8, 14, 0)
        assert ask(CONNECTICUT, utc(2026, 12, 8, 14, 0)).opens is None

    def test_the_federal_window_still_applies_everywhere(self) -> None:
        """07:59 EST on a weekday in Washington DC (no state rule): waits for 08:00."""
        answer = ask("+12025550101", utc(2026, 12, 8, 12, 59))
        assert answer.opens == utc(2026, 12, 8, 13, 0)
        assert answer.evidence["rule"] == "us: federal 08:00-21:00"

    def test_a_configured_window_narrows_the_profile(self) -> None:
        """window 10:00-17:00 mon-fri with the profile: a Saturday in DC waits for Monday 10:00."""
        answer = ask("+12025550101", utc(2026, 12, 5, 16, 0), window="10:00-17:00", days="mon-fri")
        assert answer.opens == utc(2026, 12, 7, 15, 0)
        assert answer.evidence["rule"].startswith("us: federal 08:00-21:00 within 10:00-17:00")


class TestWhichStates:
    def test_area_code_and_address_disagree_the_strictest_wins(self) -> None:
        """A Florida number whose record says Alabama: Alabama's Sunday and Florida's cap."""
        sunday = utc(2026, 12, 6, 18, 0)  # 13:00 in Miami
        answer = ask(FLORIDA, sunday, region="Alabama", state_field="State")
        assert answer.opens == utc(2026, 12, 7, 13, 0)  # Monday 08:00 in Miami
        assert answer.caps == (Cap(3, timedelta(hours=24), source="state FL"),)
        assert answer.evidence["states"] == ["AL", "FL"]
        assert answer.evidence["state_source"] == "area code+field"
        # On a weekday at 20:30 in Miami both close at 20:00 (the federal window at 21:00).
        assert ask(FLORIDA, utc(2026, 12, 8, 1, 30), region="AL", state_field="State").opens == (
            utc(2026, 12, 8, 13, 0)
        )

    def test_the_field_alone_names_the_state_of_a_toll_free_number(self) -> None:
        answer = ask(TOLL_FREE, utc(2026, 12, 6, 18, 0), region="al", zone="America/Chicago",
                     state_field="State", timezone={"field": "Tz"})  # fmt: skip
        assert answer.evidence["states"] == ["AL"] and answer.evidence["state_source"] == "field"
        assert answer.opens == utc(2026, 12, 7, 14, 0)

    def test_the_field_is_read_only_when_configured(self) -> None:
        answer = ask(FLORIDA, utc(2026, 12, 6, 18, 0), region="AL")
        assert answer.evidence["states"] == ["FL"] and answer.opens is None

    def test_toll_free_gets_federal_only(self) -> None:
        """No state for +1 800: no state window, day off or cap; 20:30 in its zone is open."""
        answer = ask(TOLL_FREE, utc(2026, 12, 7, 1, 30), timezone="America/New_York")
        assert answer.opens is None and answer.caps == ()
        assert answer.evidence["states"] == [] and answer.evidence["state_source"] is None
        assert answer.evidence["rule"] == "us: federal 08:00-21:00"
        late = ask(TOLL_FREE, utc(2026, 12, 7, 2, 30), timezone="America/New_York")
        assert late.opens == utc(2026, 12, 7, 13, 0)

    def test_an_unknown_field_value_is_ignored(self) -> None:
        answer = ask(FLORIDA, utc(2026, 12, 8, 15, 0), region="Atlantis", state_field="State")
        assert answer.evidence["states"] == ["FL"]
        assert answer.evidence["state_source"] == "area code"

    @pytest.mark.parametrize(
        ("phone", "state"),
        [(ALABAMA, "AL"), (FLORIDA, "FL"), ("+12125550101", "NY"), ("+14155550101", "CA"),
         ("+12025550101", "DC"), ("+17875550101", "PR"), (TOLL_FREE, None),
         ("+16045550101", None), ("+442071234567", None), ("garbage", None)],
    )  # fmt: skip
    def test_state_of_a_number(self, phone: str, state: str | None) -> None:
        """Full names and "City, ST" both place a number; toll-free and foreign ones: none."""
        assert state_for_number(phone) == state

    @pytest.mark.parametrize(
        ("text", "code"),
        [("FL", "FL"), (" fl ", "FL"), ("Florida", "FL"), ("NEW  YORK", "NY"),
         ("Washington D.C.", "DC"), ("Washington State", "WA"), ("Atlantis", None), ("", None)],
    )  # fmt: skip
    def test_state_code(self, text: str, code: str | None) -> None:
        assert state_code(text) == code

    def test_lead_states(self) -> None:
        assert lead_states(FLORIDA, "FL").states == ("FL",)
        assert lead_states(FLORIDA, "FL").source == "area code+field"
        assert lead_states(None, None).states == ()


class TestOverrides:
    def test_an_override_replaces_fields_of_the_entry(self) -> None:
        """Florida 09:00-17:00 with 2 per 24h: 08:30 waits for 09:00; the cap is 2."""
        overrides = {"FL": {"window": "09:00-17:00", "max_per_24h": 2}}
        answer = ask(FLORIDA, utc(2026, 12, 8, 13, 30), state_overrides=overrides)
        assert answer.opens == utc(2026, 12, 8, 14, 0)
        assert answer.caps == (Cap(2, timedelta(hours=24), source="state FL"),)
        assert "overridden by calling_hours.state_overrides" in answer.evidence["rule"]

    def test_an_override_may_lift_a_rule(self) -> None:
        """Alabama without its Sunday rule; Florida without a cap (explicit null)."""
        overrides = {"al": {"sunday": "12:00-18:00"}, "FL": {"max_per_24h": None}}
        assert ask(ALABAMA, utc(2026, 12, 6, 19, 0), state_overrides=overrides).opens is None
        assert ask(FLORIDA, utc(2026, 12, 8, 15, 0), state_overrides=overrides).caps == ()

    def test_an_override_adds_a_state_the_data_lacks(self) -> None:
        """New York closed on Sundays and holidays: Sunday noon waits for Monday 08:00."""
        overrides = {"NY": {"sunday": "closed", "holidays": True}}
        answer = ask("+12125550101", utc(2026, 12, 6, 17, 0), state_overrides=overrides)
        assert answer.opens == utc(2026, 12, 7, 13, 0)
        christmas = ask("+12125550101", utc(2026, 12, 25, 17, 0), state_overrides=overrides)
        assert christmas.opens == utc(2026, 12, 26, 13, 0)

    @pytest.mark.parametrize(
        ("settings", "message"),
        [
            ({"profile": "us", "state_overrides": {"XX": {}}}, "not a US state code"),
            ({"profile": "us", "state_overrides": {"FL": {"sunday": "never"}}}, "window"),
            ({"profile": "us", "state_overrides": {"FL": {"max_per_24h": 0}}}, "max_per_24h"),
            ({"profile": "us", "state_overrides": {"FL": {"windows": "x"}}}, "windows"),
            ({"window": "08:00-21:00", "state_field": "State"}, "need profile: us"),
            ({"days": "mon-fri"}, "set a window"),
            ({"profile": "eu"}, "profile"),
        ],
    )
    def test_bad_settings_are_refused(self, settings: dict[str, Any], message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            CallingHoursConfig.model_validate(settings)


class TestLocalHours:
    def test_narrowed_intersects_each_day_and_joins_closed_dates(self) -> None:
        a = LocalHours(((480, 1200),) * 6 + (None,), frozenset({date(2026, 1, 1)}))
        b = LocalHours(((540, 1260),) * 5 + ((600, 1020), (600, 1020)))
        both = a.narrowed(b)
        assert both.windows == ((540, 1200),) * 5 + ((600, 1020), None)
        assert both.closed_dates == {date(2026, 1, 1)}
        assert a.narrowed(LocalHours(((1200, 1260),) * 7)).windows == (None,) * 7

    def test_closed_dates_are_skipped_on_the_local_calendar(self) -> None:
        """New Year's Day closed in New York: 2025-12-31 22:00 EST waits for 2 January."""
        hours = FEDERAL.narrowed(LocalHours(FEDERAL.windows, frozenset({date(2026, 1, 1)})))
        at = utc(2026, 1, 1, 3, 0)
        assert next_opening(["America/New_York"], hours, at) == utc(2026, 1, 2, 13, 0)

    def test_holidays_come_from_the_holidays_package_per_state(self) -> None:
        assert date(2026, 4, 27) in holiday_dates("AL", (2026,))  # Confederate Memorial Day
        assert date(2026, 8, 10) in holiday_dates("RI", (2026,))  # Victory Day
        assert date(2026, 8, 10) not in holiday_dates("AL", (2026,))
        with pytest.raises(ValueError):
            holiday_dates("XX", (2026,))
