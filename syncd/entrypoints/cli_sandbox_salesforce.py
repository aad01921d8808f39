"""``syncd sandbox salesforce``: run the Salesforce emulator on its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from syncd.config.models import is_loopback_host
from syncd.entrypoints.cli_common import CONTEXT_SETTINGS, fail
from syncd.entrypoints.cli_sandbox_common import wait_for_signal
from syncd.entrypoints.cli_text import echo

if TYPE_CHECKING:
    from syncd.sandbox.salesforce import SalesforceEmulator


def _read_records(path: Path) -> list[dict[str, Any]]:
    """One JSON object per line; blank lines are skipped; a bad line exits with its number."""
    records: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            fail(f"{path}:{number}: not JSON: {exc}")
        if not isinstance(record, dict):
            fail(f"{path}:{number}: expected a JSON object with an 'sobject' key")
        records.append(record)
    return records


#: The command's --help (kept out of the function so that it stays short).
_HELP = """Serve a Salesforce org over HTTPS: logins, SOQL queries, describe, record updates,
change events (Pub/Sub API).

Prints the base URL, the Pub/Sub API address and the CA file to trust at start:

\b
  Salesforce emulator on https://127.0.0.1:8443
  CA certificate: /path/to/cert-dir/ca.pem
  Pub/Sub API (gRPC, TLS) on 127.0.0.1:7443
  control API on https://127.0.0.1:8443/__sandbox/

Use the URL as salesforce.login_url, the Pub/Sub address as
salesforce.pubsub_url and the CA file as salesforce.ca_bundle in a syncd
config. Every record created, updated, deleted or undeleted publishes its
change event on /data/<Object>ChangeEvent and /data/ChangeEvents.

Logins: SOAP (username, password + security token) and OAuth2 (password,
client_credentials, JWT bearer). Records missing Id, CreatedDate,
LastModifiedDate or SystemModstamp get them. A new CA is made at every start.

The control API (JSON, no authentication) lives under /__sandbox/:

\b
  POST records          {"records": [{"sobject": "Lead", ...}]}  (upsert by Id;
                        "publish": false: no change event)
  POST update           {"sobject": "Lead", "id": "00Q...", "fields": {...},
                         "SystemModstamp": "2024-01-01T00:00:00Z", "publish": false}
  POST expire-sessions  every session becomes invalid
  POST inject           {"kind": "REQUEST_LIMIT_EXCEEDED", "count": 1}
                        kinds: INVALID_SESSION_ID REQUEST_LIMIT_EXCEEDED
                        500 503 delay (with "seconds") malformed_json;
                        "only": "/composite" limits it to those calls
  POST api-usage        {"used": 100, "max": 15000}  (GET: the REST calls counted)
  GET  query-log        every SOQL query and page fetch
  GET  records/TYPE/ID  one record
  POST fields           {"fields": ["Lead.SimZ_Status__c:string:255"]}
  POST delete           {"sobject": "Lead", "id": "00Q..."}  (also undelete; updates
                        then get ENTITY_IS_DELETED)
  POST lock-rows        {"ids": ["00Q..."], "count": 0}  (UNABLE_TO_LOCK_ROW once)
  GET  write-log        every sObject Collections update and create
  GET  tasks            every Task (e.g. the call Tasks syncd wrote)
  POST fail-creates     {"count": 1, "code": "UNABLE_TO_LOCK_ROW"}  (next created records)
  POST lose-create-answers  {"count": 1}  (the create is done, its answer lost)
  POST pubsub/fault     {"kind": "drop"}  kinds: drop UNAUTHENTICATED
                        invalid_replay (with "count") expire_replay
                        slow (with "seconds"; 0 ends it)
  POST pubsub/gap       {"sobject": "Lead", "ids": [...], "change_type": "GAP_CREATE"}
  POST pubsub/publish   {"topic": "/event/Lead_Ready__e", "fields": {"RecordId__c": ...}}
  GET  pubsub/status    open streams, events, every Subscribe call
"""


@click.command("salesforce", help=_HELP, context_settings=CONTEXT_SETTINGS)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8443, show_default=True, help="0: any free."
)
@click.option(
    "--pubsub-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the Pub/Sub API (gRPC over TLS, same CA). 0: any free. "
    "Default: 7443, or any free port when --port is 0.",
)
@click.option(
    "--keepalive",
    type=click.FloatRange(min=0.1),
    default=270.0,
    show_default=True,
    help="Seconds between keepalive responses on an idle Pub/Sub stream.",
)
@click.option(
    "--records",
    "records_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="JSONL file: one record per line, e.g. "
    '{"sobject": "Lead", "LastName": "Doe", "Phone": "+15550100"}.',
)
@click.option(
    "--cert-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for the generated CA (ca.pem) and server certificate.",
)
@click.option("--username", default="sandbox@example.com", show_default=True)
@click.option("--password", default="sandbox-password", show_default=True)
@click.option("--security-token", default="sandbox-token", show_default=True)
@click.option("--consumer-key", default="sandbox-consumer-key", show_default=True)
@click.option("--consumer-secret", default="sandbox-consumer-secret", show_default=True)
@click.option(
    "--jwt-public-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="PEM public key or certificate to verify JWT bearer assertions with. "
    "Without it any well-formed, unexpired JWT with the right iss and sub is accepted.",
)
@click.option(
    "--custom-field",
    "custom_fields",
    multiple=True,
    metavar="OBJECT.FIELD:TYPE[:LENGTH][:readonly]",
    help="Declare a field (repeatable), e.g. Lead.SimZ_Status__c:string:255. Types: string, "
    "textarea, picklist, datetime, date, boolean, double; readonly: not updateable.",
)
def salesforce(
    host: str,
    port: int,
    pubsub_port: int | None,
    keepalive: float,
    records_file: Path | None,
    cert_dir: Path,
    username: str,
    password: str,
    security_token: str,
    consumer_key: str,
    consumer_secret: str,
    jwt_public_key: Path | None,
    custom_fields: tuple[str, ...],
) -> None:
    if not is_loopback_host(host):
        echo(
            f"syncd: warning: listening on {host}; the control API has no authentication",
            err=True,
        )
    records = _read_records(records_file) if records_file is not None else []
    emulator = _emulator(
        records,
        records_file,
        jwt_public_key,
        cert_dir=cert_dir,
        username=username,
        password=password,
        security_token=security_token,
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        custom_fields=custom_fields,
        keepalive=keepalive,
    )
    _serve(emulator, host, port, pubsub_port)


def _emulator(
    records: list[dict[str, Any]],
    records_file: Path | None,
    jwt_public_key: Path | None,
    **options: Any,
) -> SalesforceEmulator:
    """The emulator with ``records`` loaded; exits naming the file or option it refused."""
    from syncd.sandbox.salesforce import SalesforceEmulator
    from syncd.sandbox.sf_store import RecordError

    try:
        return SalesforceEmulator(
            records,
            jwt_public_key=jwt_public_key.read_bytes() if jwt_public_key else None,
            **options,
        )
    except RecordError as exc:
        fail(f"{records_file or '--custom-field'}: {exc}")


def _serve(emulator: SalesforceEmulator, host: str, port: int, pubsub_port: int | None) -> None:
    """Listen, print where (the URL, the CA, the Pub/Sub address), serve until a signal."""
    try:
        if pubsub_port is None:
            pubsub_port = 0 if port == 0 else 7443
        url = emulator.start(host=host, port=port, pubsub_port=pubsub_port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    try:
        echo(f"Salesforce emulator on {url}")
        echo(f"CA certificate: {emulator.ca_file}")
        echo(f"Pub/Sub API (gRPC, TLS) on {emulator.pubsub_address}")
        echo(f"control API on {url}/__sandbox/")
        echo(f"{emulator.store.count()} record(s) loaded")
        wait_for_signal()
    finally:
        emulator.stop()
