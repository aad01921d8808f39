"""CPU that syncd itself spends per record while polling (no network, no emulator).

A benchmark, not a test. It builds N records the way the Salesforce emulator
returns ``bulk_leads`` for the benchmark's sync (``benchmarks/run.py``: Phone,
FirstName, LastName, Email, Company, Owner.Email, DoNotCall, Id,
SystemModstamp; agent set, respect_do_not_call, duplicate_phone_window 24h,
default_region US), serialises them as Salesforce's JSON pages, and serves
those pages to a real :class:`SalesforceSource` through a requests transport
adapter that answers from memory. It then reports, in CPU microseconds per
record (``time.process_time``, all threads), the median of ``--reps`` runs of:

* ``read``: reading the pages through ``SalesforceSource.query_pages`` only
  (the HTTP plumbing of requests and simple-salesforce plus the JSON decode);
* ``map``: ``Mapper.map`` over the decoded records;
* ``poll``: one whole ``poll_sync`` into a fresh, migrated SQLite file
  (read + map + rules + the page's queries and inserts + the watermark).

Usage::

    .venv/bin/python benchmarks/bench_poll_cpu.py [--records 20000] [--page-size 2000] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.migrate import upgrade
from syncd.adapters.salesforce import SalesforceSource
from syncd.config.models import SalesforceConfig, SyncConfig
from syncd.domain.mapping import Mapper
from syncd.domain.soql import build_poll_query
from syncd.domain.window import PollWindow
from syncd.logs import configure_logging
from syncd.sandbox.demo_data import bulk_leads, demo_users
from syncd.sandbox.example import example_sync
from syncd.services.poll import poll_sync

INSTANCE = "https://bench.invalid"
VERSION = "61.0"
T0 = datetime(2026, 1, 1, tzinfo=UTC)

# A backfill of the whole org is the point here, not a blast to stop.
SYNC = example_sync(
    "bench",
    start_at="2020-01-01T00:00:00Z",
    lag="0s",
    agent="agt_bench",
    guard={"max_new_per_poll": None},
)


def salesforce_records(count: int) -> list[dict[str, Any]]:
    """``bulk_leads`` as Salesforce's JSON carries them for the benchmark's query."""
    emails = {user["Id"]: user["Email"] for user in demo_users().records}
    records = []
    for index, lead in enumerate(bulk_leads(count)):
        sf_id = f"00Q{index:012d}AAA"
        stamp = T0 + timedelta(milliseconds=index * 7)
        records.append(
            {
                "attributes": {
                    "type": "Lead",
                    "url": f"/services/data/v{VERSION}/sobjects/Lead/{sf_id}",
                },
                "Phone": lead["Phone"],
                "FirstName": lead["FirstName"],
                "LastName": lead["LastName"],
                "Email": lead["Email"],
                "Company": lead["Company"],
                "Owner": {
                    "attributes": {
                        "type": "User",
                        "url": f"/services/data/v{VERSION}/sobjects/User/{lead['OwnerId']}",
                    },
                    "Email": emails[lead["OwnerId"]],
                },
                "DoNotCall": lead["DoNotCall"],
                "Id": sf_id,
                "SystemModstamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.")
                + f"{stamp.microsecond // 1000:03d}+0000",
            }
        )
    return records


def json_pages(records: list[dict[str, Any]], page_size: int) -> list[bytes]:
    pages = []
    for start in range(0, len(records), page_size):
        end = start + page_size
        body: dict[str, Any] = {"totalSize": len(records), "done": end >= len(records)}
        if end < len(records):
            body["nextRecordsUrl"] = f"/services/data/v{VERSION}/query/01gBENCH-{end}"
        body["records"] = records[start:end]
        pages.append(json.dumps(body, separators=(",", ":")).encode())
    return pages


class PagesAdapter(BaseAdapter):
    """Answers the query and its ``nextRecordsUrl`` pages from memory."""

    def __init__(self, pages: list[bytes], page_size: int) -> None:
        super().__init__()
        self.pages = pages
        self.page_size = page_size

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        path = urlsplit(request.url or "").path
        index = int(path.rsplit("-", 1)[1]) // self.page_size if "01gBENCH-" in path else 0
        response = requests.Response()
        response.status_code = 200
        response._content = self.pages[index]
        response.headers = CaseInsensitiveDict(
            {
                "Content-Type": "application/json;charset=UTF-8",
                "Sforce-Limit-Info": "api-usage=1/100000",
            }
        )
        response.encoding = "UTF-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def make_source(pages: list[bytes], page_size: int) -> SalesforceSource:
    config = SalesforceConfig.model_validate(
        {
            "auth": {"method": "session", "session_id": "bench", "instance_url": INSTANCE},
            "page_size": page_size,
            "api_version": VERSION,
        }
    )
    source = SalesforceSource(config)
    source._http.mount(INSTANCE, PagesAdapter(pages, page_size))
    return source


def cpu(run: Callable[[], Any]) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=2_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", choices=("read", "map", "poll"), action="append")
    args = parser.parse_args()
    configure_logging(level="warning", fmt="json", stream=sys.stderr)

    n = args.records
    sync = SyncConfig.model_validate(SYNC)
    pages = json_pages(salesforce_records(n), args.page_size)
    window = PollWindow(T0 - timedelta(days=1), T0 + timedelta(days=1))
    soql = build_poll_query(sync.query_spec, window)
    decoded = [
        record for page in make_source(pages, args.page_size).query_pages(soql) for record in page
    ]

    def read() -> None:
        source = make_source(pages, args.page_size)
        for _page in source.query_pages(soql):
            pass

    def map_all() -> None:
        mapper = Mapper(sync.mapping_spec)
        for record in decoded:
            mapper.map(record)

    def poll_now() -> datetime:
        return T0 + timedelta(days=1, hours=1)

    results: dict[str, list[float]] = {"read": [], "map": [], "poll": []}
    stages = args.only or ["read", "map", "poll"]
    with tempfile.TemporaryDirectory() as work:
        for rep in range(args.reps):
            if "read" in stages:
                results["read"].append(cpu(read))
            if "map" in stages:
                results["map"].append(cpu(map_all))
            if "poll" in stages:
                engine = make_engine(f"sqlite:///{work}/poll-{rep}.db")
                upgrade(engine)
                factory = make_session_factory(engine)
                source = make_source(pages, args.page_size)
                started = time.process_time()
                result = poll_sync(factory, source, sync, now=poll_now)
                results["poll"].append(time.process_time() - started)
                if result.status != "ok" or result.new != n or result.queued != n:
                    raise SystemExit(f"unexpected poll result: {result}")
                engine.dispose()

    print(f"{n:,} records, pages of {args.page_size:,}, median of {args.reps} reps")
    for stage in stages:
        values = results[stage]
        per_record = [value / n * 1e6 for value in values]
        spread = ", ".join(f"{v:.1f}" for v in per_record)
        print(f"  {stage:5} {statistics.median(per_record):7.1f} us/record  ({spread})")


if __name__ == "__main__":
    main()
