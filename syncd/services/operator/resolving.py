"""``resolve``: record that SimZ confirmed it has an ``uncertain`` lead.

A lead is ``uncertain`` when its POST may have reached SimZ but the answer was
lost. Once the operator has checked with SimZ that SimZ does have it, the lead
is ``accepted``: it is never sent again and no longer needs anyone, so
``syncd_uncertain_leads`` (and its alert) drops at the daemon's next refresh
of the database gauges. A lead SimZ does *not* have is a case for ``requeue``,
which fetches the record again and re-checks every rule before sending.

Only the database changes, never Salesforce or SimZ, in one transaction: the
leads still ``uncertain`` (the UPDATE repeats the state), one
``lead_transitions`` row each with the reason and who did it, their write-back
rows, and one ``operator_actions`` row. Every other Id (unknown, another
sync's, or a lead in another state) is named with its problem and left alone;
the others are resolved all the same, because each one was confirmed on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import operator_pauses
from syncd.adapters import operator_queries as q
from syncd.adapters.orm import utcnow
from syncd.domain.states import LeadState, check_transition
from syncd.services.operator.common import log

#: What ``resolve`` may record; SimZ confirming it has the lead is the only case for now.
RESOLVE_TARGETS: tuple[str, ...] = (LeadState.ACCEPTED.value,)
RESOLVE_REASON = "operator: SimZ confirmed it has the lead"
#: ``operator_actions.action`` of a resolve.
RESOLVE_ACTION = "resolve"


@dataclass(frozen=True)
class ResolvePreview:
    """Which of the named leads ``resolve`` would move now, and why it would leave the others."""

    sync: str
    ready: list[str]
    problems: list[str]


@dataclass(frozen=True)
class ResolveResult:
    """The Ids resolved, in the order given, and the problem of each Id left alone."""

    sync: str
    target: str
    resolved: list[str]
    problems: list[str]
    reason: str
    actor: str
    at: datetime


def _unique_ids(salesforce_ids: Iterable[str]) -> list[str]:
    ids = list(dict.fromkeys(sf_id.strip() for sf_id in salesforce_ids if sf_id.strip()))
    if not ids:
        raise ValueError("resolve needs at least one Salesforce Id")
    return ids


def _target(target: str) -> LeadState:
    if target not in RESOLVE_TARGETS:
        raise ValueError(
            f"uncertain leads can be resolved only as {', '.join(RESOLVE_TARGETS)}, not {target!r}"
        )
    return check_transition(LeadState.UNCERTAIN, target)


def _problems(session: Session, sync: str, ids: Sequence[str]) -> list[str]:
    """One line for each Id that is not an ``uncertain`` lead of ``sync`` now."""
    if not ids:
        return []
    states = {sf_id: state for sf_id, _name, state in q.states_of_ids(session, ids, sync)}
    problems: list[str] = []
    for sf_id in ids:
        state = states.get(sf_id)
        if state is None:
            problems.append(f"{sf_id}: no lead with this Id in sync {sync}")
        elif state == LeadState.ACCEPTED.value:
            problems.append(f"{sf_id} is already accepted: nothing to resolve")
        elif state != LeadState.UNCERTAIN.value:
            problems.append(
                f"{sf_id} is {state}, not uncertain: only uncertain leads can be resolved"
            )
        else:
            problems.append(f"{sf_id} changed state meanwhile and was left alone")
    return problems


def preview_resolve(
    session_factory: sessionmaker[Session], *, sync: str, salesforce_ids: Iterable[str]
) -> ResolvePreview:
    """What :func:`resolve` would move now, for the confirmation prompt."""
    ids = _unique_ids(salesforce_ids)
    with session_factory() as session:
        found = q.states_of_ids(session, ids, sync)
        uncertain = {sf_id for sf_id, _n, state in found if state == LeadState.UNCERTAIN.value}
        ready = [sf_id for sf_id in ids if sf_id in uncertain]
        problems = _problems(session, sync, [sf_id for sf_id in ids if sf_id not in uncertain])
    return ResolvePreview(sync, ready, problems)


def resolve(
    session_factory: sessionmaker[Session],
    *,
    sync: str,
    salesforce_ids: Iterable[str],
    actor: str,
    target: str = LeadState.ACCEPTED.value,
    reason: str = RESOLVE_REASON,
    now: Callable[[], datetime] = utcnow,
) -> ResolveResult:
    """Move the named ``uncertain`` leads of ``sync`` to ``target`` (``accepted``), in one
    transaction, with their audit trail, write-backs and an ``operator_actions`` row.

    Raises ValueError for an empty Id list or a target other than ``accepted``.
    Ids that are not ``uncertain`` leads of ``sync`` are returned as problems.
    """
    goal = _target(target)
    ids = _unique_ids(salesforce_ids)
    reason = (reason or RESOLVE_REASON).strip() or RESOLVE_REASON
    who = actor.strip() or "unknown"
    at = now()
    with session_factory.begin() as session:
        resolved = q.resolve_uncertain(session, sync, ids, reason=f"{reason} (by {who})", at=at)
        done = set(resolved)
        problems = _problems(session, sync, [sf_id for sf_id in ids if sf_id not in done])
        if resolved:
            operator_pauses.record_action(
                session,
                at=at,
                actor=who,
                action=RESOLVE_ACTION,
                scope=operator_pauses.OPERATOR_SYNC,
                name=sync,
                reason=reason,
                detail=f"uncertain -> {goal.value}: {', '.join(resolved)}",
            )
    log.warning(
        "uncertain leads resolved",
        sync=sync,
        target=goal.value,
        leads=len(resolved),
        left_alone=len(problems),
        actor=who,
        reason=reason,
    )
    return ResolveResult(sync, goal.value, resolved, problems, reason, who, at)
