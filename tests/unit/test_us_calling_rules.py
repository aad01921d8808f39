"""The shipped state calling rules: every entry cites its law and when it was checked.

``syncd/data/us_calling_rules.yaml`` is read as package data, validated like the
configuration, and never widens the federal window.
"""

from __future__ import annotations

from datetime import date

import pytest

from syncd.config.us_calling_rules import parse_us_rules, us_rules
from syncd.domain.state_rules import FEDERAL_WINDOW

COMPILED = date(2026, 12, 7)
#: The states whose rules the profile must know (see docs/safety.md#state-calling-rules).
REQUIRED = {"AL", "CT", "FL", "LA", "MS", "RI", "UT"}


def test_every_entry_cites_a_source_and_the_date_it_was_checked() -> None:
    data = us_rules()
    assert data.compiled == COMPILED
    assert set(data.entries) >= REQUIRED
    for code, entry in data.entries.items():
        assert entry.source.strip(), code
        assert entry.checked <= COMPILED, code
        assert entry.name, code
    assert data.federal.source and data.federal.checked == COMPILED


def test_no_state_widens_the_federal_window() -> None:
    """Data that opened before 08:00 or after 21:00 would be a typo: the federal window wins."""
    for code, rule in us_rules().rules({}).items():
        for window in rule.windows:
            if window is not None:
                assert FEDERAL_WINDOW[0] <= window[0] < window[1] <= FEDERAL_WINDOW[1], code


def test_the_compiled_rules_say_what_the_brief_of_each_state_says() -> None:
    rules = us_rules().rules({})
    alabama, florida = rules["AL"], rules["FL"]
    assert alabama.windows[6] is None and alabama.holidays
    assert rules["CT"].windows == ((540, 1200),) * 7
    assert florida.windows == ((480, 1200),) * 7 and florida.max_per_24h == 3
    assert rules["LA"].windows[6] is None and rules["LA"].holidays
    assert rules["MS"].windows[6] is None and not rules["MS"].holidays
    assert rules["RI"].holidays and rules["RI"].windows[5] == (600, 1020)
    assert rules["UT"].holidays and rules["UT"].windows[6] is None
    assert rules["TX"].windows[6] == (720, 1260)
    assert florida.cap is not None and florida.cap.source == "state FL"


ENTRY = """
compiled: 2026-12-07
federal: {window: "08:00-21:00", source: "47 C.F.R. § 64.1200(c)(1)", checked: 2026-12-07}
states:
  %s
"""


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('FL: {name: Florida, window: "08:00-20:00", checked: 2026-12-07}', "source"),
        ('FL: {name: Florida, window: "08:00-20:00", source: "x"}', "checked"),
        ('FL: {name: Florida, window: "20:00-08:00", source: "x", checked: 2026-12-07}', "window"),
        ('ZZ: {name: Nowhere, source: "x", checked: 2026-12-07}', "not a US state code"),
        ('FL: {name: Florida, source: "x", checked: 2026-12-07, cap: 3}', "cap"),
    ],
)
def test_bad_data_is_refused_with_what_is_wrong(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match="the US calling rules data is invalid") as raised:
        parse_us_rules(ENTRY % entry)
    assert message in str(raised.value)


def test_the_federal_window_cannot_be_edited() -> None:
    with pytest.raises(ValueError, match="federal window"):
        parse_us_rules(ENTRY.replace('"08:00-21:00"', '"07:00-22:00"') % "{}")
