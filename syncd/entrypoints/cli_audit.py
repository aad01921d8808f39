"""``syncd audit export``: the evidence pack of one number, as JSON or CSV, from the database."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import click

from syncd.config import Config
from syncd.config.loader import DATABASE_ONLY
from syncd.entrypoints.cli_common import EXIT_CONFIG, config_option, fail, load_or_exit
from syncd.entrypoints.cli_operator_common import database, query, setup_logging
from syncd.entrypoints.cli_text import echo, printable
from syncd.services.audit_export import AuditPack, csv_table, export_number
from syncd.services.operator import to_jsonable
from syncd.text import spreadsheet_safe


@click.group("audit")
def audit() -> None:
    """Evidence of who was called and why: export every dial decision for a number."""


#: A number already in E.164: taken as it is when phonenumbers no longer calls it valid, so a
#: number stored under older metadata (or by a test) can still be looked up.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def _number(config: Config, phone: str, region: str | None) -> str:
    """``phone`` in E.164, read as the syncs read numbers, or exit 2."""
    import phonenumbers

    from syncd.domain.mapping import normalise_phone

    chosen = (region or (config.syncs[0].phone.default_region if config.syncs else "US")).upper()
    if chosen not in phonenumbers.SUPPORTED_REGIONS:
        fail(
            f"--region {chosen!r} is not a region phonenumbers knows (e.g. US, GB, DE)",
            EXIT_CONFIG,
        )
    found = normalise_phone(phone, chosen)
    if found is None and _E164.fullmatch(phone.strip()):
        found = phone.strip()
    if found is None:
        fail(
            f"--phone {phone!r} is not a valid phone number (read with region {chosen})",
            EXIT_CONFIG,
        )
    return found


def _as_json(pack: AuditPack) -> str:
    return json.dumps({"version": 1, **to_jsonable(pack)}, indent=2, ensure_ascii=True) + "\n"


def _as_csv(pack: AuditPack) -> str:
    headers, rows = csv_table(pack)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([spreadsheet_safe(printable(cell)) for cell in row] for row in rows)
    return out.getvalue()


@audit.command("export")
@config_option
@click.option(
    "--phone",
    required=True,
    metavar="NUMBER",
    help="The number, in E.164 (+12025550123, taken as written) or as a record would hold it.",
)
@click.option(
    "--region",
    default=None,
    metavar="CC",
    help="Region for a number written without a country code. Default: the first sync's "
    "phone.default_region.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
    help="json: everything, with the rules versions' bodies; csv: one row per decision, "
    "every input a column.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file instead of standard output (replaced if it exists).",
)
@click.pass_context
def audit_export(
    ctx: click.Context,
    config_path: Path,
    phone: str,
    region: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Export every decision and every send for one number, across all syncs and agents.

    The answer to "why was this number called, and by what right?": one row per
    dial decision of the send gate (when, sync, agent, lead id, record id, batch
    id, SimZ batch id, the state the lead left sending for, rules version, every
    input and the same in words), one row per send that has no recorded decision
    (sent before decisions were recorded), the number's suppression-list entry
    the operators' actions about the number and its calls as SimZ's webhooks
    reported them (an opt-out disposition is the evidence of a suppression of
    source call_outcome). The number is normalised as the
    syncs normalise it. Reads only the database. A number never sent gives an
    empty pack (exit 0); a number that is not one exits 2.

    \b
    Examples:
      syncd audit export --phone +12025550123
      syncd audit export --phone "(202) 555-0123" --format csv -o evidence.csv

    \b
    json: {"version": 1, "phone_e164", "exported_at", "rows": [{"kind":
    "decision"|"send", "decided_at", "sync", "agent", "lead_id", "record_id",
    "batch_id", "simz_batch_id", "outcome", "rules_version", "inputs",
    "explanation"}], "rules_versions": [{"version", "sync", "first_seen_at",
    "rules"}], "suppression": {...} or null, "operator_actions": [{"at", "actor",
    "action", "reason", "detail"}], "calls": [{"lead_id", "sync", "salesforce_id",
    "event_id", "call_key", "outcome", "disposition", "raw_disposition",
    "duration_seconds", "started_at", "received_at", "opt_out", "writeback_status",
    "task_id", "last_error"}]}.
    csv: the columns kind, decided_at, sync, agent, lead_id, record_id, batch_id,
    simz_batch_id, outcome, rules_version, explanation, then one per input
    (consent.value, frequency.0.sent, ...); the suppression entry and operator
    actions follow as rows of kind suppression and operator_action, the calls as
    rows of kind call (their disposition in outcome). The rules
    bodies are only in json.
    """
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    number = _number(config, phone, region)
    with database(config) as session_factory:
        pack = query(lambda: export_number(session_factory, number))
    text = _as_json(pack) if fmt == "json" else _as_csv(pack)
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
        echo(f"wrote {len(pack.rows)} row(s) for {number} to {output}", err=True)
    if not pack.rows:
        echo(f"no dial decision or send recorded for {number}", err=True)
