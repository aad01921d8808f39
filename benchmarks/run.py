"""syncd benchmarks: throughput, cost per lead, memory, idle cost and API calls.

Method: docs/performance.md#how-it-is-measured.

Every program measured runs in its own process: the Salesforce and SimZ
emulators (``syncd sandbox salesforce|simz``), syncd itself (``syncd once`` /
``syncd run``) and the bare loop (``benchmarks/bare_loop.py``). syncd's and the
bare loop's wall time, CPU seconds (user + sys) and peak RSS come from
``os.wait4`` on the child; the emulators' CPU seconds from ``/proc/<pid>/stat``
before and after each measured step, so a slow emulator cannot hide or fake a
result.

Scenarios:

* end to end: N records in the Salesforce emulator, ``syncd once`` on a fresh
  database (SQLite, and PostgreSQL when a URL is given) reads them all and
  delivers them in batches of 100; then the bare loop does the same work. The
  fresh database is migrated by ``syncd migrate`` before ``syncd once`` and
  ``syncd run`` start, untimed, as the deployment's init container does: the
  measured process finds it at head, as a replica does in production. syncd's
  modules are byte-compiled first, as an installed package is (pip compiles
  on install): an editable checkout run under ``PYTHONDONTWRITEBYTECODE``
  would otherwise compile every module again at every start;
* queued: the SQLite ``leads`` table pre-filled with 100,000 and 1,000,000
  queued leads, ``syncd run`` delivering from it for a bounded time: peak RSS
  must not grow with the queue;
* idle: ``syncd run`` polling an org with nothing new; its CPU over the window.

Usage::

    .venv/bin/python benchmarks/run.py            # full run (about 10-15 minutes)
    .venv/bin/python benchmarks/run.py --quick    # one run, smaller sizes, shorter idle
    .venv/bin/python benchmarks/run.py --json     # JSON on stdout instead of a file

Medians of ``--runs`` runs are reported; each target prints PASS or MISS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from syncd.sandbox.demo_data import bulk_leads, demo_users
from syncd.sandbox.example import example_sync
from syncd.services.org_gate import ORG_QUERY

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
API_KEY = "bench-key"
AGENT = "agt_bench"
BATCH_SIZE = 100
#: syncd's rate limit for the benchmark: its maximum, 1,000 requests/s = 100,000 leads/s,
#: far above what the loopback emulators serve, so it never is the bottleneck.
REQUESTS_PER_SECOND = 1000
PAGE_SIZE = 2000
TICK = os.sysconf("SC_CLK_TCK")

# Targets (docs/performance.md#targets).
TARGET_LEADS_PER_S = 5000
TARGET_RATIO = 2.0
TARGET_RSS_MB = 150
#: PostgreSQL's ``syncd once`` wall time against SQLite's, same records, same run.
TARGET_PG_OVER_SQLITE = 1.5
#: syncd's CPU per lead against the bare loop's, SQLite, ``syncd once``.
TARGET_CPU_RATIO = 4.5
#: Peak RSS of ``syncd once`` and ``syncd run``, each store.
TARGET_E2E_RSS_MB = 130
#: "The same" peak RSS at 100,000 and 1,000,000 queued: within this many MB.
SAME_RSS_MB = 10


# --------------------------------------------------------------------------- processes


@dataclass
class Usage:
    """What one child process cost: wall seconds, CPU seconds, peak RSS and exit status."""

    wall: float
    cpu: float
    rss_mb: float
    status: int
    output: str = field(repr=False, default="")


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "SF_", "SIMZ_"))}


def compile_syncd() -> None:
    """Byte-compile the syncd the children run, as ``pip install`` does for a deployment.

    ``python -m compileall`` writes the files whatever ``PYTHONDONTWRITEBYTECODE``
    says; a module edited later is compiled from source again until the next run.
    """
    where = subprocess.run(
        [PYTHON, "-c", "import pathlib, syncd; print(pathlib.Path(syncd.__file__).parent)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run([PYTHON, "-m", "compileall", "-q", where], check=True)


def run_child(args: list[str], log: Path, timeout: float = 1800) -> Usage:
    """Run ``args`` to completion; its own rusage via ``os.wait4``."""
    with log.open("wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=clean_env())
        return _reap(process, started, log, timeout)


def _reap(process: subprocess.Popen[bytes], started: float, log: Path, timeout: float) -> Usage:
    deadline = started + timeout
    while True:
        pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            pid, status, rusage = os.wait4(process.pid, 0)
            break
        time.sleep(0.01)
    wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
    return Usage(
        wall=wall,
        cpu=rusage.ru_utime + rusage.ru_stime,
        rss_mb=rusage.ru_maxrss / 1024,
        status=process.returncode,
        output=log.read_text(errors="replace"),
    )


class Emulator:
    """``syncd sandbox salesforce|simz`` in its own process; its URL read from its output."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        self._out = log.open("wb")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "syncd", "sandbox", *args],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
        deadline = time.monotonic() + 600
        while True:
            text = log.read_text(errors="replace")
            found = re.search(r"emulator on (\S+)", text)
            if found and (name != "salesforce" or "loaded" in text):
                self.url = found.group(1)
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} emulator did not start:\n{text}")
            time.sleep(0.1)

    def cpu(self) -> float:
        return proc_cpu(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._out.close()


def http_json(url: str, method: str = "GET", ca_file: Path | None = None) -> Any:
    import ssl

    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=120, context=context) as response:
        return json.loads(response.read())


class Org:
    """A Salesforce emulator process holding ``count`` benchmark leads."""

    def __init__(self, work: Path, count: int) -> None:
        self.count = count
        records = work / f"records-{count}.jsonl"
        with records.open("w", encoding="utf-8") as out:
            for user in demo_users().records:
                out.write(json.dumps(user) + "\n")
            # Stamps an hour old, a millisecond apart: all inside the first poll's window
            # (a record stamped "now" by the emulator could fall in the second the poll
            # window stops short of) and ordered as a real backlog would be.
            base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
            for index, record in enumerate(bulk_leads(count)):
                stamp = base + dt.timedelta(milliseconds=index)
                record["SystemModstamp"] = stamp.isoformat(timespec="milliseconds")
                out.write(json.dumps(record) + "\n")
        self.cert_dir = work / f"sf-certs-{count}"
        self.emulator = Emulator(
            "salesforce",
            [
                "salesforce",
                "--port",
                "0",
                "--records",
                str(records),
                "--cert-dir",
                str(self.cert_dir),
            ],
            work / f"salesforce-{count}.log",
        )
        records.unlink()
        self.url = self.emulator.url
        self.ca_file = self.cert_dir / "ca.pem"

    def query_calls(self) -> int:
        """The polls' queries and page fetches served so far (the emulator's query log).

        The org check's query of ``Organization`` (once per process, before any
        delivery: ``syncd.services.org_gate``) is not a poll's and is left out.
        """
        log = http_json(f"{self.url}/__sandbox/query-log", ca_file=self.ca_file)
        return sum(1 for entry in log["queries"] if entry["soql"] != ORG_QUERY)


class Simz:
    """A SimZ emulator process with one agent and unlimited credits."""

    def __init__(self, work: Path) -> None:
        self.emulator = Emulator(
            "simz",
            ["simz", "--port", "0", "--api-key", API_KEY, "--agent", AGENT],
            work / "simz.log",
        )
        self.url = self.emulator.url

    def reset(self) -> None:
        http_json(f"{self.url}/__sandbox/reset", "POST")

    def calls(self) -> tuple[int, int, dict[str, int]]:
        """(API requests, leads received, requests per status) since the last reset."""
        requests = http_json(f"{self.url}/__sandbox/requests")["requests"]
        statuses: dict[str, int] = {}
        leads = 0
        for entry in requests:
            statuses[str(entry["status"])] = statuses.get(str(entry["status"]), 0) + 1
            leads += entry.get("leads") or 0
        return len(requests), leads, statuses


# --------------------------------------------------------------------------- configs and DBs


def syncd_config(
    path: Path, db_url: str, org: Org, simz: Simz, *, start_at: str, every: str = "60s"
) -> Path:
    config = {
        "database": {"url": db_url},
        "salesforce": {
            "auth": {
                "method": "password",
                "username": "sandbox@example.com",
                "password": "sandbox-password",
                "security_token": "sandbox-token",
            },
            "login_url": org.url,
            "ca_bundle": str(org.ca_file),
            "page_size": PAGE_SIZE,
        },
        "simz": {
            "base_url": simz.url,
            "api_key": API_KEY,
            "batch_size": BATCH_SIZE,
            "requests_per_second": REQUESTS_PER_SECOND,
        },
        "syncs": [
            # A backfill of the whole org is the point here, not a blast to stop.
            example_sync(
                "bench",
                schedule={"every": every},
                delivery={"every": "1s"},
                start_at=start_at,
                lag="0s",
                agent=AGENT,
                guard={"max_new_per_poll": None},
            )
        ],
        "observability": {"listen": "127.0.0.1:0", "log_format": "json", "log_level": "info"},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    return path


BARE_SOQL = (
    "SELECT Phone, FirstName, LastName, Email, Company, Owner.Email, DoNotCall, Id, "
    "SystemModstamp FROM Lead WHERE SystemModstamp >= 2020-01-01T00:00:00Z "
    "AND (LeadSource = 'Web' AND IsConverted = false) ORDER BY SystemModstamp, Id"
)


class Database:
    """A fresh, empty syncd database per run: a new SQLite file or a recreated PG database."""

    def __init__(
        self, backend: str, work: Path, postgres_url: str | None, name: str = "syncd_bench"
    ) -> None:
        self.backend = backend
        self.work = work
        self.postgres_url = postgres_url
        self.name = name

    def fresh(self) -> str:
        if self.backend == "sqlite":
            path = self.work / "syncd-e2e.db"
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return f"sqlite:///{path}"
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        assert self.postgres_url is not None
        admin = create_engine(self.postgres_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
                connection.execute(text(f'CREATE DATABASE "{self.name}"'))
        finally:
            admin.dispose()
        return (
            make_url(self.postgres_url)
            .set(database=self.name)
            .render_as_string(hide_password=False)
        )


# --------------------------------------------------------------------------- scenarios


def migrated(url: str, work: Path, org: Org, simz: Simz, name: str) -> Path:
    """The config of a sync over ``org``, its database at ``url`` migrated by ``syncd migrate``.

    Untimed, in a process of its own, as the deployment's init container runs it
    before ``syncd run``; the measured ``once``/``run`` then find the schema at head.
    """
    config = syncd_config(work / name, url, org, simz, start_at="2020-01-01T00:00:00Z")
    done = run_child([PYTHON, "-m", "syncd", "migrate", "-c", str(config)], work / "mig.log")
    if done.status != 0:
        raise RuntimeError(f"syncd migrate failed:\n{done.output}")
    return config


def run_until_delivered(config: Path, log: Path, count: int, timeout: float = 900) -> Usage:
    """``syncd run`` from start until its logs report ``count`` leads accepted.

    Poll and delivery run as the daemon runs them, in their own threads, so
    delivery overlaps the poll. Wall time and CPU are taken at the moment the
    last batch is logged; peak RSS after the SIGTERM exit.
    """
    accepted = 0
    with log.open("wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(
            [PYTHON, "-m", "syncd", "run", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    try:
        with log.open("rb") as reader:
            buffer = b""
            while accepted < count:
                chunk = reader.read()
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if b'"batch sent"' in line:
                        accepted += int(json.loads(line).get("accepted") or 0)
                if accepted >= count:
                    break
                if process.poll() is not None or time.monotonic() - started > timeout:
                    raise RuntimeError(
                        f"syncd run delivered {accepted} of {count}:\n{log.read_text()[-3000:]}"
                    )
                if not chunk:
                    time.sleep(0.05)
        wall = time.monotonic() - started
        cpu = proc_cpu(process.pid)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    final = _reap(process, started, log, 120)
    return Usage(wall=wall, cpu=cpu, rss_mb=final.rss_mb, status=final.status)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def e2e(
    work: Path, org: Org, simz: Simz, database: Database, runs: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """``syncd once`` and the bare loop over the same records, ``runs`` times each."""
    n = org.count
    rows: list[dict[str, Any]] = []
    for number in range(1, runs + 1):
        # syncd
        config = migrated(database.fresh(), work, org, simz, "e2e.yaml")
        simz.reset()
        sf_before, sf_cpu, simz_cpu = org.query_calls(), org.emulator.cpu(), simz.emulator.cpu()
        usage = run_child([PYTHON, "-m", "syncd", "once", "-c", str(config)], work / "once.log")
        sf_cpu, simz_cpu = org.emulator.cpu() - sf_cpu, simz.emulator.cpu() - simz_cpu
        sf_calls = org.query_calls() - sf_before
        simz_calls, received, statuses = simz.calls()
        found = re.search(r"accepted (\d+)", usage.output)
        accepted = int(found.group(1)) if found else 0
        if usage.status != 0 or accepted != n or received != n:
            tail = "\n".join(usage.output.splitlines()[-5:])
            raise RuntimeError(
                f"syncd once exited {usage.status}, accepted {accepted}, SimZ received "
                f"{received} of {n}:\n{tail}"
            )
        # the bare loop, same records, same emulators
        simz.reset()
        bare_sf_cpu, bare_simz_cpu = org.emulator.cpu(), simz.emulator.cpu()
        bare = run_child(
            [
                PYTHON,
                str(HERE / "bare_loop.py"),
                "--login-url",
                org.url,
                "--ca-file",
                str(org.ca_file),
                "--soql",
                BARE_SOQL,
                "--simz-url",
                simz.url,
                "--api-key",
                API_KEY,
                "--agent",
                AGENT,
                "--batch-size",
                str(BATCH_SIZE),
            ],
            work / "bare.log",
        )
        bare_sf_cpu = org.emulator.cpu() - bare_sf_cpu
        bare_simz_cpu = simz.emulator.cpu() - bare_simz_cpu
        _calls, bare_received, _ = simz.calls()
        if bare.status != 0 or bare_received != n:
            raise RuntimeError(f"bare loop failed ({bare_received} of {n}):\n{bare.output[-2000:]}")
        # the daemon: syncd run, poll and delivery overlapping
        config = migrated(database.fresh(), work, org, simz, "e2e-run.yaml")
        simz.reset()
        daemon_usage = run_until_delivered(config, work / "run.log", n)
        daemon_calls, daemon_received, _ = simz.calls()
        row = {
            "run": number,
            "wall": usage.wall,
            "cpu": usage.cpu,
            "rss_mb": usage.rss_mb,
            "sf_cpu": sf_cpu,
            "simz_cpu": simz_cpu,
            "sf_calls": sf_calls,
            "simz_calls": simz_calls,
            "simz_statuses": statuses,
            "bare_wall": bare.wall,
            "bare_cpu": bare.cpu,
            "bare_rss_mb": bare.rss_mb,
            "bare_sf_cpu": bare_sf_cpu,
            "bare_simz_cpu": bare_simz_cpu,
            "run_wall": daemon_usage.wall,
            "run_cpu": daemon_usage.cpu,
            "run_rss_mb": daemon_usage.rss_mb,
            "run_simz_calls": daemon_calls,
            "run_received": daemon_received,
        }
        rows.append(row)
        say(
            f"  {database.backend} {n:>7}: run {number}: syncd {usage.wall:6.2f} s wall, "
            f"{usage.cpu:6.2f} s CPU, {usage.rss_mb:5.1f} MB; bare {bare.wall:6.2f} s wall, "
            f"{bare.cpu:6.2f} s CPU; syncd run {daemon_usage.wall:6.2f} s wall, "
            f"{daemon_usage.cpu:6.2f} s CPU, {daemon_usage.rss_mb:5.1f} MB"
        )

    def m(key: str) -> float:
        return median([float(r[key]) for r in rows])

    wall, cpu, bare_wall, bare_cpu = m("wall"), m("cpu"), m("bare_wall"), m("bare_cpu")
    return {
        "backend": database.backend,
        "records": n,
        "runs": rows,
        "wall_s": wall,
        "leads_per_s": n / wall,
        "cpu_s": cpu,
        "cpu_s_per_1000": cpu / n * 1000,
        "rss_mb": max(r["rss_mb"] for r in rows),
        "sf_emulator_cpu_s": m("sf_cpu"),
        "simz_emulator_cpu_s": m("simz_cpu"),
        "sf_calls": int(m("sf_calls")),
        "sf_calls_per_1000": m("sf_calls") / n * 1000,
        "simz_calls": int(m("simz_calls")),
        "simz_calls_per_1000": m("simz_calls") / n * 1000,
        "bare_wall_s": bare_wall,
        "bare_cpu_s": bare_cpu,
        "bare_rss_mb": max(r["bare_rss_mb"] for r in rows),
        "bare_leads_per_s": n / bare_wall,
        "bare_sf_emulator_cpu_s": m("bare_sf_cpu"),
        "bare_simz_emulator_cpu_s": m("bare_simz_cpu"),
        "ratio_wall": wall / bare_wall,
        "ratio_cpu": cpu / bare_cpu,
        "run_wall_s": m("run_wall"),
        "run_leads_per_s": n / m("run_wall"),
        "run_cpu_s": m("run_cpu"),
        "run_cpu_s_per_1000": m("run_cpu") / n * 1000,
        "run_rss_mb": max(r["run_rss_mb"] for r in rows),
        "run_simz_calls": int(m("run_simz_calls")),
        "run_ratio_wall": m("run_wall") / bare_wall,
        "run_ratio_cpu": m("run_cpu") / bare_cpu,
    }


def prefill(db_path: Path, count: int) -> None:
    """Insert ``count`` queued leads straight into a migrated SQLite file, in one transaction."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    connection = sqlite3.connect(db_path)
    try:
        rows: Iterator[tuple[Any, ...]] = (
            (
                "bench",
                f"00Q8d{index:010d}AAA",
                AGENT,
                "queued",
                json.dumps(
                    {
                        "phoneNumber": f"+1201{2000000 + index:07d}"[:12],
                        "salesforceId": f"00Q8d{index:010d}AAA",
                        "firstName": "Ada",
                        "lastName": "Lovelace",
                        "campaignType": "web-inbound",
                        "email": f"ada.{index}@example.com",
                        "customData": {"company": "Acme Corp", "owner": "ines@example.com"},
                    }
                ),
                f"+1201{2000000 + index:07d}"[:12],
                now,
                hashlib.sha256(str(index).encode()).hexdigest(),
                0,
                now,
                now,
            )
            for index in range(count)
        )
        with connection:
            connection.executemany(
                "INSERT INTO leads (sync_name, salesforce_id, agent_id, state, payload, "
                "phone_e164, record_cursor, record_hash, attempts, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    finally:
        connection.close()


@contextmanager
def daemon(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``syncd run`` until the block ends; SIGTERM then."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PYTHON, "-m", "syncd", "run", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    try:
        deadline = time.monotonic() + 300
        while "syncd started" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"syncd run did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)


def stop_daemon(process: subprocess.Popen[bytes], started: float, log: Path) -> Usage:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return _reap(process, started, log, 120)


def queued(
    work: Path, idle_org: Org, simz: Simz, count: int, seconds: float, say: Callable[[str], None]
) -> dict[str, Any]:
    """Peak RSS of ``syncd run`` delivering from a queue of ``count`` leads for ``seconds``."""
    db_path = work / f"queued-{count}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    config = syncd_config(
        work / "queued.yaml", f"sqlite:///{db_path}", idle_org, simz, start_at="now"
    )
    migrated = run_child([PYTHON, "-m", "syncd", "migrate", "-c", str(config)], work / "mig.log")
    if migrated.status != 0:
        raise RuntimeError(f"syncd migrate failed:\n{migrated.output}")
    filled = time.monotonic()
    prefill(db_path, count)
    filled = time.monotonic() - filled
    simz.reset()
    log = work / f"run-queued-{count}.log"
    started = time.monotonic()
    with daemon(config, log) as process:
        time.sleep(seconds)
        usage = stop_daemon(process, started, log)
    calls, received, _ = simz.calls()
    with sqlite3.connect(db_path) as connection:
        states = dict(connection.execute("SELECT state, COUNT(*) FROM leads GROUP BY state"))
    db_path.unlink(missing_ok=True)
    say(
        f"  queued {count:>9}: peak RSS {usage.rss_mb:5.1f} MB, {received} leads delivered "
        f"in {seconds:.0f} s ({calls} requests); prefill {filled:.1f} s"
    )
    return {
        "queued": count,
        "seconds": seconds,
        "rss_mb": usage.rss_mb,
        "cpu_s": usage.cpu,
        "delivered": received,
        "simz_calls": calls,
        "states_after": states,
        "exit_status": usage.status,
    }


def idle(
    work: Path, idle_org: Org, simz: Simz, seconds: float, say: Callable[[str], None]
) -> dict[str, Any]:
    """CPU of ``syncd run`` over ``seconds`` of polling an org with nothing new (poll every 5s)."""
    db_path = work / "idle.db"
    config = syncd_config(
        work / "idle.yaml",
        f"sqlite:///{db_path}",
        idle_org,
        simz,
        start_at="2020-01-01T00:00:00Z",
        every="5s",
    )
    log = work / "run-idle.log"
    started = time.monotonic()
    sf_before = idle_org.query_calls()
    with daemon(config, log) as process:
        time.sleep(2)  # past start-up (imports, migrations)
        cpu_before = proc_cpu(process.pid)
        time.sleep(seconds)
        cpu = proc_cpu(process.pid) - cpu_before
        usage = stop_daemon(process, started, log)
    polls = log.read_text(errors="replace").count('"poll finished"')
    say(
        f"  idle: {cpu:.2f} s CPU over {seconds:.0f} s ({polls} polls), "
        f"peak RSS {usage.rss_mb:.1f} MB"
    )
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "cpu_percent": cpu / seconds * 100,
        "polls": polls,
        "sf_calls": idle_org.query_calls() - sf_before,
        "rss_mb": usage.rss_mb,
    }


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    model = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": os.getloadavg(),
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, measured: str) -> None:
        checks.append({"target": name, "ok": ok, "measured": measured})

    for row in results["e2e"]:
        n, backend = row["records"], row["backend"]
        label = f"{backend} {n:,}"
        for mode, prefix in (("syncd once", ""), ("syncd run", "run_")):
            if backend == "sqlite":
                rate = row[f"{prefix}leads_per_s"]
                check(
                    f">= {TARGET_LEADS_PER_S:,} leads/s end to end, {mode} ({label})",
                    rate >= TARGET_LEADS_PER_S,
                    f"{rate:,.0f} leads/s",
                )
            check(
                f"wall time <= {TARGET_RATIO:g}x the bare loop, {mode} ({label})",
                row[f"{prefix}ratio_wall"] <= TARGET_RATIO,
                f"{row[f'{prefix}ratio_wall']:.2f}x (CPU {row[f'{prefix}ratio_cpu']:.2f}x)",
            )
            check(
                f"peak RSS < {TARGET_RSS_MB} MB, {mode} ({label})",
                row[f"{prefix}rss_mb"] < TARGET_RSS_MB,
                f"{row[f'{prefix}rss_mb']:.1f} MB",
            )
        limit = math.ceil(n / PAGE_SIZE) + 1
        check(
            f"Salesforce calls per poll <= ceil(n/2000)+1 = {limit} ({label})",
            row["sf_calls"] + 1 <= limit,
            f"{row['sf_calls']} queries/pages + 1 login",
        )
        want = math.ceil(n / BATCH_SIZE)
        check(
            f"SimZ calls == ceil(n/{BATCH_SIZE}) = {want} ({label})",
            row["simz_calls"] == want,
            str(row["simz_calls"]),
        )
    checks += store_targets(results["e2e"])
    queued_rows = results["queued"]
    for row in queued_rows:
        check(
            f"peak RSS < {TARGET_RSS_MB} MB with {row['queued']:,} queued",
            row["rss_mb"] < TARGET_RSS_MB,
            f"{row['rss_mb']:.1f} MB",
        )
    if len(queued_rows) >= 2:
        spread = max(r["rss_mb"] for r in queued_rows) - min(r["rss_mb"] for r in queued_rows)
        check(
            f"peak RSS the same (within {SAME_RSS_MB} MB) for every queue size",
            spread <= SAME_RSS_MB,
            f"spread {spread:.1f} MB",
        )
    return checks


def store_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PostgreSQL against SQLite, CPU per lead against the bare loop, peak RSS per store."""
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, measured: str) -> None:
        checks.append({"target": name, "ok": ok, "measured": measured})

    sqlite_rows = {row["records"]: row for row in rows if row["backend"] == "sqlite"}
    for row in rows:
        n, backend = row["records"], row["backend"]
        label = f"{backend} {n:,}"
        lite = sqlite_rows.get(n)
        if backend == "postgresql" and lite is not None:
            ratio = row["wall_s"] / lite["wall_s"]
            check(
                f"PostgreSQL once wall <= {TARGET_PG_OVER_SQLITE:g}x SQLite's ({n:,})",
                ratio <= TARGET_PG_OVER_SQLITE,
                f"{ratio:.2f}x ({row['wall_s']:.2f} s vs {lite['wall_s']:.2f} s)",
            )
        if backend == "sqlite":
            check(
                f"syncd CPU per lead <= {TARGET_CPU_RATIO:g}x the bare loop's, once ({label})",
                row["ratio_cpu"] <= TARGET_CPU_RATIO,
                f"{row['ratio_cpu']:.2f}x",
            )
        for mode, prefix in (("syncd once", ""), ("syncd run", "run_")):
            check(
                f"peak RSS <= {TARGET_E2E_RSS_MB} MB, {mode} ({label})",
                row[f"{prefix}rss_mb"] <= TARGET_E2E_RSS_MB,
                f"{row[f'{prefix}rss_mb']:.1f} MB",
            )
    return checks


def table(results: dict[str, Any]) -> str:
    lines = []
    mach = results["machine"]
    lines.append(
        f"machine: {mach['cpus_usable']} of {mach['cpus']} CPUs ({mach['cpu_model']}), "
        f"Python {mach['python']}, load average {mach['load_average_start'][0]:.2f} at "
        f"start, {mach['load_average_end'][0]:.2f} at end"
    )
    lines.append(
        f"settings: batch_size {BATCH_SIZE}, page size {PAGE_SIZE}, requests_per_second "
        f"{REQUESTS_PER_SECOND} (= {REQUESTS_PER_SECOND * BATCH_SIZE:,} leads/s; not the "
        f"bottleneck); syncd byte-compiled and databases migrated by `syncd migrate` before "
        f"once/run (untimed); "
        f"median of {results['runs']} run(s)"
    )
    lines.append("")
    lines.append("syncd once (one poll, then one delivery pass), process start to exit:")
    head = (
        f"{'backend':<8} {'records':>9} {'wall s':>7} {'leads/s':>8} {'CPU s/1k':>9} "
        f"{'RSS MB':>7} {'SF emu CPU':>10} {'SimZ emu CPU':>12} {'SF/1k':>6} {'SimZ/1k':>7} "
        f"{'bare wall':>9} {'bare CPU':>8} {'x wall':>6} {'x CPU':>6}"
    )
    lines += [head, "-" * len(head)]
    for row in results["e2e"]:
        lines.append(
            f"{row['backend']:<8} {row['records']:>9,} {row['wall_s']:>7.2f} "
            f"{row['leads_per_s']:>8,.0f} {row['cpu_s_per_1000']:>9.3f} {row['rss_mb']:>7.1f} "
            f"{row['sf_emulator_cpu_s']:>10.2f} {row['simz_emulator_cpu_s']:>12.2f} "
            f"{row['sf_calls_per_1000']:>6.2f} {row['simz_calls_per_1000']:>7.2f} "
            f"{row['bare_wall_s']:>9.2f} {row['bare_cpu_s']:>8.2f} {row['ratio_wall']:>6.2f} "
            f"{row['ratio_cpu']:>6.2f}"
        )
    lines.append("")
    lines.append("syncd run (the daemon: poll and delivery overlap), start to last lead accepted:")
    head = (
        f"{'backend':<8} {'records':>9} {'wall s':>7} {'leads/s':>8} {'CPU s/1k':>9} "
        f"{'RSS MB':>7} {'SimZ/1k':>7} {'x wall':>6} {'x CPU':>6}"
    )
    lines += [head, "-" * len(head)]
    for row in results["e2e"]:
        lines.append(
            f"{row['backend']:<8} {row['records']:>9,} {row['run_wall_s']:>7.2f} "
            f"{row['run_leads_per_s']:>8,.0f} {row['run_cpu_s_per_1000']:>9.3f} "
            f"{row['run_rss_mb']:>7.1f} {row['run_simz_calls'] / row['records'] * 1000:>7.2f} "
            f"{row['run_ratio_wall']:>6.2f} {row['run_ratio_cpu']:>6.2f}"
        )
    for note in results["notes"]:
        lines.append(f"note: {note}")
    lines.append("")
    for row in results["queued"]:
        lines.append(
            f"queued {row['queued']:>9,}: peak RSS {row['rss_mb']:.1f} MB while delivering "
            f"{row['delivered']:,} leads in {row['seconds']:.0f} s"
        )
    if results.get("idle"):
        idle_row = results["idle"]
        lines.append(
            f"idle: {idle_row['cpu_s']:.2f} CPU s over {idle_row['seconds']:.0f} s of polling "
            f"every 5 s ({idle_row['cpu_percent']:.2f}% of one core, {idle_row['polls']} polls)"
        )
    lines.append("")
    for item in results["targets"]:
        lines.append(f"{'PASS' if item['ok'] else 'MISS'}  {item['target']}: {item['measured']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark syncd against the emulators and a bare loop "
        "(method: docs/performance.md#how-it-is-measured)."
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 run, 10,000 records only, 15 s idle"
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per size (default 3; quick 1)")
    parser.add_argument(
        "--sizes", default=None, help="record counts, comma-separated (default 10000,100000)"
    )
    parser.add_argument(
        "--queued",
        default="100000,1000000",
        help="queue sizes for the memory check, comma-separated ('' to skip)",
    )
    parser.add_argument("--idle-seconds", type=float, default=None, help="default 60; quick 15")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("SYNCD_TEST_POSTGRES_URL"),
        help="PostgreSQL server for the PG runs (a database --database-name is recreated on "
        "it); default $SYNCD_TEST_POSTGRES_URL; without one PostgreSQL is skipped",
    )
    parser.add_argument(
        "--database-name",
        default="syncd_bench",
        help="the PostgreSQL database dropped and recreated for each run (default syncd_bench)",
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout (table on stderr)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    sizes = args.sizes if args.sizes is not None else ("10000" if args.quick else "10000,100000")
    args.sizes = [int(s) for s in sizes.split(",") if s]
    args.queued = [int(s) for s in args.queued.split(",") if s]
    if args.idle_seconds is None:
        args.idle_seconds = 15.0 if args.quick else 60.0
    return args


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that the emulators are stopped and the work folder removed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    out = sys.stderr if args.json else sys.stdout

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "machine": machine(),
        "runs": args.runs,
        "quick": args.quick,
        "e2e": [],
        "queued": [],
        "idle": None,
        "notes": [],
    }
    backends = ["sqlite"]
    if args.postgres_url:
        backends.append("postgresql")
        from sqlalchemy import create_engine, text

        probe = create_engine(args.postgres_url)
        try:
            with probe.connect() as connection:
                autovacuum = connection.execute(text("SHOW autovacuum")).scalar()
        finally:
            probe.dispose()
        results["postgres_autovacuum"] = autovacuum
        if autovacuum != "on":
            results["notes"].append(
                "PostgreSQL server has autovacuum off: the leads table has no planner "
                "statistics while it grows, and some queries pick poor plans"
            )
    else:
        results["notes"].append(
            "PostgreSQL skipped: no --postgres-url and no SYNCD_TEST_POSTGRES_URL"
        )
    compile_syncd()
    work_dir = tempfile.mkdtemp(prefix="syncd-bench-")
    work = Path(work_dir)
    say(f"work directory {work}")
    simz = Simz(work)
    emulators: list[Emulator] = [simz.emulator]
    try:
        for size in args.sizes:
            say(f"loading {size:,} records into the Salesforce emulator ...")
            org = Org(work, size)
            emulators.append(org.emulator)
            try:
                for backend in backends:
                    database = Database(backend, work, args.postgres_url, args.database_name)
                    results["e2e"].append(e2e(work, org, simz, database, args.runs, say))
            finally:
                org.emulator.stop()
                emulators.remove(org.emulator)
        idle_org = Org(work, 0)
        emulators.append(idle_org.emulator)
        for count in args.queued:
            results["queued"].append(
                queued(work, idle_org, simz, count, 10.0 if args.quick else 20.0, say)
            )
        if args.idle_seconds > 0:
            results["idle"] = idle(work, idle_org, simz, args.idle_seconds, say)
            if args.idle_seconds < 60:
                results["notes"].append(
                    f"idle CPU measured over {args.idle_seconds:.0f} s, not 60 s (quick mode)"
                )
    finally:
        for emulator in emulators:
            emulator.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    results["machine"]["load_average_end"] = os.getloadavg()
    results["targets"] = targets(results)
    print(table(results), file=out, flush=True)
    text = json.dumps(results, indent=2, default=str)
    if args.json:
        print(text)
    else:
        folder = HERE / "results"
        folder.mkdir(exist_ok=True)
        name = dt.date.today().isoformat() + ("-quick" if args.quick else "") + ".json"
        (folder / name).write_text(text + "\n", "utf-8")
        print(f"\nresults written to {folder / name}", file=out)
    return 0 if all(item["ok"] for item in results["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
