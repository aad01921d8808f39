"""Call-outcome hook throughput: hooks/s held, CPU per hook, processing lag, Task write-back.

A fresh ``syncd run`` (a subprocess, SQLite) runs with ``simz.webhook`` on and
``call_writeback: {mode: tasks}`` against the Salesforce and SimZ emulators,
both in this process. ``--leads`` Lead records are seeded and delivered to
SimZ (the emulator's own call-backs are off). Then a load generator posts one
hook per accepted lead to the daemon's receiver at ``--rate`` per second: the
example payload of docs/call-outcomes.md, carrying the ``customData`` each lead
was sent with, from ``--workers`` connections.

Measured:

* ``held``: hooks answered 2xx per second of posting, against the target rate;
  every hook must be answered 2xx (a receiver answers after its commit);
* ``answer_ms`` p50/p99: how long the receiver took to answer a hook;
* ``cpu_ms_per_hook``: the daemon's CPU time (user + system, /proc) over the
  posting and processing, less its idle CPU over as long, divided by the hooks;
* ``lag`` p50/p95/max: receipt to the call outcome row
  (``call_events.processed_at - received_at``);
* ``tasks``: call outcomes written back as a Task, and receipt to Task written
  (``call_outcomes.written_at - received_at``).

It prints numbers and ratios, as the other benchmarks do, and asserts nothing
about timings; it exits 1 if a hook was refused or lost, or if an outcome or
Task did not appear within ``--patience`` seconds.

Usage::

    .venv/bin/python benchmarks/bench_hooks.py                 # 2,000 leads, 200 hooks/s
    .venv/bin/python benchmarks/bench_hooks.py --quick         # 500 leads, 100 hooks/s
    .venv/bin/python benchmarks/bench_hooks.py --rate 500 --workers 16
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from syncd.entrypoints.demo_calls import free_loopback_port, webhook_section
from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.sandbox.simz import SimzEmulator
from syncd.sandbox.simz_calls import CallSettings, example_payload

API_KEY = "hooks-bench-key"
AGENT = "agt_hooks"
#: CPU clock ticks per second, for /proc/<pid>/stat.
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def lead(n: int, stamp: datetime) -> dict[str, Any]:
    """A valid Lead with its own fictional number (555-01xx lines and area codes 2xx-9xx)."""
    area = 201 + (n // 10_000)
    return {
        "sobject": "Lead",
        "FirstName": f"Hook{n}",
        "LastName": "Bench",
        "Company": "Acme",
        "Phone": f"+1 {area} 555 {n % 10_000:04d}",
        "CreatedDate": stamp.isoformat(),
        "SystemModstamp": stamp.isoformat(),
    }


def config(tmp: Path, sf: SalesforceEmulator, simz: SimzEmulator, port: int) -> Path:
    start = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    sync: dict[str, Any] = {
        "name": "hooks",
        "object": "Lead",
        # One poll at the start: a poll re-reads its lookback (every seeded record), and
        # its CPU would count as the idle daemon's and blur the CPU per hook.
        "schedule": {"every": "10m"},
        "delivery": {"every": "1s"},
        "start_at": start.isoformat(),
        "lookback": "15m",
        "agent": AGENT,
        "mapping": {"phoneNumber": "Phone", "firstName": "FirstName", "lastName": "LastName"},
        "rules": {"duplicate_phone_window": "0s"},
        "guard": {"max_new_per_poll": None},
        "call_writeback": {"mode": "tasks"},
    }
    document = {
        "database": {"url": f"sqlite:///{tmp / 'syncd.db'}"},
        "salesforce": {
            "auth": {
                "method": "password",
                "username": sf.username,
                "password": sf.password,
                "security_token": sf.security_token,
            },
            "login_url": sf.url,
            "ca_bundle": str(sf.ca_file),
        },
        "simz": {
            "base_url": simz.url,
            "api_key": API_KEY,
            "batch_size": 100,
            "requests_per_second": 100,
            "webhook": webhook_section(port),
        },
        "syncs": [sync],
        "observability": {"listen": "127.0.0.1:0", "log_format": "json", "log_level": "info"},
        "daemon": {"shutdown_grace": "10s"},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_for(
    what: str, condition: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise RuntimeError(f"syncd exited with {process.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {timeout:.0f} s for {what} in vain")
        time.sleep(0.1)


def listening(port: int) -> bool:
    try:
        httpx.post(f"http://127.0.0.1:{port}/", content=b"{}", timeout=1)
    except httpx.HTTPError:
        return False
    return True


@dataclass
class Posted:
    """What the load generator saw."""

    statuses: dict[int | str, int] = field(default_factory=dict)
    answers: list[float] = field(default_factory=list)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, status: int | str, took: float) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.answers.append(took)

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if isinstance(s, int) and s < 300)


def hook_bodies(simz: SimzEmulator, seed: int) -> list[bytes]:
    """One example payload per accepted lead, with the customData it was sent with."""
    rng = random.Random(seed)
    settings = CallSettings()
    bodies = []
    for entry in simz.received():
        if entry["accepted"]:
            payload = example_payload(rng, settings, entry["batchId"], entry["lead"], (None, None))
            bodies.append(json.dumps(payload, separators=(",", ":")).encode())
    return bodies


def post_all(url: str, bodies: list[bytes], rate: float, workers: int) -> Posted:
    """Post ``bodies`` at ``rate`` per second from ``workers`` threads, one try each."""
    posted = Posted()
    started = time.monotonic()
    slots = iter(range(len(bodies)))
    slot_lock = threading.Lock()

    def work() -> None:
        headers = {"Content-Type": "application/json"}
        with httpx.Client(timeout=10, headers=headers) as client:
            while True:
                with slot_lock:
                    n = next(slots, None)
                if n is None:
                    return
                pause = started + n / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                sent = time.monotonic()
                try:
                    status: int | str = client.post(url, content=bodies[n]).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                posted.note(status, time.monotonic() - sent)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    posted.seconds = time.monotonic() - started
    return posted


def _stamp(value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def db_counts(db: Path) -> tuple[int, int]:
    """(call outcomes, outcomes written back as a Task)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        outcomes = conn.execute("SELECT COUNT(*) FROM call_outcomes").fetchone()[0]
        tasks = conn.execute(
            "SELECT COUNT(*) FROM call_outcomes WHERE task_id IS NOT NULL"
        ).fetchone()[0]
    return int(outcomes), int(tasks)


def db_lags(db: Path) -> tuple[list[float], list[float]]:
    """Seconds from receipt to the outcome row, and from receipt to the Task written."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        processed = conn.execute(
            "SELECT received_at, processed_at FROM call_events WHERE processed_at IS NOT NULL"
        ).fetchall()
        written = conn.execute(
            "SELECT received_at, written_at FROM call_outcomes WHERE written_at IS NOT NULL"
        ).fetchall()
    lag = [(_stamp(b) - _stamp(a)).total_seconds() for a, b in processed]
    task = [(_stamp(b) - _stamp(a)).total_seconds() for a, b in written]
    return lag, task


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Result:
    leads: int
    rate: float
    posted: Posted
    cpu: float
    idle_cpu_per_s: float
    outcomes: int
    tasks: int
    lag: list[float]
    task_lag: list[float]

    def lines(self) -> list[str]:
        posted, hooks = self.posted, len(self.posted.answers)
        held = posted.ok / posted.seconds if posted.seconds else 0.0
        per_hook = 1000 * self.cpu / hooks if hooks else float("nan")
        answers = [1000 * a for a in posted.answers]
        return [
            f"hooks: leads={self.leads} posted={hooks} ok={posted.ok} statuses={posted.statuses}",
            f"hooks: target={self.rate:g}/s held={held:.1f}/s ratio={held / self.rate:.2f} "
            f"answer_ms p50={pct(answers, 0.5):.1f} p99={pct(answers, 0.99):.1f}",
            f"hooks: cpu_ms_per_hook={per_hook:.2f} (idle daemon "
            f"{1000 * self.idle_cpu_per_s:.1f} ms CPU/s subtracted)",
            f"hooks: outcomes={self.outcomes} lag_s p50={pct(self.lag, 0.5):.3f} "
            f"p95={pct(self.lag, 0.95):.3f} max={max(self.lag, default=float('nan')):.3f}",
            f"hooks: tasks={self.tasks} task_lag_s p50={pct(self.task_lag, 0.5):.3f} "
            f"p95={pct(self.task_lag, 0.95):.3f} ratio_tasks_per_outcome="
            f"{self.tasks / self.outcomes if self.outcomes else 0:.2f}",
        ]

    @property
    def failed(self) -> bool:
        hooks = len(self.posted.answers)
        return self.posted.ok != hooks or self.outcomes < hooks or self.tasks < hooks


def run(leads: int, rate: float, workers: int, patience: float) -> Result:
    with tempfile.TemporaryDirectory(prefix="syncd-bench-hooks-") as folder:
        tmp = Path(folder)
        sf = SalesforceEmulator(cert_dir=tmp / "sf-certs")
        sf.start()
        simz = SimzEmulator(api_key=API_KEY, agents=[AGENT], calls=CallSettings(enabled=False))
        simz.start()
        stamp = datetime.now(UTC) - timedelta(minutes=2)
        sf.add_records([lead(n, stamp) for n in range(leads)], publish=False)
        port = free_loopback_port()
        path = config(tmp, sf, simz, port)
        token = yaml.safe_load(path.read_text())["simz"]["webhook"]["token"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "SF_", "SIMZ_"))}
        log = tmp / "syncd.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "syncd", "run", "-c", str(path)],
                cwd=tmp,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            return _measure(process, tmp, simz, port, token, leads, rate, workers, patience)
        except RuntimeError as exc:
            print(f"hooks: {exc}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            raise
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            simz.stop()
            sf.stop()


def _measure(
    process: subprocess.Popen[bytes],
    tmp: Path,
    simz: SimzEmulator,
    port: int,
    token: str,
    leads: int,
    rate: float,
    workers: int,
    patience: float,
) -> Result:
    db = tmp / "syncd.db"

    def delivered() -> bool:
        return sum(1 for e in simz.received() if e["accepted"]) >= leads

    wait_for(f"{leads} leads at SimZ", delivered, process, patience)
    wait_for(f"a receiver on 127.0.0.1:{port}", lambda: listening(port), process, 10)
    time.sleep(2.0)  # the last batch's write-backs: not hook work
    idle_start, idle_at = cpu_seconds(process.pid), time.monotonic()
    time.sleep(3.0)
    idle_per_s = (cpu_seconds(process.pid) - idle_start) / (time.monotonic() - idle_at)
    bodies = hook_bodies(simz, seed=leads)
    cpu_before, began = cpu_seconds(process.pid), time.monotonic()
    posted = post_all(f"http://127.0.0.1:{port}/hooks/simz/{token}", bodies, rate, workers)

    def done() -> bool:
        return db_counts(db)[1] >= posted.ok

    try:
        wait_for("every Task written", done, process, patience)
    except RuntimeError as exc:
        print(f"hooks: {exc}", file=sys.stderr)
    busy = cpu_seconds(process.pid) - cpu_before
    cpu = max(0.0, busy - idle_per_s * (time.monotonic() - began))
    outcomes, tasks = db_counts(db)
    lag, task_lag = db_lags(db)
    return Result(leads, rate, posted, cpu, idle_per_s, outcomes, tasks, lag, task_lag)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="500 leads at 100 hooks/s")
    parser.add_argument("--leads", type=int, default=None, help="leads, one hook each")
    parser.add_argument("--rate", type=float, default=None, help="hooks per second to post")
    parser.add_argument("--workers", type=int, default=8, help="connections posting hooks")
    parser.add_argument("--patience", type=float, default=120.0, help="seconds to wait per step")
    args, _unknown = parser.parse_known_args(argv)  # `make bench` passes run.py's options too
    leads = args.leads or (500 if args.quick else 2000)
    rate = args.rate or (100.0 if args.quick else 200.0)
    try:
        result = run(leads, rate, args.workers, args.patience)
    except RuntimeError as exc:
        print(f"hooks: FAILED: {exc}")
        return 1
    for line in result.lines():
        print(line, flush=True)
    print(f"hooks: median answer {statistics.median(result.posted.answers or [0]) * 1000:.1f} ms")
    if result.failed:
        print("hooks: FAILED: a hook was refused or lost, or an outcome or Task is missing")
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
