"""The Salesforce orgs this database met, for ``syncd status`` (docs/safety.md#org-identity)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import org_store


@dataclass(frozen=True)
class OrgView:
    org_id: str
    is_sandbox: bool
    trusted: bool
    first_seen_at: datetime
    trusted_at: datetime | None
    trusted_by: str | None


def org_views(session_factory: sessionmaker[Session]) -> list[OrgView]:
    """Every org met: the trusted one first, then the newest."""
    with session_factory() as session:
        return [
            OrgView(
                row.org_id,
                row.is_sandbox,
                row.trusted,
                row.first_seen_at,
                row.trusted_at,
                row.trusted_by,
            )
            for row in org_store.known_orgs(session)
        ]
