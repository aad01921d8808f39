"""``syncd suppress``: the suppression list, the numbers nobody may call, by hand.

``add``, ``remove`` and ``import`` change only the database (every running
replica reads the list in each intake and each claim, so a change holds from
the next one on, with no restart) and write an ``operator_actions`` row with
who did it (your OS user, or ``--by``) and ``--reason``. ``list`` and
``export`` only read. Numbers are read exactly as leads' numbers are: a
number without a country code takes ``--region`` (default: the first sync's
``phone.default_region``).

Exit status: 0 done (also "already listed" and "not listed"); 1 database
trouble, an unreadable file, or no confirmation; 2 bad arguments (a number
that is not one, a CSV without the column).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import phonenumbers

from syncd.adapters.suppression_store import SuppressionEntry
from syncd.config import Config
from syncd.config.loader import DATABASE_ONLY
from syncd.domain.mapping import normalise_phone
from syncd.entrypoints.cli_common import EXIT_CONFIG, config_option, fail, load_or_exit
from syncd.entrypoints.cli_operator_common import (
    confirm_or_exit,
    current_user,
    database,
    query,
    setup_logging,
    short,
    table,
    when,
)
from syncd.entrypoints.cli_text import echo, echo_json, echo_lines
from syncd.services import suppressing
from syncd.services.operator import iso
from syncd.text import spreadsheet_safe

#: Rows between two progress lines of an import.
PROGRESS_EVERY = 50_000
#: Entries ``list`` shows unless told otherwise.
LIST_LIMIT = 200
#: The columns of ``export --format csv``, in order.
EXPORT_COLUMNS = (
    "phone",
    "source",
    "reason",
    "added_by",
    "record_id",
    "sync",
    "seen_at",
    "added_at",
)

_by_option = click.option(
    "--by",
    "actor",
    default=None,
    metavar="NAME",
    help="Who does it, for the audit trail. Default: your OS user name.",
)
_region_option = click.option(
    "--region",
    default=None,
    metavar="CC",
    help="ISO 3166 region of numbers written without a country code "
    "(default: the first sync's phone.default_region).",
)
_reason_option = click.option(
    "--reason", required=True, help="Why (required): stored with the entry and in the audit trail."
)


def _open(ctx: click.Context, config_path: Path) -> Config:
    config = load_or_exit(config_path, uses=DATABASE_ONLY)
    setup_logging(ctx, config)
    return config


def _region(config: Config, region: str | None) -> str:
    if region is None:
        return config.default_region
    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        fail(f"--region {region!r} is not a region (e.g. US, GB, DE)", EXIT_CONFIG)
    return region.upper()


def _number(value: str, region: str) -> str:
    phone = normalise_phone(value, region)
    if phone is None:
        fail(f"{value!r} is not a valid phone number (region {region})", EXIT_CONFIG)
    return phone


def _reason(reason: str) -> str:
    if not reason.strip():
        fail("--reason must say why", EXIT_CONFIG)
    return reason.strip()


def _actor(actor: str | None) -> str:
    return (actor or current_user()).strip() or "unknown"


def _describe(entry: SuppressionEntry) -> str:
    record = f", record {entry.record_id}" if entry.record_id else ""
    sync = f", sync {entry.sync_name}" if entry.sync_name else ""
    return (
        f"{entry.phone_e164} ({entry.source}{record}{sync}) added by {entry.added_by} "
        f"at {when(entry.added_at)}, reason: {entry.reason}"
    )


@click.group("suppress")
def suppress() -> None:
    """Keep numbers nobody may call: add, remove, list, import and export the suppression list."""


@suppress.command("add")
@config_option
@click.argument("number")
@_reason_option
@_region_option
@_by_option
@click.pass_context
def suppress_add(
    ctx: click.Context,
    config_path: Path,
    number: str,
    reason: str,
    region: str | None,
    actor: str | None,
) -> None:
    """Put NUMBER on the suppression list: no sync will queue or send it again.

    Leads with the number are skipped at their next intake or claim (a batch
    already on its way is still sent). A number already listed keeps its first
    entry (exit 0).

    \b
    Examples:
      syncd suppress add "+1 202 555 0101" --reason "asked not to be called, ticket 123"
      syncd suppress add "020 7946 0000" --region GB --reason "complaint"
    """
    config = _open(ctx, config_path)
    phone = _number(number, _region(config, region))
    why, who = _reason(reason), _actor(actor)
    with database(config) as session_factory:
        outcome = query(lambda: suppressing.add(session_factory, phone, reason=why, actor=who))
    if outcome.created:
        echo(f"suppressed: {_describe(outcome.entry)}")
    else:
        echo(f"already on the list, left as it was: {_describe(outcome.entry)}")


@suppress.command("remove")
@config_option
@click.argument("number")
@_reason_option
@_region_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_by_option
@click.pass_context
def suppress_remove(
    ctx: click.Context,
    config_path: Path,
    number: str,
    reason: str,
    region: str | None,
    yes: bool,
    actor: str | None,
) -> None:
    """Take NUMBER off the suppression list: its leads may be called again.

    Shows the entry and asks for confirmation, unless --yes (with no answer on
    stdin it changes nothing, exit 1). Leads already skipped stay skipped; a
    record that still says DoNotCall, or a suppression source that still
    returns it, puts the number back on the list at its next read.
    """
    config = _open(ctx, config_path)
    phone = _number(number, _region(config, region))
    why, who = _reason(reason), _actor(actor)
    with database(config) as session_factory:
        found = query(lambda: suppressing.find(session_factory, phone))
        if found is None:
            echo(f"{phone} is not on the suppression list; nothing to do")
            return
        echo(f"on the list: {_describe(found)}")
        if not yes:
            confirm_or_exit(f"Remove {phone} from the suppression list?", "remove", "removed")
        entry = query(lambda: suppressing.remove(session_factory, phone, reason=why, actor=who))
    if entry is None:
        echo(f"{phone} was removed meanwhile; nothing to do")
    else:
        echo(f"removed {phone} from the suppression list (by {who})")


@suppress.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (newest first).")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=LIST_LIMIT,
    show_default=True,
    help="Show at most this many entries, newest first (0: all; `export` for files).",
)
@click.pass_context
def suppress_list(ctx: click.Context, config_path: Path, as_json: bool, limit: int) -> None:
    """Show the numbers on the suppression list, newest first, with where each came from."""
    config = _open(ctx, config_path)
    with database(config) as session_factory:
        total = query(lambda: suppressing.count(session_factory))
        entries = query(lambda: suppressing.listed(session_factory, limit or None))
    if as_json:
        echo_json({"total": total, "entries": [_jsonable(entry) for entry in entries]})
        return
    echo(f"{total} number(s) on the suppression list")
    if not entries:
        return
    rows = [
        (
            e.phone_e164,
            e.source,
            when(e.added_at),
            when(e.seen_at),
            short(e.added_by, 24),
            e.record_id,
            short(e.reason, 60),
        )
        for e in entries
    ]
    headers = ("number", "source", "added", "seen", "by", "record", "reason")
    echo_lines(table(headers, rows))
    if total > len(entries):
        echo(f"... and {total - len(entries)} more (--limit 0 shows all; `export` writes a file)")


def _jsonable(entry: SuppressionEntry) -> dict[str, Any]:
    return {
        "phone": entry.phone_e164,
        "source": entry.source,
        "reason": entry.reason,
        "added_by": entry.added_by,
        "record_id": entry.record_id,
        "sync": entry.sync_name,
        "seen_at": iso(entry.seen_at),
        "added_at": iso(entry.added_at),
    }


@suppress.command("export")
@config_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="csv (a header, then one number a row) or json (an array of entries).",
)
@click.pass_context
def suppress_export(ctx: click.Context, config_path: Path, fmt: str) -> None:
    """Write every entry of the suppression list to stdout, in number order.

    \b
    Example:
      syncd suppress export > suppressed.csv
    """
    config = _open(ctx, config_path)
    with database(config) as session_factory:
        query(lambda: _write_export(suppressing.export(session_factory), fmt, sys.stdout))


def _write_export(entries: Iterator[SuppressionEntry], fmt: str, out: IO[str]) -> None:
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        for entry in entries:
            writer.writerow(
                ["" if v is None else spreadsheet_safe(str(v)) for v in _jsonable(entry).values()]
            )
        return
    out.write("[")
    for index, entry in enumerate(entries):
        out.write(("," if index else "") + "\n  " + json.dumps(_jsonable(entry), ensure_ascii=True))
    out.write("\n]\n")


@suppress.command("import")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_reason_option
@click.option(
    "--column",
    default="phone",
    show_default=True,
    help="The header of the column with the numbers (compared case-insensitively).",
)
@_region_option
@_by_option
@click.pass_context
def suppress_import(
    ctx: click.Context,
    config_path: Path,
    file: Path,
    reason: str,
    column: str,
    region: str | None,
    actor: str | None,
) -> None:
    """Add every number of a CSV file (a national or state Do Not Call scrub file, say).

    The file has a header row; the numbers are in its --column. Each is read
    as a lead's number is; lines that hold no valid number are listed with
    their line numbers and skipped. Numbers already listed keep their entry.
    The file is read in chunks, each committed on its own: an import stopped
    half-way keeps what it added, and running it again adds only the rest.

    \b
    Example:
      syncd suppress import dnc-2025-06.csv --column PhoneNumber --reason "FTC DNC scrub June"
    """
    config = _open(ctx, config_path)
    where = _region(config, region)
    why, who = _reason(reason), _actor(actor)
    with database(config) as session_factory:
        result = _import(session_factory, file, column, where, why, who)
    echo(
        f"imported {file.name}: {result.rows} row(s), {result.added} added, "
        f"{result.already} already listed, {result.unreadable} unreadable"
    )
    for line, value in result.unreadable_lines:
        echo(f"  line {line}: not a phone number: {value or '(empty)'}")
    hidden = result.unreadable - len(result.unreadable_lines)
    if hidden > 0:
        echo(f"  ... and {hidden} more unreadable line(s)")


def _import(
    session_factory: Any, file: Path, column: str, region: str, reason: str, actor: str
) -> suppressing.ImportResult:
    shown = [0]

    def progress(result: suppressing.ImportResult) -> None:
        if result.rows // PROGRESS_EVERY > shown[0]:
            shown[0] = result.rows // PROGRESS_EVERY
            echo(f"... {result.rows} rows read, {result.added} added", err=True)

    try:
        with file.open(encoding="utf-8-sig", newline="") as handle:
            rows = _rows(handle, column, file)
            return query(
                lambda: suppressing.import_numbers(
                    session_factory,
                    rows,
                    region=region,
                    reason=reason,
                    actor=actor,
                    source_name=file.name,
                    progress=progress,
                )
            )
    except (UnicodeDecodeError, csv.Error) as exc:
        fail(
            f"cannot read {file}: {exc}; the rows before it were imported, run it again when fixed"
        )
    except OSError as exc:
        fail(f"cannot read {file}: {exc}")


def _rows(handle: IO[str], column: str, file: Path) -> Iterator[tuple[int, str | None]]:
    """(line, value of the column) of each data row; exit 2 when the header lacks it."""
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        fail(f"{file} is empty: expected a header row with a {column!r} column", EXIT_CONFIG)
    folded = [name.strip().lower() for name in header]
    if column.strip().lower() not in folded:
        found = ", ".join(repr(name) for name in header) or "none"
        fail(f"{file} has no {column!r} column (columns: {found}); use --column", EXIT_CONFIG)
    index = folded.index(column.strip().lower())
    return _values(reader, index)


def _values(reader: Any, index: int) -> Iterator[tuple[int, str | None]]:
    for row in reader:
        if not row:
            continue
        yield reader.line_num, row[index] if index < len(row) else None
