"""Lead states and the transitions allowed between them (docs/design.md#lead-states).

Pure code: no I/O. Every state change in the database goes through
:func:`check_transition`, so an illegal move (say ``accepted`` back to
``queued``) is a bug caught where it happens, not a lead called twice.
"""

from __future__ import annotations

from enum import StrEnum


class LeadState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNCERTAIN = "uncertain"
    INVALID = "invalid"
    SKIPPED = "skipped"
    FAILED = "failed"
    HELD = "held"


S = LeadState

#: States from which a lead may be sent (again) without an operator.
NOT_YET_SENT = frozenset({S.QUEUED, S.INVALID, S.SKIPPED, S.HELD})

#: States in which a changed Salesforce record is evaluated again (guarantee 5).
#: A ``held`` lead is evaluated again too, but a change never releases it: it
#: stays ``held`` (with the new values) or becomes ``invalid``/``skipped``.
REEVALUATED_ON_CHANGE = frozenset({S.QUEUED, S.INVALID, S.SKIPPED, S.HELD})

#: States only an operator moves on (``syncd release``/``syncd discard``).
HOLDING = frozenset({S.HELD})

#: States an operator may move back to ``queued`` with ``syncd requeue``.
REQUEUEABLE = frozenset({S.UNCERTAIN, S.FAILED, S.REJECTED})

#: States that end a lead's life unless an operator steps in.
TERMINAL = frozenset({S.ACCEPTED, S.REJECTED, S.UNCERTAIN, S.FAILED})

#: Where a requeue takes a lead once its record was fetched again and the rules re-applied.
_RECHECKED = frozenset({S.QUEUED, S.SKIPPED, S.INVALID})

ALLOWED: dict[LeadState | None, frozenset[LeadState]] = {
    # First seen by a poll; ``held`` when the blast-radius guard stops the poll.
    None: frozenset({S.QUEUED, S.INVALID, S.SKIPPED, S.HELD}),
    # -> held: only a poll whose source returned more records than it announced,
    # for its own earlier new leads, at the page that crosses the guard's limit.
    S.QUEUED: frozenset({S.SENDING, S.INVALID, S.SKIPPED, S.FAILED, S.HELD}),
    # Released (-> queued) or discarded (-> skipped) by an operator, or released by
    # its own poll when that ends under the limit; a changed record may make it
    # invalid or skipped, never queued.
    S.HELD: frozenset({S.QUEUED, S.SKIPPED, S.INVALID}),
    # A changed record re-evaluates them; -> held when the blast-radius guard holds the
    # read that would make them sendable (docs/design.md#the-guard-counts-every-lead).
    S.INVALID: frozenset({S.QUEUED, S.SKIPPED, S.HELD}),
    S.SKIPPED: frozenset({S.QUEUED, S.INVALID, S.HELD}),
    # The answer to a batch decides; back to queued only when SimZ said nothing was queued.
    S.SENDING: frozenset({S.ACCEPTED, S.REJECTED, S.UNCERTAIN, S.QUEUED, S.FAILED}),
    S.ACCEPTED: frozenset(),
    # Operator requeue only (and resend_uncertain, the documented opt-in), after the
    # record is fetched again: back to queued, or held back by the rules it now fails.
    S.REJECTED: _RECHECKED,
    # Also -> accepted: operator only (``syncd resolve --as accepted``), when SimZ
    # confirmed it has the lead; it is never sent again.
    S.UNCERTAIN: _RECHECKED | {S.ACCEPTED},
    S.FAILED: _RECHECKED,
}


class IllegalTransition(Exception):
    def __init__(self, current: LeadState | None, target: LeadState) -> None:
        super().__init__(f"a lead cannot go from {current or 'new'} to {target}")
        self.current = current
        self.target = target


def check_transition(current: LeadState | str | None, target: LeadState | str) -> LeadState:
    """Return ``target`` as a state if the move from ``current`` is allowed, else raise."""
    source = LeadState(current) if current is not None else None
    goal = LeadState(target)
    if goal not in ALLOWED[source]:
        raise IllegalTransition(source, goal)
    return goal
