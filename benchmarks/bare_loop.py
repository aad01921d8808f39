"""The floor syncd is compared with: read with simple-salesforce, POST with httpx, nothing else.

docs/performance.md#how-it-is-measured: the same records read with ``query_all_iter`` and the same
batches POSTed with httpx, no database, no mapping beyond picking fields. It
runs in its own process (``benchmarks/run.py`` starts it) so its wall time,
CPU seconds and peak RSS are measured exactly like syncd's.

"Picking fields" includes the two cheap touches without which SimZ would
refuse the batches (and the comparison would be of different work): spaces
are dropped from the phone number, and an email that is not ASCII is left out.
Prints one JSON line: leads read, batches sent, HTTP statuses seen.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

import httpx
import requests
from simple_salesforce import Salesforce


def login(args: argparse.Namespace, session: requests.Session) -> Salesforce:
    """OAuth2 password login against the (emulated) org; simple-salesforce on the session."""
    response = session.post(
        f"{args.login_url}/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": args.consumer_key,
            "client_secret": args.consumer_secret,
            "username": args.username,
            "password": args.password + args.security_token,
        },
        timeout=30,
    )
    response.raise_for_status()
    body = response.json()
    return Salesforce(
        instance_url=body["instance_url"],
        session_id=body["access_token"],
        session=session,
        version=args.api_version,
    )


def pick(record: dict[str, Any]) -> dict[str, Any]:
    """The request's lead: the mapped fields, absent ones left out (as syncd sends them)."""
    lead: dict[str, Any] = {
        "phoneNumber": record["Phone"].replace(" ", ""),
        "salesforceId": record["Id"],
        "campaignType": "web-inbound",
    }
    for name, field in (("firstName", "FirstName"), ("lastName", "LastName")):
        if record.get(field):
            lead[name] = record[field]
    email = record.get("Email")
    if email and email.isascii():
        lead["email"] = email
    custom = {"company": record.get("Company")}
    owner = record.get("Owner")
    if owner:
        custom["owner"] = owner.get("Email")
    lead["customData"] = {key: value for key, value in custom.items() if value is not None}
    return lead


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--login-url", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--username", default="sandbox@example.com")
    parser.add_argument("--password", default="sandbox-password")
    parser.add_argument("--security-token", default="sandbox-token")
    parser.add_argument("--consumer-key", default="sandbox-consumer-key")
    parser.add_argument("--consumer-secret", default="sandbox-consumer-secret")
    parser.add_argument("--api-version", default="61.0")
    parser.add_argument("--soql", required=True)
    parser.add_argument("--simz-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args(argv)

    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    session.verify = args.ca_file
    sf = login(args, session)
    url = f"{args.simz_url.rstrip('/')}/api/lead-receive-service/agent/receiveLead/{args.agent}"
    headers = {"X-Company-API-Key": args.api_key}
    statuses: Counter[int] = Counter()
    leads = batches = 0
    batch: list[dict[str, Any]] = []
    with httpx.Client(headers=headers, timeout=30) as client:

        def send() -> None:
            nonlocal batches
            response = client.post(url, json={"leads": batch})
            statuses[response.status_code] += 1
            batches += 1
            batch.clear()

        records = sf.query_all_iter(
            args.soql, headers={"Sforce-Query-Options": "batchSize=2000"}, timeout=30
        )
        for record in records:
            batch.append(pick(record))
            leads += 1
            if len(batch) >= args.batch_size:
                send()
        if batch:
            send()
    print(json.dumps({"leads": leads, "batches": batches, "statuses": dict(statuses)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
