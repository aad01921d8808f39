"""``syncd trust-org``: let delivery run against the Salesforce org syncd now reads.

The database remembers the org it first synced with; when Salesforce answers
as another (a refreshed sandbox, another org's credentials), delivery stays
stopped until an operator checks and runs this command (docs/safety.md#org-identity).
"""

from __future__ import annotations

from pathlib import Path

import click

from syncd.entrypoints.cli_common import EXIT_CONFIG, config_option, fail, load_or_exit
from syncd.entrypoints.cli_operator_common import (
    confirm_or_exit,
    current_user,
    database,
    query,
    setup_logging,
    when,
)
from syncd.entrypoints.cli_text import echo


@click.command("trust-org")
@config_option
@click.option(
    "--reason",
    required=True,
    help="Why this org may be called from (required): written to the audit trail.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option(
    "--by",
    "actor",
    default=None,
    metavar="NAME",
    help="Who does it, for the audit trail. Default: your OS user name.",
)
@click.pass_context
def trust_org(
    ctx: click.Context, config_path: Path, reason: str, yes: bool, actor: str | None
) -> None:
    """Trust the Salesforce org syncd now logs in to, so that delivery may run.

    syncd reads Salesforce's Organization (one API call), shows it beside the
    org this database trusts, and asks before it changes anything. Trusting an
    org un-trusts the one before: a database delivers for one org. Running
    daemons pick the change up within seconds, with no restart.

    A sandbox org still delivers only with salesforce.sandbox: allow in the
    configuration: a full sandbox copy keeps production's real phone numbers.

    \b
    Example:
      syncd trust-org --reason "moved to the new production org, ticket 481"
    """
    from syncd.adapters import org_store
    from syncd.adapters.orm import utcnow
    from syncd.adapters.salesforce import SalesforceSource
    from syncd.services.org_gate import OrgUnreadable, read_org

    config = load_or_exit(config_path)
    setup_logging(ctx, config)
    if not reason.strip():
        fail("--reason must say why", EXIT_CONFIG)
    who = (actor or current_user()).strip() or "unknown"
    source = SalesforceSource(config.salesforce)
    try:
        org = read_org(source)
    except OrgUnreadable as exc:
        fail(f"{exc}; nothing was trusted")
    finally:
        source.close()
    with database(config) as sessions:
        with sessions() as session:
            before = query(lambda: org_store.trusted_org(session))
        echo(f"Salesforce answers as the {org.describe()}.")
        if before is not None and before.org_id == org.org_id:
            echo(
                f"This database already trusts it (since {when(before.trusted_at)}); "
                "nothing changed."
            )
            return
        echo(
            "This database trusts "
            + (
                f"org {before.org_id} (by {before.trusted_by}, {when(before.trusted_at)})."
                if before
                else "no org yet."
            )
        )
        if org.is_sandbox and config.salesforce.sandbox != "allow":
            echo(
                "note: it is a sandbox; delivery also needs salesforce.sandbox: allow in the "
                "configuration.",
            )
        if not yes:
            confirm_or_exit(f"Trust {org.org_id} and deliver its leads?", "trust it", "trusted")
        with sessions.begin() as session:
            query(lambda: org_store.trust(session, org, who, reason, utcnow()))
    echo(f"trusted: {org.describe()} (by {who}); running daemons deliver again within seconds")
