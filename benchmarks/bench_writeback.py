"""Write-back cost: Salesforce API calls per 1,000 leads, and delivery with write-back on vs off.

Both emulators run in their own processes (``syncd sandbox salesforce|simz``),
so their CPU is not charged to syncd. Two measurements:

* calls: 1,000 accepted leads queued for write-back, drained by the writer;
  the Salesforce emulator's write log counts the sObject Collections calls
  (expected ceil(1000 / 200) = 5);
* the hot path: the accept move of a 100-lead batch with write-back off and
  on (one more ``INSERT ... SELECT`` when on), median milliseconds;
* throughput: N queued leads delivered to SimZ (batches of 100) on a fresh
  SQLite database, once with write-back off, once on (each state change also
  queues its write-back, and the writer sends them to Salesforce in a thread
  of its own meanwhile). Delivery leads/s of each and the ratio on/off; also
  the write-back calls the concurrent run made (smaller than 200 per call
  when the writer keeps up with delivery).

Usage::

    .venv/bin/python benchmarks/bench_writeback.py --quick   # 2,000 leads, one run
    .venv/bin/python benchmarks/bench_writeback.py           # 20,000 leads, median of 3
"""

from __future__ import annotations

import argparse
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
#: every ``delivery.every`` (default 5 s); shorter here, so that the writer works
#: through the whole delivery run: the worst case for delivery.
WRITEBACK_EVERY = 0.2


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


def calls_per_thousand(work: Path, org: Org) -> dict[str, Any]:
    """1,000 accepted leads, then the writer drains them; the emulator counts the calls."""
    sync = sync_config()
    factory = fresh_database(work, "calls.db", org, 1000)
    store.install(factory, [sync])
    with factory.begin() as session:
        claim = outbox.claim(
            session,
            sync_name="bench",
            agent_id=AGENT,
            credential="k",
            limit=1000,
            now=T0,
            worker=None,
        )
        assert claim is not None
        outbox.move(
            session,
            [lead.id for lead in claim.leads],
            source=LeadState.SENDING,
            target=LeadState.ACCEPTED,
            reason="accepted",
            batch_id=claim.batch_id,
            now=T0,
        )
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
            claim = outbox.claim(
                session,
                sync_name="bench",
                agent_id=AGENT,
                credential="k",
                limit=100,
                now=T0,
                worker=None,
            )
        assert claim is not None
        started = time.perf_counter()
        with sessions.begin() as session:
            outbox.move(
                session,
                [lead.id for lead in claim.leads],
                source=LeadState.SENDING,
                target=LeadState.ACCEPTED,
                reason="accepted",
                batch_id=claim.batch_id,
                now=T0,
            )
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
    work: Path, org: Org, simz_url: str, count: int, writeback: bool, run: int
) -> dict[str, Any]:
    """Deliver ``count`` queued leads; with write-back the writer runs alongside."""
    sync = sync_config()
    factory = fresh_database(work, f"deliver-{writeback}-{run}.db", org, count)
    if writeback:
        store.install(factory, [sync])
    simz = SimzConfig.model_validate(
        {"base_url": simz_url, "api_key": API_KEY, "batch_size": 100, "requests_per_second": 1000}
    )
    client = SimzClient(simz)
    source = SalesforceSource(org.config)
    writer = Writer(factory, source, sync, max_api_usage_percent=100)
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
    started = time.perf_counter()
    cpu = time.process_time()
    if thread is not None:
        thread.start()
    try:
        result = deliver_sync(factory, client, sync, simz, worker="bench")
        seconds = time.perf_counter() - started
        delivered.set()
        if thread is not None:
            thread.join()
        drained = time.perf_counter() - started
    finally:
        client.close()
        source.close()
    return {
        "writeback": writeback,
        "leads": count,
        "accepted": result.accepted,
        "delivery_seconds": round(seconds, 3),
        "leads_per_second": round(count / seconds, 1),
        "all_written_seconds": round(drained, 3) if writeback else None,
        "writeback_calls": calls if writeback else 0,
        "cpu_seconds": round(time.process_time() - cpu, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 leads, one run")
    parser.add_argument("--leads", type=int, default=None, help="leads to deliver per run")
    parser.add_argument("--runs", type=int, default=None, help="runs per mode (median)")
    args = parser.parse_args(argv)
    count = args.leads or (2000 if args.quick else 20_000)
    runs = args.runs or (1 if args.quick else 3)
    configure_logging(level="warning", fmt="json", stream=sys.stderr, secrets=[])
    with tempfile.TemporaryDirectory(prefix="syncd-bench-wb-") as tmp:
        work = Path(tmp)
        org = Org(work, max(count, 1000))
        simz = Emulator(
            "simz",
            ["simz", "--port", "0", "--api-key", API_KEY, "--agent", AGENT],
            work / "simz.log",
        )
        try:
            calls = calls_per_thousand(work, org)
            moves = move_cost(work, org, min(200, max(count, 1000) // 100))
            results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
            for run in range(runs):
                for writeback in (False, True):
                    http_json(f"{simz.url}/__sandbox/reset", "POST")
                    results[writeback].append(
                        deliver_once(work, org, simz.url, count, writeback, run)
                    )
        finally:
            simz.stop()
            org.emulator.stop()
    off = statistics.median(r["leads_per_second"] for r in results[False])
    on = statistics.median(r["leads_per_second"] for r in results[True])
    report = {
        "calls_per_1000_leads": calls,
        "accept_move": moves,
        "delivery": {
            "leads": count,
            "runs": runs,
            "off_leads_per_second": off,
            "on_leads_per_second": on,
            "ratio_on_off": round(on / off, 3),
            "runs_detail": results[False] + results[True],
        },
    }
    print(json.dumps(report, indent=2))
    print(
        f"write-back API calls per 1,000 leads: {calls['calls']} (expected {calls['expected']}); "
        f"delivery {off:.0f} leads/s off, {on:.0f} leads/s on (ratio {on / off:.2f}); "
        f"accept move of 100 leads {moves['off_ms']} ms off, {moves['on_ms']} ms on",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
