"""Unit tests for syncd.domain.rules: DoNotCall and the duplicate-phone window."""

from __future__ import annotations

from typing import Any

from syncd.config.models import SyncConfig
from syncd.domain.mapping import MappedLead, Mapper
from syncd.domain.rules import decide
from syncd.domain.states import LeadState

SYNC = SyncConfig.model_validate(
    {"name": "s", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}}
)


def lead(n: int, phone: str = "+14155550123", **fields: Any) -> MappedLead:
    rec = {"Id": f"00Q{n:015d}", "SystemModstamp": "2024-01-01T00:00:00.000+0000"}
    rec.update({"Phone": phone, **fields})
    return Mapper(SYNC.mapping_spec).map(rec)


def run(leads: list[MappedLead], **kwargs: Any) -> list[tuple[LeadState, str | None]]:
    options: dict[str, Any] = {
        "recent": set(),
        "respect_do_not_call": True,
        "duplicate_window_label": "24h",
    }
    options.update(kwargs)
    return [(d.state, d.note) for d in decide(leads, **options)]


class TestDoNotCall:
    def test_skipped(self) -> None:
        """DoNotCall = true makes the lead skipped with a note."""
        assert run([lead(1, DoNotCall=True)]) == [
            (LeadState.SKIPPED, "DoNotCall is set on the record")
        ]

    def test_opted_out(self) -> None:
        """A sync that opts out of the rule queues the lead anyway."""
        assert run([lead(1, DoNotCall=True)], respect_do_not_call=False)[0][0] is LeadState.QUEUED

    def test_string_true(self) -> None:
        """A textual "true" counts as set."""
        assert run([lead(1, DoNotCall="true")])[0][0] is LeadState.SKIPPED

    def test_invalid_stays_invalid(self) -> None:
        """An invalid lead stays invalid whatever its DoNotCall flag."""
        assert run([lead(1, phone="1", DoNotCall=True)])[0][0] is LeadState.INVALID


class TestDuplicatePhone:
    def test_recent_send_skips(self) -> None:
        """A number sent to the same agent recently makes the lead skipped."""
        result = run([lead(1)], recent={("agt_1", "+14155550123")})
        assert result == [(LeadState.SKIPPED, "duplicate phone within 24h")]

    def test_other_agent_does_not_count(self) -> None:
        """The same number at another agent is not a duplicate."""
        assert run([lead(1)], recent={("agt_2", "+14155550123")})[0][0] is LeadState.QUEUED

    def test_same_page(self) -> None:
        """The second lead with a number already queued in the same page is skipped."""
        states = [s for s, _ in run([lead(1), lead(2), lead(3, phone="+14155550124")])]
        assert states == [LeadState.QUEUED, LeadState.SKIPPED, LeadState.QUEUED]

    def test_same_page_after_skip(self) -> None:
        """A number held back by DoNotCall does not block a later lead with it."""
        states = [s for s, _ in run([lead(1, DoNotCall=True), lead(2)])]
        assert states == [LeadState.SKIPPED, LeadState.QUEUED]

    def test_rule_off(self) -> None:
        """With the window off, duplicates are queued."""
        result = run(
            [lead(1), lead(2)], recent={("agt_1", "+14155550123")}, duplicate_window_label=None
        )
        assert [s for s, _ in result] == [LeadState.QUEUED, LeadState.QUEUED]
