"""Memory of one poll: does syncd's footprint stay flat from 10,000 to 100,000 records?

A benchmark, not a test. For each size it starts the Salesforce emulator in
its own process (``syncd sandbox salesforce``) holding that many leads, then
runs ONE poll of a fresh SQLite database in a child process of its own and
reports that child's peak RSS (``ru_maxrss``) and, in a second child, the
``tracemalloc`` peak of Python allocations during the poll. Pages are
streamed and committed one at a time, so both numbers should barely move
between 10k and 100k records; a poll that held every record would grow ~10x.

Usage::

    .venv/bin/python benchmarks/bench_poll_memory.py [--sizes 10000 100000] [--page-size 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

PYTHON = sys.executable


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "SF_", "SIMZ_"))}


def start_org(work: Path, count: int) -> tuple[subprocess.Popen[bytes], str, Path]:
    from syncd.sandbox.demo_data import bulk_leads, demo_users

    records = work / f"records-{count}.jsonl"
    with records.open("w", encoding="utf-8") as out:
        for user in demo_users().records:
            out.write(json.dumps(user) + "\n")
        for record in bulk_leads(count):
            out.write(json.dumps(record) + "\n")
    cert_dir = work / f"certs-{count}"
    log = work / f"salesforce-{count}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PYTHON, "-m", "syncd", "sandbox", "salesforce", "--port", "0",
             "--records", str(records), "--cert-dir", str(cert_dir)],
            stdout=out, stderr=subprocess.STDOUT, env=clean_env(),
        )  # fmt: skip
    deadline = time.monotonic() + 600
    while True:
        text = log.read_text(errors="replace")
        found = re.search(r"emulator on (\S+)", text)
        if found and "loaded" in text:
            return process, found.group(1), cert_dir / "ca.pem"
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the emulator did not start:\n{text}")
        time.sleep(0.2)


def child(url: str, ca_file: str, db: str, page_size: int, trace: bool) -> dict[str, Any]:
    """One poll into a fresh SQLite file; runs in its own process."""
    from syncd.adapters.db import make_engine, make_session_factory
    from syncd.adapters.migrate import upgrade
    from syncd.adapters.salesforce import SalesforceSource
    from syncd.config.models import SalesforceConfig, SyncConfig
    from syncd.logs import configure_logging
    from syncd.sandbox.example import example_sync
    from syncd.services.poll import poll_sync

    configure_logging(level="warning", fmt="json", stream=sys.stderr)
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    source = SalesforceSource(
        SalesforceConfig.model_validate(
            {
                "auth": {
                    "method": "password",
                    "username": "sandbox@example.com",
                    "password": "sandbox-password",
                    "security_token": "sandbox-token",
                },
                "login_url": url,
                "ca_bundle": ca_file,
                "page_size": page_size,
            }
        )
    )
    sync = SyncConfig.model_validate(
        # A backfill of the whole org is the point here, not a blast to stop.
        example_sync(
            "bench",
            start_at="2000-01-01T00:00:00Z",
            lag="0s",
            agent="agt_bench",
            guard={"max_new_per_poll": None},
        )
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    result = poll_sync(make_session_factory(engine), source, sync)
    seconds = time.perf_counter() - started
    traced = tracemalloc.get_traced_memory()[1] if trace else None
    return {
        "status": result.status,
        "fetched": result.fetched,
        "new": result.new,
        "pages": result.pages,
        "seconds": round(seconds, 2),
        "records_per_second": round(result.fetched / seconds) if seconds else None,
        "rss_before_mb": round(rss_before / 1024, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tracemalloc_peak_mb": round(traced / 2**20, 1) if traced is not None else None,
    }


def run_child(url: str, ca_file: Path, work: Path, page_size: int, trace: bool) -> dict[str, Any]:
    db = tempfile.mktemp(suffix=".db", dir=work)
    output = subprocess.run(
        [PYTHON, __file__, "--child", url, str(ca_file), db, str(page_size)]
        + (["--trace"] if trace else []),
        capture_output=True, text=True, env=clean_env(), timeout=3600, check=False,
    )  # fmt: skip
    if output.returncode != 0:
        raise RuntimeError(output.stderr[-3000:])
    data: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--page-size", type=int, default=2000)
    parser.add_argument("--child", nargs=4, metavar=("URL", "CA", "DB", "PAGE"))
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    if args.child:
        url, ca, db, page = args.child
        print(json.dumps(child(url, ca, db, int(page), args.trace)))
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="syncd-bench-mem-") as tmp:
        work = Path(tmp)
        for size in args.sizes:
            process, url, ca_file = start_org(work, size)
            try:
                plain = run_child(url, ca_file, work, args.page_size, trace=False)
                traced = run_child(url, ca_file, work, args.page_size, trace=True)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
            rows.append((size, plain, traced))
            print(f"{size:>8} records: {json.dumps(plain)}; tracemalloc peak "
                  f"{traced['tracemalloc_peak_mb']} MB", flush=True)  # fmt: skip
    print()
    print(f"{'records':>8}  {'peak RSS MB':>11}  {'tracemalloc MB':>14}  {'records/s':>9}")
    for size, plain, traced in rows:
        print(
            f"{size:>8}  {plain['peak_rss_mb']:>11}  {traced['tracemalloc_peak_mb']:>14}  "
            f"{plain['records_per_second']:>9}"
        )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        rss = last[1]["peak_rss_mb"] / first[1]["peak_rss_mb"]
        traced = last[2]["tracemalloc_peak_mb"] / max(first[2]["tracemalloc_peak_mb"], 0.1)
        print(
            f"\npeak RSS grows {rss:.2f}x and the tracemalloc peak {traced:.2f}x "
            f"for {last[0] / first[0]:.0f}x the records ({sys.version.split()[0]}, "
            f"{os.cpu_count()} cores)"
        )  # fmt: skip


if __name__ == "__main__":
    main()
