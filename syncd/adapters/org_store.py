"""The ``org_identity`` table: the Salesforce orgs this database met, and the one it trusts.

At most one row is trusted. The first org delivery meets is trusted at once
(``trusted_by`` "first sync"); any other is recorded untrusted, for ``syncd
status`` and ``syncd trust-org`` to show, until an operator trusts it, which
un-trusts the previous one (docs/safety.md#org-identity).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from syncd.adapters import operator_pauses
from syncd.adapters.orm import OrgIdentity
from syncd.domain.org import Org, TrustedOrg

FIRST_SYNC = "first sync"
#: One advisory key for every change of trust (PostgreSQL): two replicas meeting
#: their first org at once record one trusted org, not two.
_TRUST_LOCK = text("SELECT pg_advisory_xact_lock(7320512993162446451)")


def _serialise(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_TRUST_LOCK)


def trusted_org(session: Session) -> TrustedOrg | None:
    row = session.scalars(select(OrgIdentity).where(OrgIdentity.trusted.is_(True))).first()
    return None if row is None else TrustedOrg(row.org_id, row.trusted_at, row.trusted_by)


def known_orgs(session: Session) -> list[OrgIdentity]:
    """Every org met, the trusted one first, then the newest."""
    rows = session.scalars(select(OrgIdentity)).all()
    return sorted(rows, key=lambda r: (not r.trusted, -r.first_seen_at.timestamp()))


def meet(session: Session, org: Org, now: datetime, *, trust_first: bool) -> TrustedOrg | None:
    """Record ``org`` as met (once); with ``trust_first`` and no trusted org yet, trust it.

    Returns the trusted org after the call.
    """
    _serialise(session)
    row = session.get(OrgIdentity, org.org_id)
    if row is None:
        row = OrgIdentity(
            org_id=org.org_id, is_sandbox=org.is_sandbox, first_seen_at=now, trusted=False
        )
        session.add(row)
    row.is_sandbox = org.is_sandbox
    trusted = trusted_org(session)
    if trusted is None and trust_first:
        row.trusted, row.trusted_at, row.trusted_by = True, now, FIRST_SYNC
        session.flush()
        return TrustedOrg(org.org_id, now, FIRST_SYNC)
    return trusted


def trust(session: Session, org: Org, actor: str, reason: str, now: datetime) -> TrustedOrg | None:
    """Trust ``org`` for this database (and no other), audited; returns the org trusted before."""
    _serialise(session)
    before = trusted_org(session)
    operator_pauses.record_action(
        session,
        at=now,
        actor=actor,
        action="trust-org",
        scope="org",
        name=org.org_id,
        reason=reason,
        detail=f"trusted: {org.describe()}; before: "
        + (before.org_id if before is not None else "none"),
    )
    session.execute(update(OrgIdentity).values(trusted=False))
    row = session.get(OrgIdentity, org.org_id)
    if row is None:
        row = OrgIdentity(org_id=org.org_id, first_seen_at=now)
        session.add(row)
    row.is_sandbox = org.is_sandbox
    row.trusted, row.trusted_at, row.trusted_by = True, now, actor
    session.flush()
    return before
