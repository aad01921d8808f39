"""``check-config --connect`` for write-back: describe each object, check its fields.

A configured field that does not exist, that the integration user may not
update, or whose type cannot hold the value (status, batch_id, error: text or
picklist; sent_at: datetime) is one line each, so the operator fixes the
config or the org before the first outcome is written.
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
            check.problems.append(f"sync {sync.name}: cannot describe {sync.object}: {exc}")
            continue
        found = field_problems(sync.object, sync.writeback.fields.spec, described[sync.object])
        check.problems += [f"sync {sync.name}: {problem}" for problem in found]
        if not found:
            names = ", ".join(sync.writeback.fields.names().values())
            check.ok.append(f"writeback: ok (sync {sync.name}: {sync.object} {names})")
    return check
