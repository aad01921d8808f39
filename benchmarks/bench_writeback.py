"""Write-back cost: Salesforce API calls per 1,000 leads, and delivery with write-back on vs off.

Both emulators run in their own processes (``syncd sandbox salesforce|simz``),
so their CPU is not charged to syncd. Three measurements:

* calls: 1,000 accepted leads queued for write-back, drained by the writer;
  the Salesforce emulator's write log counts the sObject Collections calls
  (expected ceil(1000 / 200) = 5);
* the hot path: the accept move of a 100-lead batch with write-back off and
  on (one more ``INSERT ... SELECT`` when on), median milliseconds;
* throughput: N queued leads delivered to SimZ (batches of 100) on a fresh
  SQLite database, in modes whose order rotates run by run:

  - ``off``: no sync writes back;
  - ``on``: each state change also queues its write-back, and the writer runs
    in a thread of its own, every 0.2 s, as the daemon's job would (it gives
    way while the delivery pass is sending and using the CPU:
    syncd/services/delivery_activity.py);
  - ``on-paced``: the same with the give-way limit at 0, i.e. what a pass longer
    than the limit (30 s) sees: write-back sends during the pass, paced to its
    share of the time.

  Twice: CPU-bound (SimZ on loopback, 1,000 requests/s allowed: the worst case
  for sharing the process), and at SimZ's default rate limit (5 requests/s),
  as the daemon delivers. Delivery leads/s (median, min, max), syncd's CPU per
  lead while delivering, the ratios to ``off``, the write-back calls made while
  delivery was sending, and when the last write-back was done.

Targets: no write-back call while a CPU-bound delivery pass is sending, and
at the default rate limit ``on`` / ``off`` >= 0.98 (there write-back does send
during the pass: the process's CPU is idle while delivery waits for the rate
limit). The CPU-bound ratio is printed too: there, the write-back row that each
state change adds in its own transaction costs a few microseconds of CPU per
lead.

Usage::

    .venv/bin/python benchmarks/bench_writeback.py --quick   # 2,000 leads, one run
    .venv/bin/python benchmarks/bench_writeback.py           # 20,000 leads x 5, 3,000 x 3 rated
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.run import Emulator, http_json
from syncd.adapters import outbox
from syncd.adapters import writeback_store as store
from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.migrate import upgrade
from syncd.adapters.orm import Lead, LeadTransition, Writeback
from syncd.adapters.salesforce import SalesforceSource
from syncd.adapters.simz import SimzClient
from syncd.config.models import SalesforceConfig, SimzConfig, SyncConfig
from syncd.domain.states import LeadState
from syncd.logs import configure_logging
from syncd.sandbox.demo_data import bulk_leads
from syncd.services.deliver import deliver_sync
from syncd.services.delivery_activity import GiveWay
from syncd.services.writeback import Writer

API_KEY = "bench-key"
AGENT = "agt_bench"
FIELDS = (
    "Lead.SimZ_Status__c:picklist:40",
    "Lead.SimZ_Batch_Id__c:string:255",
    "Lead.SimZ_Sent_At__c:datetime",
    "Lead.SimZ_Error__c:string:255",
)
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
#: Seconds between write-back passes in the throughput runs. The daemon runs the job
#: every ``delivery.every`` (default 5 s); shorter here, so that the writer is
#: always ready to send while delivery runs: the worst case for delivery.
WRITEBACK_EVERY = 0.2
MODES = ("off", "on", "on-paced")
#: SimZ's default ``requests_per_second``: delivery as the daemon runs it.
DEFAULT_RPS = 5.0
RATED_LEADS = 3000
#: The least ``on`` / ``off`` ratio at the default rate limit called "no drop".
TARGET_RATIO = 0.98


def sync_config() -> SyncConfig:
    return SyncConfig.model_validate(
        {
            "name": "bench",
            "agent": AGENT,
            "mapping": {"phoneNumber": "Phone"},
            "writeback": {
                "fields": {
                    "status": "SimZ_Status__c",
                    "batch_id": "SimZ_Batch_Id__c",
                    "sent_at": "SimZ_Sent_At__c",
                    "error": "SimZ_Error__c",
                }
            },
        }
    )


class Org:
    """The Salesforce emulator process with ``count`` leads and the write-back fields."""

    def __init__(self, work: Path, count: int) -> None:
        records = work / "records.jsonl"
        with records.open("w", encoding="utf-8") as out:
            for record in bulk_leads(count):
                out.write(json.dumps(record) + "\n")
        args = ["salesforce", "--port", "0", "--records", str(records)]
        args += ["--cert-dir", str(work / "sf-certs")]
        for spec in FIELDS:
            args += ["--custom-field", spec]
        self.emulator = Emulator("salesforce", args, work / "salesforce.log")
        self.url = self.emulator.url
        self.ca_file = work / "sf-certs" / "ca.pem"
        self.config = SalesforceConfig.model_validate(
            {
                "auth": {
                    "method": "password",
                    "username": "sandbox@example.com",
                    "password": "sandbox-password",
                    "security_token": "sandbox-token",
                },
                "login_url": self.url,
                "ca_bundle": str(self.ca_file),
            }
        )
        source = SalesforceSource(self.config)
        try:
            self.leads = [
                (str(r["Id"]), str(r["Phone"]))
                for page in source.query_pages("SELECT Id, Phone FROM Lead ORDER BY Id")
                for r in page
            ]
        finally:
            source.close()

    def writes(self) -> int:
        return len(http_json(f"{self.url}/__sandbox/write-log", ca_file=self.ca_file)["writes"])


def fresh_database(work: Path, name: str, org: Org, count: int) -> sessionmaker[Session]:
    """A migrated SQLite file with ``count`` queued leads for the org's records."""
    engine = make_engine(f"sqlite:///{work / name}")
    upgrade(engine)
    factory = make_session_factory(engine)
    rows: list[dict[str, Any]] = []
    for n, (sf_id, _phone) in enumerate(org.leads[:count]):
        e164 = f"+1202{n // 10_000 % 800 + 200:03d}{n % 10_000:04d}"
        rows.append(
            {
                "sync_name": "bench",
                "salesforce_id": sf_id,
                "agent_id": AGENT,
                "state": "queued",
                "payload": {"phoneNumber": e164, "salesforceId": sf_id},
                "phone_e164": e164,
                "record_cursor": T0,
                "record_hash": hashlib.sha256(sf_id.encode()).hexdigest(),
                "attempts": 0,
                "created_at": T0,
                "updated_at": T0,
            }
        )
    with factory.begin() as session:
        session.execute(insert(Lead), rows)
        ids = list(session.scalars(select(Lead.id)))
        session.execute(
            insert(LeadTransition),
            [
                {"lead_id": i, "from_state": None, "to_state": "queued", "reason": "new", "at": T0}
                for i in ids
            ],
        )
    return factory


def pending(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(Writeback).where(Writeback.status != "done")
            )
            or 0
        )


def claim(session: Session, limit: int) -> outbox.Claim:
    """Claim the next ``limit`` queued leads of the benchmark's sync."""
    found = outbox.claim(
        session,
        sync_name="bench",
        agent_id=AGENT,
        credential="k",
        limit=limit,
        now=T0,
        worker=None,
    )
    assert found is not None
    return found


def accept(session: Session, claimed: outbox.Claim) -> None:
    """The accept move of a claimed batch (with write-back on, it queues the write-backs)."""
    outbox.move(
        session,
        [lead.id for lead in claimed.leads],
        source=LeadState.SENDING,
        target=LeadState.ACCEPTED,
        reason="accepted",
        batch_id=claimed.batch_id,
        now=T0,
    )


def calls_per_thousand(work: Path, org: Org) -> dict[str, Any]:
    """1,000 accepted leads, then the writer drains them; the emulator counts the calls."""
    sync = sync_config()
    factory = fresh_database(work, "calls.db", org, 1000)
    store.install(factory, [sync])
    with factory.begin() as session:
        accept(session, claim(session, 1000))
    before = org.writes()
    source = SalesforceSource(org.config)
    try:
        result = Writer(factory, source, sync, max_api_usage_percent=100).run()
    finally:
        source.close()
    calls = org.writes() - before
    return {
        "leads": 1000,
        "calls": calls,
        "expected": math.ceil(1000 / 200),
        "done": result.done,
        "left": pending(factory),
    }


def move_cost(work: Path, org: Org, batches: int) -> dict[str, Any]:
    """The accept move of one 100-lead batch (its own transaction), write-back off vs on.

    Off and on alternate batch by batch on the same database, so both see the
    same table sizes; the median time of each is reported.
    """
    sync = sync_config()
    factory = fresh_database(work, "move.db", org, batches * 100)
    plain = make_session_factory(factory.kw["bind"])
    store.install(factory, [sync])
    timings: dict[bool, list[float]] = {False: [], True: []}
    for number in range(batches):
        on = number % 2 == 1
        sessions = factory if on else plain
        with sessions.begin() as session:
            claimed = claim(session, 100)
        started = time.perf_counter()
        with sessions.begin() as session:
            accept(session, claimed)
        timings[on].append(time.perf_counter() - started)
    off = statistics.median(timings[False]) * 1000
    on = statistics.median(timings[True]) * 1000
    return {
        "batches": batches,
        "leads_per_batch": 100,
        "off_ms": round(off, 3),
        "on_ms": round(on, 3),
        "extra_ms_per_batch": round(on - off, 3),
    }


def deliver_once(
    work: Path, org: Org, simz_url: str, count: int, mode: str, run: int, rps: float
) -> dict[str, Any]:
    """Deliver ``count`` queued leads in ``mode`` (see the module's docstring)."""
    sync = sync_config()
    factory = fresh_database(work, f"deliver-{mode}-{rps:g}-{run}.db", org, count)
    writeback = mode != "off"
    if writeback:
        store.install(factory, [sync])
    simz = SimzConfig.model_validate(
        {"base_url": simz_url, "api_key": API_KEY, "batch_size": 100, "requests_per_second": rps}
    )
    client = SimzClient(simz)
    source = SalesforceSource(org.config)
    call_times: list[float] = []
    update_collection = source.update_collection

    def timed_update(body: dict[str, Any]) -> Any:
        call_times.append(time.perf_counter())
        return update_collection(body)

    source.update_collection = timed_update  # type: ignore[method-assign]
    writer = Writer(factory, source, sync, max_api_usage_percent=100)
    if mode == "on-paced":
        writer.give_way = GiveWay(writer.give_way.activity, limit=0)
    delivered = threading.Event()
    calls = 0

    def write_back() -> None:
        nonlocal calls
        while True:
            finished = delivered.is_set()
            calls += writer.run().calls
            if finished and pending(factory) == 0:
                return
            time.sleep(WRITEBACK_EVERY)

    thread = threading.Thread(target=write_back, name="writeback") if writeback else None
    gc.collect()
    started = time.perf_counter()
    cpu = time.process_time()
    if thread is not None:
        thread.start()
    try:
        result = deliver_sync(factory, client, sync, simz, worker="bench")
        seconds = time.perf_counter() - started
        delivery_cpu = time.process_time() - cpu
        delivered.set()
        if thread is not None:
            thread.join()
        drained = time.perf_counter() - started
    finally:
        client.close()
        source.close()
        factory.kw["bind"].dispose()
    return {
        "mode": mode,
        "leads": count,
        "accepted": result.accepted,
        "delivery_seconds": round(seconds, 3),
        "leads_per_second": round(count / seconds, 1),
        "all_written_seconds": round(drained, 3) if writeback else None,
        "writeback_calls": calls,
        "writeback_calls_during_delivery": sum(1 for t in call_times if t < started + seconds),
        "delivery_cpu_us_per_lead": round(delivery_cpu / count * 1e6, 1),
        "cpu_seconds": round(time.process_time() - cpu, 3),
    }


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def throughput(
    work: Path, org: Org, simz_url: str, count: int, runs: int, modes: tuple[str, ...], rps: float
) -> dict[str, Any]:
    """Deliver ``count`` leads ``runs`` times in each of ``modes``; the summary."""
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for run in range(runs):
        # Rotate the order, so that no mode always runs first or last.
        turn = run % len(modes)
        for mode in modes[turn:] + modes[:turn]:
            http_json(f"{simz_url}/__sandbox/reset", "POST")
            done = deliver_once(work, org, simz_url, count, mode, run, rps)
            results[mode].append(done)
            print(
                f"{rps:g} requests/s, run {run + 1}/{runs}, {mode}: "
                f"{done['leads_per_second']:.0f} leads/s",
                file=sys.stderr,
            )
    written = modes[1:]

    def median(key: str, of: tuple[str, ...]) -> dict[str, float]:
        return {mode: statistics.median(r[key] for r in results[mode]) for mode in of}

    rates = {mode: spread([r["leads_per_second"] for r in results[mode]]) for mode in modes}
    return {
        "leads": count,
        "runs": runs,
        "requests_per_second": rps,
        "leads_per_second": rates,
        "ratio_to_off": {
            mode: round(rates[mode]["median"] / rates["off"]["median"], 3) for mode in written
        },
        "delivery_cpu_us_per_lead_median": median("delivery_cpu_us_per_lead", modes),
        "writeback_calls_during_delivery_median": median(
            "writeback_calls_during_delivery", written
        ),
        "all_written_seconds_median": median("all_written_seconds", written),
        "runs_detail": [r for mode in modes for r in results[mode]],
    }


def summary_lines(found: dict[str, Any]) -> str:
    lines = []
    for mode, rate in found["leads_per_second"].items():
        line = (
            f"delivery at {found['requests_per_second']:g} requests/s, {mode}: "
            f"median {rate['median']:.0f} leads/s (min {rate['min']:.0f}, max {rate['max']:.0f}), "
            f"syncd CPU {found['delivery_cpu_us_per_lead_median'][mode]:.0f} us/lead"
        )
        if mode in found["ratio_to_off"]:
            line += (
                f", ratio {found['ratio_to_off'][mode]:.2f}, write-back calls during delivery "
                f"{found['writeback_calls_during_delivery_median'][mode]:.0f}, all written "
                f"{found['all_written_seconds_median'][mode]:.1f} s"
            )
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 leads, one run")
    parser.add_argument("--leads", type=int, default=None, help="leads to deliver per run")
    parser.add_argument("--runs", type=int, default=None, help="runs per mode (median; default 5)")
    args = parser.parse_args(argv)
    count = args.leads or (2000 if args.quick else 20_000)
    runs = args.runs or (1 if args.quick else 5)
    rated_count = 1000 if args.quick else RATED_LEADS
    configure_logging(level="warning", fmt="json", stream=sys.stderr, secrets=[])
    with tempfile.TemporaryDirectory(prefix="syncd-bench-wb-") as tmp:
        work = Path(tmp)
        org = Org(work, max(count, rated_count, 1000))
        simz = Emulator(
            "simz",
            ["simz", "--port", "0", "--api-key", API_KEY, "--agent", AGENT],
            work / "simz.log",
        )
        try:
            calls = calls_per_thousand(work, org)
            moves = move_cost(work, org, min(200, max(count, 1000) // 100))
            bound = throughput(work, org, simz.url, count, runs, MODES, 1000)
            rated = throughput(
                work, org, simz.url, rated_count, min(runs, 3), MODES[:2], DEFAULT_RPS
            )
        finally:
            simz.stop()
            org.emulator.stop()
    report = {
        "calls_per_1000_leads": calls,
        "accept_move": moves,
        "delivery_cpu_bound": bound,
        "delivery_default_rate": rated,
    }
    print(json.dumps(report, indent=2))
    during = bound["writeback_calls_during_delivery_median"]["on"]
    rated_ratio = rated["ratio_to_off"]["on"]
    print(
        f"write-back API calls per 1,000 leads: {calls['calls']} (expected {calls['expected']}); "
        f"accept move of 100 leads {moves['off_ms']} ms off, {moves['on_ms']} ms on\n"
        f"{summary_lines(bound)}\n{summary_lines(rated)}\n"
        f"target: no write-back call during a CPU-bound delivery pass: "
        f"{'PASS' if during == 0 else 'MISS'} ({during:.0f})\n"
        f"target: at the default rate limit on/off >= {TARGET_RATIO}: "
        f"{'PASS' if rated_ratio >= TARGET_RATIO else 'MISS'} ({rated_ratio:.2f})\n"
        f"CPU-bound (no rate limit) on/off: {bound['ratio_to_off']['on']:.2f}, reported, not a "
        "target: the write-back row each state change must add in its own transaction",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
