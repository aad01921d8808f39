"""Safety rules that hold a mapped lead back (docs/design.md#mapping-and-safety-rules).

Pure code. The caller gathers the inputs (the mapped leads of one page, which
agent/number pairs were sent or queued recently, which of their numbers are on
the suppression list) and these functions decide; nothing here reads a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from syncd.domain.consent import ConsentRule
from syncd.domain.durations import format_duration
from syncd.domain.mapping import MappedLead
from syncd.domain.states import LeadState

DO_NOT_CALL_NOTE = "DoNotCall is set on the record"
DUPLICATE_PHONE_NOTE = "duplicate phone within {window}"
DO_NOT_CALL_UNRECOGNISED_NOTE = (
    "DoNotCall value {value!r} is not one of the callable values (treated as do not call)"
)

#: States of another lead that hold a number for its agent whatever their age: the
#: lead is waiting to be sent, in flight, or may have reached SimZ; a ``held`` lead
#: is called if an operator releases it.
HOLDS_NUMBER = frozenset({LeadState.QUEUED, LeadState.SENDING, LeadState.UNCERTAIN, LeadState.HELD})

#: Besides those, an ``accepted`` lead holds its number within the duplicate-phone
#: window. A lead SimZ rejected does not: nobody will call it.

AgentPhone = tuple[str, str]


def skipped_for_do_not_call(lead: MappedLead, respect_do_not_call: bool) -> bool:
    """True when the record asks not to be called and the sync respects that."""
    return respect_do_not_call and lead.do_not_call


def do_not_call_note(lead: MappedLead) -> str:
    """Why DoNotCall holds the lead back: set, or a value that is not a callable one."""
    value = lead.do_not_call_unrecognised
    if value is None:
        return DO_NOT_CALL_NOTE
    return DO_NOT_CALL_UNRECOGNISED_NOTE.format(value=value)


@dataclass(frozen=True)
class IntakeRules:
    """The sync's rules a read record goes through: DoNotCall, consent, the duplicate window.

    A ``duplicate_window`` of zero turns the number rule off; ``consent`` None
    turns the consent rule off. ``propagate_do_not_call`` puts the number of a
    record that says DoNotCall on the suppression list (for every sync).
    """

    respect_do_not_call: bool = True
    duplicate_window: timedelta = timedelta(hours=24)
    consent: ConsentRule | None = None
    propagate_do_not_call: bool = False

    @property
    def checks_numbers(self) -> bool:
        return self.duplicate_window > timedelta(0)

    @property
    def window_label(self) -> str | None:
        """The window as the duplicate-phone note states it, or None when the rule is off."""
        return format_duration(self.duplicate_window) if self.checks_numbers else None


@dataclass(frozen=True)
class Decision:
    """The state a mapped lead takes after the rules, and the note explaining it."""

    state: LeadState
    note: str | None


#: The usual decision, shared: a Decision is immutable.
_QUEUED = Decision(LeadState.QUEUED, None)


@dataclass(frozen=True)
class NumberScreen:
    """What intake knows about the page's numbers and time, besides the duplicate window.

    ``suppressed``: number -> why it is on the suppression list (the lead's note);
    ``consent`` and ``now``: the consent rule and the time it is checked at.
    """

    suppressed: Mapping[str, str]
    consent: ConsentRule | None = None
    now: datetime | None = None

    def held_back(self, lead: MappedLead) -> str | None:
        """Why the suppression list or the consent rule holds ``lead`` back, or None."""
        if lead.phone_e164 is not None and lead.phone_e164 in self.suppressed:
            return self.suppressed[lead.phone_e164]
        if self.consent is not None:
            if self.now is None:
                raise ValueError("the consent rule needs the time it is checked at")
            return self.consent.check(lead.consent, self.now).reason
        return None


#: No number suppressed, no consent rule.
OPEN_SCREEN = NumberScreen({})


def decide(
    leads: Iterable[MappedLead],
    *,
    recent: Set[AgentPhone],
    respect_do_not_call: bool,
    duplicate_window_label: str | None,
    screen: NumberScreen = OPEN_SCREEN,
) -> list[Decision]:
    """Apply the rules to leads in page order, one :class:`Decision` per lead.

    * ``invalid`` stays ``invalid`` (mapping decided it);
    * DoNotCall makes a lead ``skipped`` unless the sync opted out;
    * a number on the suppression list, or a lead without valid consent
      (when the sync has the rule), makes it ``skipped`` (``screen``);
    * a number already sent or queued to the same agent (``recent``), or
      queued earlier in the same page, makes it ``skipped`` — unless the rule
      is off (``duplicate_window_label`` None).
    """
    decisions: list[Decision] = []
    taken: set[AgentPhone] = set()
    for lead in leads:
        if lead.state is LeadState.INVALID:
            decisions.append(Decision(LeadState.INVALID, lead.note))
            continue
        if skipped_for_do_not_call(lead, respect_do_not_call):
            decisions.append(Decision(LeadState.SKIPPED, _join(do_not_call_note(lead), lead.note)))
            continue
        held_back = screen.held_back(lead)
        if held_back is not None:
            decisions.append(Decision(LeadState.SKIPPED, _join(held_back, lead.note)))
            continue
        if duplicate_window_label is not None and lead.agent_id and lead.phone_e164:
            pair = (lead.agent_id, lead.phone_e164)
            if pair in recent or pair in taken:
                note = DUPLICATE_PHONE_NOTE.format(window=duplicate_window_label)
                decisions.append(Decision(LeadState.SKIPPED, _join(note, lead.note)))
                continue
            taken.add(pair)
        decisions.append(_QUEUED if lead.note is None else Decision(LeadState.QUEUED, lead.note))
    return decisions


def _join(first: str, rest: str | None) -> str:
    return f"{first}; {rest}" if rest else first
