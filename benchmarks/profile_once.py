"""Profile one ``syncd once`` and count its statements.

Method: docs/performance.md#where-the-time-goes-on-postgresql-2026-12-07. The emulators run
in their own processes as in ``benchmarks/run.py``; syncd runs in a child
process under py-spy (sampling every thread that is on a CPU), with a
SQLAlchemy cursor listener counting every statement sent to the database (one per round trip; an
executemany counts once), grouped by the statement's first words. Prints the
top functions by own and cumulative time and the statements by count. As in
``run.py``, syncd is byte-compiled and the database migrated before the
profiled process starts.

Usage::

    SYNCD_TEST_POSTGRES_URL=... .venv/bin/python benchmarks/profile_once.py --records 20000
    .venv/bin/python benchmarks/profile_once.py --records 20000 --backend sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    PYTHON,
    Database,
    Org,
    Simz,
    clean_env,
    compile_syncd,
    syncd_config,
)

#: What the child runs: syncd's CLI with a statement counter on every engine.
CHILD = r"""
import atexit, collections, json, re, sys, time
from sqlalchemy import event
from sqlalchemy.engine import Engine

out = sys.argv.pop()
counts = collections.Counter()
seconds = collections.Counter()
started = {}

@event.listens_for(Engine, "before_cursor_execute")
def _before(conn, cursor, statement, parameters, context, executemany):
    started[id(cursor)] = time.perf_counter()

keys = {}  # each statement text normalised once: the profile should show syncd, not this

@event.listens_for(Engine, "after_cursor_execute")
def _after(conn, cursor, statement, parameters, context, executemany):
    key = keys.get(statement)
    if key is None:
        key = keys[statement] = re.sub(r"\s+", " ", statement).strip()[:100]
    counts[key] += 1
    seconds[key] += time.perf_counter() - started.pop(id(cursor), time.perf_counter())

def _report():
    with open(out + ".statements.json", "w") as f:
        json.dump({k: [counts[k], seconds[k]] for k in counts}, f)

atexit.register(_report)
from syncd.entrypoints.cli import main
main()
"""


def folded(path: Path, top: int) -> list[str]:
    """The top functions of py-spy's collapsed stacks by own and by inclusive samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [
            frame.split(" (")[0] + " " + frame.rsplit("/", 1)[-1].split(":")[0]
            for frame in stack.split(";")
        ]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"samples: {total}", "own:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines += ["inclusive:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default=None)
    parser.add_argument("--mode", choices=("once",), default="once")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", default=None, help="keep the profile under this prefix")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="sample only the thread holding the GIL: where Python's CPU goes, without "
        "threads that py-spy counts as running while they wait for it",
    )
    parser.add_argument("--postgres-url", default=os.environ.get("SYNCD_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--database-name",
        default="syncd_bench",
        help="the PostgreSQL database to recreate (another bench may be using syncd_bench)",
    )
    args = parser.parse_args()
    backend = args.backend or ("postgresql" if args.postgres_url else "sqlite")
    compile_syncd()
    work = Path(tempfile.mkdtemp(prefix="syncd-profile-"))
    prefix = args.out or str(work / "profile")
    simz = Simz(work)
    org = Org(work, args.records)
    try:
        url = Database(backend, work, args.postgres_url, args.database_name).fresh()
        config = syncd_config(work / "p.yaml", url, org, simz, start_at="2020-01-01T00:00:00Z")
        # As in run.py: the database is at head before the profiled process starts.
        migrate = [PYTHON, "-m", "syncd", "migrate", "-c", str(config)]
        subprocess.run(migrate, env=clean_env(), capture_output=True, check=True)
        spy = str(Path(PYTHON).with_name("py-spy"))
        child = [spy, "record", "--format", "raw", "-r", "200", *(["--gil"] if args.gil else [])]
        child += ["-o"]
        child += [prefix + ".folded", "--", PYTHON, "-c", CHILD, "once", "-c", str(config), prefix]
        done = subprocess.run(child, env=clean_env(), capture_output=True, text=True, check=False)
        Path(prefix + ".log").write_text(done.stdout + done.stderr, "utf-8")
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
    finally:
        org.emulator.stop()
        simz.emulator.stop()
    print("\n".join(folded(Path(prefix + ".folded"), args.top)))
    statements = json.loads(Path(prefix + ".statements.json").read_text())
    total = sum(n for n, _s in statements.values())
    print(f"statements: {total} ({total / args.records * 100:.1f} per 100 leads)")
    for key, (n, secs) in sorted(statements.items(), key=lambda kv: -kv[1][1])[:25]:
        print(f"{n:>7} {secs:8.2f} s  {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
