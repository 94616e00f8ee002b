"""Benchmark: the fixed cost of a no-op `make up` (same shas again) on the local fleet, and where it goes.

Runs `python -m fleet.local up` three times on a fleet that is up to date, prints wall seconds (min/median), the
CPU seconds it and its helper processes used (steadier than wall time on a busy machine), the remote commands
run (target 0) and, for the last run, the functions with the most cumulative time (cProfile), overall and the
project's own.
Target (issue 16): under 2 s. Needs root; starts the fleet and takes it down again.

    .venv/bin/python bench/noop.py            (as root; about 3 minutes)
"""
from __future__ import annotations

import io
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ecom_infra.stacks import PROJECT_DIR
from fleet.probe import fresh_platform


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def noop_runs(rounds: int = 3) -> tuple[list[float], list[float], str, str]:
    """(wall seconds per run, CPU seconds per run, the last run's stdout, its cProfile summary)."""
    walls, cpus, out, summary = [], [], "", ""
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "up.prof"
        for index in range(rounds):
            argv = [sys.executable, "-m", "fleet.local", "up"]
            if index == rounds - 1:      # python -m cProfile -o FILE -m fleet.local up
                argv = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "fleet.local", "up"]
            started, cpu = time.monotonic(), _cpu_of_children()
            proc = subprocess.run(argv, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600, check=True)
            walls.append(time.monotonic() - started)
            cpus.append(_cpu_of_children() - cpu)
            out = proc.stdout
        text = io.StringIO()
        stats = pstats.Stats(str(profile), stream=text).sort_stats("cumulative")
        stats.print_stats(25)
        stats.print_stats(r"/(fleet|ecom_infra|components|renderers)/", 25)
        summary = text.getvalue()
    return walls, cpus, out, summary


def report(walls: list[float], cpus: list[float], out: str, summary: str) -> None:
    print(f"no-op up: {', '.join(f'{w:.2f}' for w in walls)} s; min {min(walls):.2f} s, median "
          f"{statistics.median(walls):.2f} s (target < 2 s; the last run under cProfile)", flush=True)
    print(f"CPU (user+sys, with helper processes): {', '.join(f'{c:.2f}' for c in cpus)} s; min {min(cpus):.2f} s, "
          f"median {statistics.median(cpus):.2f} s; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
          flush=True)
    print("\n".join(line for line in out.splitlines() if line.startswith(("[up]", "[executor]"))), flush=True)
    print(summary, flush=True)


def main() -> int:
    with fresh_platform() as platform:
        platform.local("up")
        report(*noop_runs())
    return 0


if __name__ == "__main__":
    sys.exit(main())
