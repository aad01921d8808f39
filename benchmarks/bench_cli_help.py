"""How fast the CLI answers ``--help``: the cost of starting ``syncd`` for nothing.

Runs ``python -m syncd --help`` and ``python -m syncd status --help`` (which
imports one command module and what it needs) in fresh interpreters, and a
bare ``python -c pass`` for scale; prints the median and the spread of each and
the target (``--help`` under 0.3 s).

Usage::

    .venv/bin/python benchmarks/bench_cli_help.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

TARGET_SECONDS = 0.3


def timed(command: list[str], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "syncd --help": [sys.executable, "-m", "syncd", "--help"],
        "syncd status --help": [sys.executable, "-m", "syncd", "status", "--help"],
    }
    medians = {}
    for name, command in cases.items():
        seconds = timed(command, runs)
        medians[name] = statistics.median(seconds)
        print(
            f"{name:22} median {medians[name]:.3f} s "
            f"(min {min(seconds):.3f}, max {max(seconds):.3f}, {runs} runs)"
        )
    ratio = medians["syncd --help"] / medians["python -c pass"]
    print(f"syncd --help / bare interpreter: {ratio:.1f}x")
    verdict = "PASS" if medians["syncd --help"] < TARGET_SECONDS else "MISS"
    print(f"target: syncd --help under {TARGET_SECONDS} s: {verdict}")


if __name__ == "__main__":
    main()
