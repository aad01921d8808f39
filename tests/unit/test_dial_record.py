"""The record of every dial decision: the version of the rules and the inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncd.config.models import SyncConfig
from syncd.domain.consent import ConsentCheck, ConsentKind, ConsentRule
from syncd.domain.dial_record import canonical_json, dial_inputs, rules_version, seconds
from syncd.domain.frequency import Cap
from syncd.services.deliver import effective_rules, gate_rules

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BODY: dict[str, Any] = {
    "rules": {"respect_do_not_call": True, "duplicate_phone_window": "1d", "consent": None},
    "calling_hours": {"window": "08:00-21:00", "days": "mon-sun"},
}


def make_sync(name: str = "web", agent: str = "agt_1", **extra: Any) -> SyncConfig:
    return SyncConfig.model_validate(
        {"name": name, "agent": agent, "mapping": {"phoneNumber": "Phone"}, **extra}
    )


class TestRulesVersion:
    def test_sixteen_hex_digits(self) -> None:
        version = rules_version(BODY)
        assert len(version) == 16 and int(version, 16) >= 0

    def test_stable_across_key_order_and_processes(self) -> None:
        reordered = {
            "calling_hours": dict(reversed(list(BODY["calling_hours"].items()))),
            "rules": BODY["rules"],
        }
        assert rules_version(reordered) == rules_version(BODY)
        # Pinned: the same rules must name the same version in every release.
        assert rules_version({}) == "44136fa355b3678a"

    @pytest.mark.parametrize(
        "change",
        [
            {"rules": {**BODY["rules"], "duplicate_phone_window": "2d"}},
            {"rules": {**BODY["rules"], "respect_do_not_call": False}},
            {"calling_hours": None},
            {"extra": 1},
        ],
    )
    def test_any_change_gives_another_version(self, change: dict[str, Any]) -> None:
        assert rules_version({**BODY, **change}) != rules_version(BODY)

    def test_canonical_json(self) -> None:
        assert canonical_json({"b": [1, "é"], "a": None}) == '{"a":null,"b":[1,"é"]}'

    def test_no_value_json_cannot_state(self) -> None:
        with pytest.raises(ValueError):
            canonical_json({"x": float("nan")})


class TestSyncRules:
    def test_gate_rules_carry_consent_caps_and_over_cap(self) -> None:
        sync = make_sync(
            rules={
                "consent": {"field": "Consent_At__c", "kind": "date", "max_age": "365d"},
                "max_sends_per_number": [{"count": 3, "per": "24h"}],
                "over_cap": "skip",
            }
        )
        rules = gate_rules(sync)
        assert rules.consent == ConsentRule("Consent_At__c", ConsentKind.DATE, timedelta(days=365))
        assert rules.caps == (Cap(3, timedelta(hours=24)),)
        assert rules.over_cap_skip is True
        assert rules.version == rules_version(effective_rules(sync))

    def test_defaults(self) -> None:
        rules = gate_rules(make_sync())
        assert (rules.consent, rules.caps, rules.over_cap_skip) == (None, (), False)

    def test_the_version_follows_the_rules_and_calling_hours_not_the_rest(self) -> None:
        base = gate_rules(make_sync()).version
        assert gate_rules(make_sync(name="other", agent="agt_9")).version == base
        capped = make_sync(rules={"max_sends_per_number": [{"count": 3, "per": "24h"}]})
        assert gate_rules(capped).version != base
        hours = make_sync(calling_hours={"window": "08:00-21:00"})
        assert gate_rules(hours).version != base
        body = effective_rules(hours)
        assert set(body) == {"rules", "calling_hours"}
        assert body["calling_hours"]["window"] == "08:00-21:00"

    def test_a_profile_puts_its_state_rules_in_the_version(self) -> None:
        """The shipped state data (and any override) is part of what decided a dial."""
        profiled = effective_rules(make_sync(calling_hours={"profile": "us"}))
        assert profiled["state_rules"]["FL"].startswith("FL 08:00-20:00")
        assert "3 per 24h" in profiled["state_rules"]["FL"]
        overridden = make_sync(
            calling_hours={"profile": "us", "state_overrides": {"FL": {"max_per_24h": 2}}}
        )
        assert "2 per 24h" in effective_rules(overridden)["state_rules"]["FL"]
        assert rules_version(effective_rules(overridden)) != rules_version(profiled)


class TestInputs:
    def test_exactly_the_keys(self) -> None:
        rule = ConsentRule("Consent__c", ConsentKind.DATETIME)
        check = ConsentCheck(None, "2024-04-01T12:00:00Z", NOW - timedelta(days=30))
        inputs = dial_inputs(
            do_not_call=False,
            consent=(rule, check),
            suppression_checked=True,
            frequency=[(Cap(3, timedelta(hours=24)), 1)],
            duplicate_window=timedelta(hours=24),
            calling_hours={"rule": "08:00-21:00 mon-sun"},
            now=NOW,
        )
        assert inputs == {
            "do_not_call": False,
            "consent": {
                "rule": "Consent__c (datetime)",
                "value": "2024-04-01T12:00:00Z",
                "age_seconds": 30 * 86400.0,
            },
            "suppression": {"checked": True, "listed": False},
            "frequency": [
                {
                    "cap": "3 per 1d (rules.max_sends_per_number)",
                    "count": 3,
                    "per_seconds": 86400,
                    "sent": 1,
                }
            ],
            "duplicate_window_seconds": 86400,
            "calling_hours": {"rule": "08:00-21:00 mon-sun"},
        }
        canonical_json(inputs)  # plain JSON values throughout

    def test_seconds_whole_or_not(self) -> None:
        assert seconds(timedelta(hours=1)) == 3600 and isinstance(seconds(timedelta(hours=1)), int)
        assert seconds(timedelta(milliseconds=1500)) == 1.5
