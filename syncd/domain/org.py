"""Org identity: may delivery run against the Salesforce org syncd now reads? (pure, no I/O)

A full sandbox copy of a production org keeps its real phone numbers, and a
refresh gives the sandbox a new org Id. Pointed at one, syncd would call real
people from test data. So the database remembers the org it first synced with
(``org_identity``); delivery runs only while Salesforce answers as that trusted
org, and an org that is a sandbox delivers only when the configuration says
``salesforce.sandbox: allow``. ``syncd trust-org`` lets an operator trust
another org (docs/safety.md#org-identity).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Org:
    """What Salesforce says of the org syncd is logged in to."""

    org_id: str
    is_sandbox: bool
    name: str = ""

    def describe(self) -> str:
        kind = "sandbox" if self.is_sandbox else "production org"
        named = f" {self.name!r}" if self.name else ""
        return f"{kind}{named} {self.org_id}"


@dataclass(frozen=True)
class TrustedOrg:
    """The org an operator (or the first sync) trusted for this database."""

    org_id: str
    trusted_at: datetime | None
    trusted_by: str | None


def judge_org(current: Org, trusted: TrustedOrg | None, sandbox_allowed: bool) -> str | None:
    """Why delivery may not run against ``current`` given the trusted org; None: it may.

    No trusted org at all is a problem too: the caller trusts the first org it
    meets (when it is not a refused sandbox) before it asks.
    """
    if current.is_sandbox and not sandbox_allowed:
        return (
            f"Salesforce answers as a {current.describe()}: a sandbox copied from production "
            "holds real phone numbers, so delivery stays stopped; set salesforce.sandbox: allow "
            "to deliver from it"
        )
    if trusted is None:
        return f"no Salesforce org is trusted yet (Salesforce answers as the {current.describe()})"
    if trusted.org_id != current.org_id:
        since = f" (trusted by {trusted.trusted_by})" if trusted.trusted_by else ""
        return (
            f"the Salesforce org changed: this database trusts org {trusted.org_id}{since}, "
            f"Salesforce now answers as the {current.describe()}; delivery stays stopped "
            "until an operator runs syncd trust-org"
        )
    return None
