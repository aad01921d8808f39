"""Latency from a new Salesforce record to SimZ, and what it costs: stream mode against poll mode.

For each mode a fresh ``syncd run`` (a subprocess, SQLite) runs against the
Salesforce emulator (HTTPS and the Pub/Sub API over gRPC/TLS) and the SimZ
emulator, both in this process. Records are created at a steady rate; for each
one the latency is the time from the create call returning to the SimZ
emulator receiving the lead. Salesforce REST API calls (queries, logins are
not counted) are measured over the run and scaled to an hour. The daemon's
peak resident memory (VmHWM) is read before it stops.

Modes (delivery at its defaults: a 5 s tick, woken within 100 ms when leads
are queued; the stream's batch window from 100 ms up to ``max_linger`` 1 s):

* ``stream``        -- ``source.mode: stream`` at the run's rate (20 records/s);
* ``stream-sparse`` -- the stream at 1 record every 10 s;
* ``stream-burst``  -- the stream taking 2,000 records created at once (memory);
* ``poll``          -- polling with the defaults (every 60 s, lag 15 s);
* ``poll-5s``       -- polling every 5 s (lag 15 s).

Targets (PASS/MISS): a sustained stream p99 <= 1.5 s and at most 3,600 API calls
an hour; a sparse stream p50 <= 0.5 s; poll p99 <= every + lag + 1.5 s.

Speed to lead adds up: after each run the leads' own moments are read from the
run's database, and for every record the stages from its CreatedDate to the
request that carried it (read + queued + sent, i.e. ``sent_at - CreatedDate``)
are compared with the latency measured here (create returned -> SimZ received);
``stages:`` prints the max and p95 of the difference, PASS within 50 ms.
``api_calls_per_hour`` scales every call of the run, start-up reads included;
``sustained_api_calls_per_hour`` only those of the flow after its first
:data:`WARMUP` seconds: the hourly cost of a flow that goes on (the target).

Usage::

    .venv/bin/python benchmarks/latency.py            # 20 records/s for 60 s per mode
    .venv/bin/python benchmarks/latency.py --quick    # 10 records/s for 15 s per mode
    .venv/bin/python benchmarks/latency.py --modes stream,stream-sparse
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers
import sqlalchemy as sa
import yaml

from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.sandbox.simz import SimzEmulator

API_KEY = "latency-key"
AGENT = "agt_latency"


@dataclass(frozen=True)
class Mode:
    name: str
    source: dict[str, Any]
    every: float  # the poll interval, seconds
    lag: float
    #: Records per second and seconds of creation, when the mode sets its own.
    rate: float | None = None
    seconds: float | None = None
    #: Create every record at once (a burst), not at ``rate``.
    burst: int | None = None

    @property
    def streamed(self) -> bool:
        return self.source.get("mode") == "stream"

    @property
    def target(self) -> list[tuple[str, str, float]]:
        """(what, measure, limit): a latency percentile in seconds or API calls an hour."""
        if self.burst is not None:
            return []
        if self.name == "stream-sparse":
            return [("p50", "p50", 0.5)]
        if self.streamed:
            return [("p99", "p99", 1.5), ("sustained_api_calls_per_hour", "calls", 3600.0)]
        return [("p99", "p99", self.every + self.lag + 1.5)]


MODES = [
    Mode("stream", {"mode": "stream"}, 600.0, 15.0),
    Mode("stream-sparse", {"mode": "stream"}, 600.0, 15.0, rate=0.1, seconds=120.0),
    Mode("stream-burst", {"mode": "stream"}, 600.0, 15.0, burst=2000),
    Mode("poll", {"mode": "poll"}, 60.0, 15.0),
    Mode("poll-5s", {"mode": "poll"}, 5.0, 15.0),
]


@dataclass
class Outcome:
    mode: Mode
    latencies: list[float]
    created: int
    api_calls_per_hour: float
    lost: int
    peak_rss_mb: float | None = None
    #: API calls an hour over the steady flow (after :data:`WARMUP`), where there is one.
    sustained_per_hour: float | None = None
    #: Per record, |sum of its speed-to-lead stages (created -> sent) - measured latency|.
    stage_gaps: list[float] | None = None

    def stages_line(self) -> str:
        """How far the stages stored on each lead are from the latency measured here."""
        gaps = sorted(self.stage_gaps or [])
        if not gaps:
            return f"stages: mode={self.mode.name} no lead with its moments: MISS"
        p95 = gaps[min(len(gaps) - 1, max(0, math.ceil(0.95 * len(gaps)) - 1))]
        verdict = "PASS" if gaps[-1] <= STAGE_TOLERANCE else "MISS"
        return (
            f"stages: mode={self.mode.name} leads={len(gaps)} "
            f"max_gap_ms={gaps[-1] * 1000:.1f} p95_gap_ms={p95 * 1000:.1f} "
            f"(created -> sent vs measured, within {STAGE_TOLERANCE * 1000:.0f} ms): {verdict}"
        )

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return math.inf
        index = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
        return ordered[index]

    def line(self) -> str:
        return (
            f"latency: mode={self.mode.name} p50={self.percentile(0.50):.2f}s "
            f"p95={self.percentile(0.95):.2f}s p99={self.percentile(0.99):.2f}s "
            f"max={self.percentile(1.0):.2f}s api_calls_per_hour={round(self.api_calls_per_hour)} "
            f"sustained_api_calls_per_hour={_count(self.sustained_per_hour)} "
            f"records={self.created} peak_rss_mb={_mb(self.peak_rss_mb)}"
        )

    def measured(self, key: str) -> float:
        if key == "calls":
            return math.inf if self.sustained_per_hour is None else self.sustained_per_hour
        return self.percentile({"p50": 0.5, "p99": 0.99}[key])


def _count(value: float | None) -> str:
    return "n/a" if value is None else str(round(value))


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM), from /proc; None where there is no /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _us_area_codes() -> list[int]:
    """Area codes phonenumbers takes for valid US numbers (555 exchange), in order."""
    return [
        area
        for area in range(201, 1000)
        if phonenumbers.region_code_for_number(phonenumbers.parse(f"+1 {area} 555 0123")) == "US"
        and phonenumbers.is_valid_number(phonenumbers.parse(f"+1 {area} 555 0123"))
    ]


AREAS = _us_area_codes()


def lead(n: int) -> dict[str, Any]:
    """A valid Lead with its own fictional US number (unique for n below 10,000 * len(AREAS))."""
    return {
        "sobject": "Lead",
        "FirstName": f"Lat{n}",
        "LastName": "Bench",
        "Company": "Acme",
        "Phone": f"+1 {AREAS[(n // 10_000) % len(AREAS)]} 555 {n % 10_000:04d}",
    }


def config(tmp: Path, sf: SalesforceEmulator, simz: SimzEmulator, mode: Mode) -> Path:
    sync: dict[str, Any] = {
        "name": "latency",
        "object": "Lead",
        "schedule": {"every": f"{int(mode.every)}s"},
        "start_at": "now",
        "agent": AGENT,
        "source": mode.source,
        "mapping": {"phoneNumber": "Phone", "firstName": "FirstName", "lastName": "LastName"},
        "rules": {"duplicate_phone_window": "0s"},
        # 20 new records a second for a minute is a mass import to the blast-radius
        # guard (1,000 per 10-minute window by default for a stream): latency, not
        # the guard, is measured here.
        "guard": {"max_new_per_poll": None},
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
            "pubsub_url": sf.pubsub_address,
        },
        "simz": {"base_url": simz.url, "api_key": API_KEY},
        "syncs": [sync],
        "observability": {"listen": "127.0.0.1:0", "log_format": "json", "log_level": "info"},
        "daemon": {"shutdown_grace": "10s"},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
    return path


def wait_for_log(log: Path, event: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"syncd exited with {process.returncode}: {log.read_text()[-2000:]}")
        for line in log.read_text(errors="replace").splitlines():
            try:
                if json.loads(line).get("event") == event:
                    return
            except ValueError:
                continue
        time.sleep(0.1)
    raise RuntimeError(f"no {event!r} within {timeout:.0f}s: {log.read_text()[-2000:]}")


def measure(mode: Mode, rate: float, seconds: float, offset: int) -> Outcome:
    """One mode: a fresh daemon, records at ``rate`` per second for ``seconds``."""
    with tempfile.TemporaryDirectory(prefix=f"syncd-latency-{mode.name}-") as folder:
        tmp = Path(folder)
        sf = SalesforceEmulator(cert_dir=tmp / "sf-certs")
        sf.start()
        simz = SimzEmulator(api_key=API_KEY, agents=[AGENT])
        simz.start()
        log = tmp / "syncd.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "SF_", "SIMZ_"))}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "syncd", "run", "-c", str(config(tmp, sf, simz, mode))],
                cwd=tmp,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_log(log, "syncd started", process, 60)
            if mode.streamed:
                wait_for_log(log, "stream connected", process, 60)
                # A first start reads the gap since it started (at LATEST): not counted.
                wait_for_log(log, "stream gap reconciled", process, 60)
            time.sleep(1.0)  # the first poll (at start) is done: its calls are not counted
            calls_before, _ = sf.api_usage()
            started = time.monotonic()
            made = create(sf, mode, rate, seconds, offset)
            created = made.at
            patience = mode.every + mode.lag + 30.0
            deadline = time.monotonic() + patience
            while time.monotonic() < deadline:
                if set(created) <= set(simz.received_counts()):
                    break
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            calls_after, _ = sf.api_usage()
            peak = peak_rss_mb(process.pid)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            simz.stop()
            sf.stop()
        first_seen: dict[str, float] = {}
        for entry in simz.received():
            sf_id = entry.get("salesforceId")
            if sf_id in created and sf_id not in first_seen:
                first_seen[sf_id] = datetime.fromisoformat(entry["receivedAt"]).timestamp()
        latencies = {i: first_seen[i] - created[i] for i in created if i in first_seen}
        gaps = stage_gaps(tmp / "syncd.db", latencies)
        per_hour = (calls_after - calls_before) * 3600.0 / elapsed
        lost = len(created) - len(first_seen)
        return Outcome(
            mode,
            list(latencies.values()),
            len(created),
            per_hour,
            lost,
            peak,
            made.sustained_per_hour,
            gaps,
        )


#: The most the stages stored on a lead may differ from the latency measured here.
STAGE_TOLERANCE = 0.050


def stage_gaps(database: Path, latencies: dict[str, float]) -> list[float]:
    """|(sent_at - CreatedDate) - measured latency| of every measured lead with both moments.

    The stages read, queued and sent are consecutive, so their sum is sent_at -
    CreatedDate; the emulator's receipt is the send, and its CreatedDate the create.
    """
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT salesforce_id, record_created_at, read_at, queued_at, sent_at "
                    "FROM leads WHERE record_created_at IS NOT NULL AND read_at IS NOT NULL "
                    "AND queued_at IS NOT NULL AND sent_at IS NOT NULL"
                )
            ).all()
    finally:
        engine.dispose()
    gaps = []
    for sf_id, created, read, queued, sent in rows:
        if sf_id not in latencies:
            continue
        moments = [_stored_time(value) for value in (created, read, queued, sent)]
        stages = sum(b - a for a, b in itertools.pairwise(moments))
        gaps.append(abs(stages - latencies[sf_id]))
    return gaps


def _stored_time(value: str | datetime) -> float:
    """A UTC time as SQLite stores it (naive text), in epoch seconds."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC).timestamp()


#: Seconds of a steady flow before its API calls count as sustained: the stream's window
#: has grown, and the one-off reads of a start (the catch-up poll) are behind.
WARMUP = 10.0


@dataclass
class Created:
    """The records created (Salesforce Id -> when its create returned), and the API calls of
    the flow after :data:`WARMUP` (None for a burst or a flow too short to have one)."""

    at: dict[str, float]
    sustained_per_hour: float | None = None


def create(sf: SalesforceEmulator, mode: Mode, rate: float, seconds: float, offset: int) -> Created:
    """Create the mode's records: all at once (a burst) or one by one at ``rate``."""
    if mode.burst is not None:
        ids = sf.add_records([lead(offset + n) for n in range(mode.burst)])
        return Created(dict.fromkeys(ids, time.time()))
    created = Created({})
    started = time.monotonic()
    mark: tuple[float, int] | None = None
    for n in range(int(rate * seconds)):
        pause = started + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if mark is None and seconds > 2 * WARMUP and n / rate >= WARMUP:
            mark = (time.monotonic(), sf.api_usage()[0])
        [record_id] = sf.add_records([lead(offset + n)])
        created.at[record_id] = time.time()
    if mark is not None:
        calls = sf.api_usage()[0] - mark[1]
        created.sustained_per_hour = calls * 3600.0 / (time.monotonic() - mark[0])
    return created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="10 records/s for 15 s per mode")
    parser.add_argument("--rate", type=float, default=None, help="records per second")
    parser.add_argument("--seconds", type=float, default=None, help="creation time per mode")
    parser.add_argument("--modes", default=",".join(m.name for m in MODES))
    args, _unknown = parser.parse_known_args(argv)  # `make bench` passes run.py's options too
    rate = args.rate or (10.0 if args.quick else 20.0)
    seconds = args.seconds or (15.0 if args.quick else 60.0)
    wanted = [m for m in MODES if m.name in args.modes.split(",")]
    outcomes = []
    for number, mode in enumerate(wanted):
        mode_rate = mode.rate or rate
        mode_seconds = mode.seconds or seconds
        if args.quick and mode.seconds is not None:
            mode_seconds = mode.seconds / 2
        outcome = measure(mode, mode_rate, mode_seconds, offset=number * 10_000)
        outcomes.append(outcome)
        print(outcome.line(), flush=True)
        print(outcome.stages_line(), flush=True)
        if outcome.lost:
            print(f"latency: mode={mode.name} LOST {outcome.lost} of {outcome.created}")
    missed = sum(outcome.stages_line().endswith("MISS") for outcome in outcomes)
    for outcome in outcomes:
        for label, key, limit in outcome.mode.target:
            value = outcome.measured(key)
            verdict = "PASS" if value <= limit and not outcome.lost else "MISS"
            missed += verdict == "MISS"
            unit = "" if key == "calls" else "s"
            print(
                f"target: mode={outcome.mode.name} {label} <= {limit:g}{unit}: {verdict} "
                f"({value:.2f}{unit})"
            )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
