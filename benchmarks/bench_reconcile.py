"""Reconciliation sweep cost: API calls, wall time and peak RSS of ``syncd reconcile``.

The Salesforce emulator runs in its own process (``syncd sandbox salesforce``)
with N Lead records (default 100,000); a fresh SQLite database holds a lead for
every record but ``MISSED`` (10) of them. ``syncd reconcile --json`` runs as a
child process twice: once with REST query pages (``bulk_query_above: 0``,
``page_size`` 2,000: one query and its ``queryMore`` calls) and once with a
Bulk API 2.0 query job (``bulk_query_above`` below N: job create, status polls,
result pages of 2,000 rows, delete). Each run must report exactly the missed
records. Measured per run:

* API calls: the emulator's count of REST calls (every ``/services/data`` call,
  Bulk included; the SOAP login is not one), read with ``GET
  /__sandbox/api-usage`` before and after;
* wall time and CPU seconds of the child (``os.wait4``), and its peak RSS from
  ``VmHWM`` in ``/proc/<pid>/status``, read while it runs (``wait4``'s
  ``ru_maxrss`` would also count this process's memory at the fork: Linux
  keeps the high-water mark across ``exec``).

Usage::

    .venv/bin/python benchmarks/bench_reconcile.py            # 100,000 records
    .venv/bin/python benchmarks/bench_reconcile.py --records 20000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml
from sqlalchemy import insert

from benchmarks.run import PYTHON, Emulator, Usage, clean_env
from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.migrate import upgrade
from syncd.adapters.orm import Lead
from syncd.adapters.salesforce import SalesforceSource
from syncd.config.models import SalesforceConfig
from syncd.sandbox.demo_data import bulk_leads

MISSED = 10
PAGE_SIZE = 2000
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SINCE, UNTIL = "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"


def control(url: str, ca_file: Path, path: str, body: dict[str, Any] | None = None) -> Any:
    context = ssl.create_default_context(cafile=str(ca_file))
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/__sandbox/{path}", data=data)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=120, context=context) as response:
        return json.loads(response.read())


def vm_hwm_mb(pid: int) -> float | None:
    """The process's peak resident set so far (``VmHWM``), or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def run_measured(args: list[str], log: Path, timeout: float = 1800) -> Usage:
    """Run ``args``: wall and CPU from ``os.wait4``, peak RSS from its own ``VmHWM``."""
    with log.open("wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=clean_env())
        peak = 0.0
        while True:
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, vm_hwm_mb(process.pid) or 0.0)
            if time.monotonic() - started > timeout:
                process.kill()
            time.sleep(0.01)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Usage(
        wall=time.monotonic() - started,
        cpu=rusage.ru_utime + rusage.ru_stime,
        rss_mb=peak,
        status=process.returncode,
        output=log.read_text(errors="replace"),
    )


def salesforce_section(url: str, ca_file: Path, bulk_above: int) -> dict[str, Any]:
    return {
        "auth": {
            "method": "password",
            "username": "sandbox@example.com",
            "password": "sandbox-password",
            "security_token": "sandbox-token",
        },
        "login_url": url,
        "ca_bundle": str(ca_file),
        "page_size": PAGE_SIZE,
        "bulk_query_above": bulk_above,
    }


def record_ids(url: str, ca_file: Path) -> list[str]:
    source = SalesforceSource(SalesforceConfig.model_validate(salesforce_section(url, ca_file, 0)))
    try:
        return [
            str(r["Id"])
            for page in source.query_pages("SELECT Id FROM Lead ORDER BY Id")
            for r in page
        ]
    finally:
        source.close()


def prefill(db: Path, ids: list[str]) -> None:
    """A migrated SQLite file with an accepted lead for each of ``ids``."""
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    factory = make_session_factory(engine)
    rows = [
        {
            "sync_name": "bench",
            "salesforce_id": sf_id,
            "agent_id": "agt_bench",
            "state": "accepted",
            "payload": {"salesforceId": sf_id},
            "phone_e164": f"+1202{n // 10_000 % 800 + 200:03d}{n % 10_000:04d}",
            "record_cursor": T0,
            "record_hash": hashlib.sha256(sf_id.encode()).hexdigest(),
            "attempts": 1,
            "created_at": T0,
            "updated_at": T0,
        }
        for n, sf_id in enumerate(ids)
    ]
    with factory.begin() as session:
        for start in range(0, len(rows), 10_000):
            session.execute(insert(Lead), rows[start : start + 10_000])
    engine.dispose()


def write_config(work: Path, url: str, ca_file: Path, bulk_above: int) -> Path:
    config = {
        "database": {"url": f"sqlite:///{work / 'syncd.db'}"},
        "salesforce": salesforce_section(url, ca_file, bulk_above),
        "simz": {"base_url": "http://127.0.0.1:9", "api_key": "bench-key"},
        "syncs": [
            {
                "name": "bench",
                "agent": "agt_bench",
                "start_at": SINCE,
                "mapping": {"phoneNumber": "Phone"},
            }
        ],
        "observability": {"log_format": "json", "log_level": "warning"},
    }
    path = work / f"config-{bulk_above}.yaml"
    path.write_text(yaml.safe_dump(config), "utf-8")
    return path


def sweep(work: Path, url: str, ca_file: Path, mode: str, records: int) -> dict[str, Any]:
    bulk_above = records - 1 if mode == "bulk" else 0
    config = write_config(work, url, ca_file, bulk_above)
    control(url, ca_file, "api-usage", {"used": 0})
    args = [PYTHON, "-m", "syncd", "reconcile", "--sync", "bench", "--json"]
    args += ["--since", SINCE, "--until", UNTIL, "-c", str(config)]
    usage = run_measured(args, work / f"reconcile-{mode}.log")
    calls = int(control(url, ca_file, "api-usage")["used"])
    if usage.status != 0:
        raise SystemExit(f"reconcile ({mode}) exited {usage.status}:\n{usage.output[-3000:]}")
    start = usage.output.index("{\n")
    found = json.loads(usage.output[start : usage.output.index("\n}", start) + 2])
    assert len(found["missed"]) == MISSED and found["bulk"] == (mode == "bulk"), found
    return {
        "mode": mode,
        "records": found["records"],
        "missed": len(found["missed"]),
        "api_calls": calls,
        "calls_per_10k": round(calls * 10_000 / records, 1),
        "wall_s": round(usage.wall, 2),
        "cpu_s": round(usage.cpu, 2),
        "peak_rss_mb": round(usage.rss_mb, 1),
    }


def expected_calls(records: int) -> dict[str, str]:
    """The calls a sweep makes by construction, to print beside the measurement."""
    pages = math.ceil(records / PAGE_SIZE)
    return {
        "rest": f"1 COUNT + 1 query + {pages - 1} queryMore = {pages + 1}",
        "bulk": f"1 COUNT + 1 create + n status polls + {pages} result pages + 1 delete "
        f"= {pages + 3} + n",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as folder:
        work = Path(folder)
        records = work / "records.jsonl"
        with records.open("w", encoding="utf-8") as out:
            for record in bulk_leads(args.records):
                out.write(json.dumps(record) + "\n")
        emulator = Emulator(
            "salesforce",
            [
                "salesforce",
                "--port",
                "0",
                "--records",
                str(records),
                "--cert-dir",
                str(work / "ca"),
            ],
            work / "salesforce.log",
        )
        try:
            ca_file = work / "ca" / "ca.pem"
            ids = record_ids(emulator.url, ca_file)
            prefill(work / "syncd.db", ids[MISSED:])
            results = [
                sweep(work, emulator.url, ca_file, mode, args.records) for mode in ("rest", "bulk")
            ]
        finally:
            emulator.stop()
    expected = expected_calls(args.records)
    print(f"reconcile sweep over {args.records:,} records, {MISSED} missed, page_size {PAGE_SIZE}")
    print(
        f"{'mode':<6} {'calls':>6} {'/10k':>6} {'wall s':>7} {'cpu s':>6} {'RSS MB':>7}  expected"
    )
    for row in results:
        print(
            f"{row['mode']:<6} {row['api_calls']:>6} {row['calls_per_10k']:>6} "
            f"{row['wall_s']:>7} {row['cpu_s']:>6} {row['peak_rss_mb']:>7}  {expected[row['mode']]}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
