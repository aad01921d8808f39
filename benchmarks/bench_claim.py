"""The claim's cost: per-lead time of ``outbox.claim`` rounds with the send gate's checks.

A database (a SQLite file, and PostgreSQL when ``SYNCD_TEST_POSTGRES_URL`` or
``--postgres-url`` is set: a fresh schema, dropped afterwards) is filled with N
queued leads (default 20,000) of two agents over N/2 numbers: each number has
one lead per agent, so the per-agent duplicate-phone rule lets every lead
through while the per-number checks (suppression list, frequency caps) find the
other agent's send of the same number. Every lead carries a consent stamp 30
days old, and the suppression list holds 1,000 numbers none of the leads has,
so that every mode sends every lead and the runs compare like with like.

Then, as a delivery pass does, each agent's leads are claimed in rounds of 100
until none is due. Each claim is timed in its own transaction, commit
included; the claimed leads are then accepted in a second, untimed
transaction, so that later claims count them as sends. Modes, their order
rotated run by run:

* ``default``: the sync's default rules (DoNotCall, the 24 h duplicate-phone
  window, the suppression list);
* ``compliance``: the same plus ``rules.consent`` (a datetime lapsing after
  365 days) and ``rules.max_sends_per_number`` (3 per 24 h, 10 per 30 days).

Reported, per mode, as medians over the runs: claim milliseconds (the median
claim of each run), wall and syncd CPU microseconds per claimed lead (the
database server's CPU, on PostgreSQL, is in the wall time only), claims per
second, the fastest run's microseconds per lead, and the ratio to ``default``.
Run it on the code before and after a change to the gate and compare: the
bound is a claim cost within 25 % of before. The machine's load moves wall
time a lot; the CPU figure and the fastest run move less.

Usage::

    .venv/bin/python benchmarks/bench_claim.py --quick   # 4,000 leads, one run
    .venv/bin/python benchmarks/bench_claim.py           # 20,000 leads, median of 3 runs
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from syncd.adapters import outbox
from syncd.adapters.db import make_engine, make_session_factory
from syncd.adapters.migrate import upgrade
from syncd.adapters.orm import Lead, LeadTransition, Suppression
from syncd.config.models import SyncConfig
from syncd.domain.states import LeadState
from syncd.logs import configure_logging
from syncd.services.call_window import calling_rules
from syncd.services.deliver import gate_rules

AGENTS = ("agt_bench_a", "agt_bench_b")
BATCH = 100
T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
CONSENT_GIVEN = (T0 - timedelta(days=30)).isoformat()
SUPPRESSED = 1000
MODES = ("default", "compliance")
#: The issue's bound on the gate's new checks: claim cost within 25 % of before.
TARGET_RATIO = 1.25


def sync_config(mode: str) -> SyncConfig:
    rules: dict[str, Any] = {}
    if mode == "compliance":
        rules = {
            "consent": {"field": "Consent_At__c", "kind": "datetime", "max_age": "365d"},
            "max_sends_per_number": [{"count": 3, "per": "24h"}, {"count": 10, "per": "30d"}],
        }
    return SyncConfig.model_validate(
        {"name": "bench", "agent": AGENTS[0], "mapping": {"phoneNumber": "Phone"}, "rules": rules}
    )


def number(n: int) -> str:
    return f"+1202{n // 10_000 % 800 + 200:03d}{n % 10_000:04d}"


def fill(factory: sessionmaker[Session], count: int) -> None:
    """``count`` queued leads, one per (agent, number) over count/2 numbers; the list."""
    rows: list[dict[str, Any]] = []
    for n in range(count):
        sf_id = f"00Q{n:015d}"
        phone = number(n // len(AGENTS))
        rows.append(
            {
                "sync_name": "bench",
                "salesforce_id": sf_id,
                "agent_id": AGENTS[n % len(AGENTS)],
                "state": "queued",
                "payload": {"phoneNumber": phone, "salesforceId": sf_id},
                "phone_e164": phone,
                "consent": CONSENT_GIVEN,
                "record_cursor": T0,
                "record_hash": f"{n:064d}",
                "attempts": 0,
                "created_at": T0,
                "updated_at": T0,
            }
        )
    listed = [
        {
            "phone_e164": number(count + n),
            "source": "operator",
            "reason": "benchmark",
            "added_by": "bench",
            "seen_at": T0,
            "added_at": T0,
        }
        for n in range(SUPPRESSED)
    ]
    with factory.begin() as session:
        session.execute(insert(Lead), rows)
        session.execute(insert(Suppression), listed)
        ids = list(session.scalars(select(Lead.id)))
        session.execute(
            insert(LeadTransition),
            [
                {"lead_id": i, "from_state": None, "to_state": "queued", "reason": "new", "at": T0}
                for i in ids
            ],
        )
    analyze(factory)


def analyze(factory: sessionmaker[Session]) -> None:
    with factory.begin() as session:
        session.execute(text("ANALYZE"))


def claim_all(factory: sessionmaker[Session], mode: str) -> dict[str, Any]:
    """Claim every agent's leads in rounds of ``BATCH``; each claim's seconds and size."""
    sync = sync_config(mode)
    rules = gate_rules(sync)
    local = calling_rules(sync.calling_hours)
    timings: list[float] = []
    cpu = 0.0
    claimed = 0
    tick = 0
    gc.collect()
    for agent in AGENTS:
        while True:
            tick += 1
            now = T0 + timedelta(milliseconds=tick)
            started = time.perf_counter()
            started_cpu = time.process_time()
            with factory.begin() as session:
                found = outbox.claim(
                    session,
                    sync_name="bench",
                    agent_id=agent,
                    credential="k",
                    limit=BATCH,
                    now=now,
                    worker="bench",
                    rules=rules,
                    calling_rules=local,
                )
            timings.append(time.perf_counter() - started)
            cpu += time.process_time() - started_cpu
            if found is None:
                break
            claimed += len(found.leads)
            with factory.begin() as session:
                outbox.move(
                    session,
                    [lead.id for lead in found.leads],
                    source=LeadState.SENDING,
                    target=LeadState.ACCEPTED,
                    reason="accepted",
                    batch_id=found.batch_id,
                    now=now,
                )
    seconds = sum(timings)
    return {
        "mode": mode,
        "claims": len(timings),
        "claimed": claimed,
        "claim_seconds": round(seconds, 3),
        "claim_ms_median": round(statistics.median(timings) * 1000, 3),
        "us_per_lead": round(seconds / max(claimed, 1) * 1e6, 1),
        "claims_per_second": round(len(timings) / seconds, 1),
        "leads_per_second": round(claimed / seconds, 1),
        "cpu_us_per_lead": round(cpu / max(claimed, 1) * 1e6, 1),
    }


@contextmanager
def database(backend: str, work: Path, name: str, postgres_url: str | None) -> Iterator[str]:
    """A URL for a fresh, empty database of ``backend``: a SQLite file or a schema."""
    if backend == "sqlite":
        yield f"sqlite:///{work / name}"
        return
    assert postgres_url is not None
    schema = f"bench_claim_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def one_run(
    backend: str, work: Path, count: int, mode: str, run: int, postgres_url: str | None
) -> dict[str, Any]:
    with database(backend, work, f"claim-{mode}-{run}.db", postgres_url) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            factory = make_session_factory(engine)
            fill(factory, count)
            return claim_all(factory, mode)
        finally:
            engine.dispose()


def measure(
    backend: str, work: Path, count: int, runs: int, postgres_url: str | None
) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for run in range(runs):
        turn = run % len(MODES)
        for mode in MODES[turn:] + MODES[:turn]:
            done = one_run(backend, work, count, mode, run, postgres_url)
            results[mode].append(done)
            print(
                f"{backend}, run {run + 1}/{runs}, {mode}: {done['us_per_lead']:.0f} us/lead "
                f"(CPU {done['cpu_us_per_lead']:.0f}), {done['claims_per_second']:.0f} claims/s",
                file=sys.stderr,
            )

    def median(key: str, mode: str) -> float:
        return float(statistics.median(r[key] for r in results[mode]))

    keys = ("us_per_lead", "cpu_us_per_lead", "claim_ms_median", "claims_per_second")
    summary = {mode: {key: median(key, mode) for key in keys} for mode in MODES}
    fastest = {mode: min(r["us_per_lead"] for r in results[mode]) for mode in MODES}
    base = summary["default"]["us_per_lead"]
    return {
        "backend": backend,
        "leads": count,
        "runs": runs,
        "median": summary,
        "min_us_per_lead": fastest,
        "ratio_to_default": {mode: round(summary[mode]["us_per_lead"] / base, 3) for mode in MODES},
        "runs_detail": [r for mode in MODES for r in results[mode]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4,000 leads, one run")
    parser.add_argument("--leads", type=int, default=None, help="queued leads per run")
    parser.add_argument("--runs", type=int, default=None, help="runs per mode (median; default 3)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("SYNCD_TEST_POSTGRES_URL"),
        help="also measure PostgreSQL (default: $SYNCD_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    count = args.leads or (4000 if args.quick else 20_000)
    runs = args.runs or (1 if args.quick else 3)
    configure_logging(level="error", fmt="json", stream=sys.stderr, secrets=[])
    backends = ["sqlite"] + (["postgresql"] if args.postgres_url else [])
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="syncd-bench-claim-") as tmp:
        for backend in backends:
            report[backend] = measure(backend, Path(tmp), count, runs, args.postgres_url)
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for backend, found in report.items():
        for mode, figures in found["median"].items():
            print(
                f"{backend} {found['leads']} leads, {mode}: claim of {BATCH} "
                f"{figures['claim_ms_median']:.2f} ms (median), "
                f"{figures['us_per_lead']:.1f} us per lead "
                f"(min {found['min_us_per_lead'][mode]:.1f}; "
                f"syncd CPU {figures['cpu_us_per_lead']:.1f}), "
                f"{figures['claims_per_second']:.0f} claims/s, "
                f"ratio to default {found['ratio_to_default'][mode]:.2f}",
                file=sys.stderr,
            )
    print(
        f"compare each mode with the figures before the gate's new checks "
        f"(target: within {TARGET_RATIO:.2f}x)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
