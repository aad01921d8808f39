"""``check-config --connect`` for write-back: describe each object, check its fields.

A configured field that does not exist, that the integration user may not
update, or whose type cannot hold the value (status, batch_id, error: text or
picklist; sent_at: datetime) is one line each, so the operator fixes the
config or the org before the first outcome is written. ``syncd run`` runs
the same check at start and refuses to start on a field problem
(:func:`start_refusals`); an object it cannot describe (Salesforce down) does
not stop it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from syncd.adapters.salesforce import SalesforceSource, SalesforceSourceError
from syncd.config import Config
from syncd.domain.writeback import field_problems


@dataclass
class WritebackCheck:
    """What the check found: ``ok`` lines to print, ``problems`` that make it fail."""

    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: The problems that are a failed describe (Salesforce unreachable), not a field.
    undescribed: list[str] = field(default_factory=list)


def failure_line(problem: str) -> str:
    """How ``check-config --connect`` (and a refused ``syncd run``) prints a problem."""
    return f"writeback: FAILED: {problem}"


def check_writeback_fields(config: Config, source: SalesforceSource) -> WritebackCheck:
    """Describe every object an enabled sync writes back to and check the fields.

    ``source`` is the caller's (logged in already, or it logs in on first use).
    """
    check = WritebackCheck()
    described: dict[str, list[dict[str, object]]] = {}
    for sync in config.syncs:
        if not sync.enabled or sync.writeback is None:
            continue
        try:
            if sync.object not in described:
                described[sync.object] = source.describe_fields(sync.object)
        except SalesforceSourceError as exc:
            problem = f"sync {sync.name}: cannot describe {sync.object}: {exc}"
            check.problems.append(problem)
            check.undescribed.append(problem)
            continue
        found = field_problems(sync.object, sync.writeback.fields.spec, described[sync.object])
        check.problems += [f"sync {sync.name}: {problem}" for problem in found]
        if not found:
            names = ", ".join(sync.writeback.fields.names().values())
            check.ok.append(f"writeback: ok (sync {sync.name}: {sync.object} {names})")
    return check


def start_refusals(config: Config, source: SalesforceSource) -> WritebackCheck:
    """The check at ``syncd run``'s start: ``problems`` are the field problems only,
    as lines of :func:`failure_line`; ``undescribed``: what could not be checked."""
    found = check_writeback_fields(config, source)
    fields = [p for p in found.problems if p not in found.undescribed]
    return WritebackCheck(found.ok, [failure_line(p) for p in fields], found.undescribed)
