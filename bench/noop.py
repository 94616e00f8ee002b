"""Benchmark: the fixed cost of a no-op `make up` (same shas again) on the local fleet, and where it goes.

Runs `python -m fleet.local up` three times on a fleet that is up to date, prints wall seconds (min/median), the
CPU seconds it and its helper processes used (steadier than wall time on a busy machine), the remote commands
run (target 0) and, for the last run, the functions with the most cumulative time (cProfile), overall and the
project's own. The fleet is brought up and `up` run once more before: the first up creates moto's instances, so
its plan is not kept and the second runs the program again (fleet/plan_cache.py); from the third on a no-op
reuses that plan. Then rollbacks: ecom-platform staged to `code-change` and deployed, then `ecom-deploy rollback`
+ `make up` timed (wall, the executor's own seconds, and the rest: the fixed cost around it).
Targets (issue 16): a no-op under 2 s; a rollback's fixed cost as near 0.5 s as it gets. Needs root; starts the
fleet and takes it down again.

    .venv/bin/python bench/noop.py            (as root; about 3 minutes)
"""
from __future__ import annotations

import io
import os
import pstats
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ecom_infra.stacks import PROJECT_DIR
from fleet.probe import Platform, fresh_platform

APP = "ecom-platform"


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


DONE = re.compile(r"^\[executor\] (?:done|nothing to do).* \(?([0-9.]+) s\)?")


def rollback_runs(platform: Platform, rounds: int = 2) -> list[dict]:
    """Per round: ecom-platform staged to `code-change` and deployed (not timed), then the timed rollback."""
    rows = []
    for _ in range(rounds):
        platform.stage(APP, "code-change")
        platform.local("up")
        started = time.monotonic()
        platform.deploy_cli("rollback", "--env", platform.fleet.stack, "--app", APP, "--actor", "bench-noop")
        verb = time.monotonic() - started
        out = platform.local("up").stdout
        wall = time.monotonic() - started
        lines = out.splitlines()
        executor = next((float(m.group(1)) for m in map(DONE.search, lines) if m), 0.0)
        plan = next((line for line in lines if line.startswith("[up] plan: ") and "which hosts" not in line
                     and "same hosts" not in line), "")
        rows.append({"wall": wall, "verb": verb, "up": wall - verb, "executor": executor, "plan": plan})
    return rows


def report_rollbacks(rows: list[dict]) -> None:
    for row in rows:
        print(f"rollback: {row['wall']:.2f} s = ecom-deploy rollback {row['verb']:.2f} s + make up {row['up']:.2f} s "
              f"(executor {row['executor']:.2f} s, the rest {row['up'] - row['executor']:.2f} s); "
              f"{row['plan'][len('[up] plan: '):][:60]}", flush=True)


def main() -> int:
    with fresh_platform() as platform:
        platform.local("up")
        platform.local("up")         # the first up created moto's instances: its plan was not kept (see above)
        report(*noop_runs())
        report_rollbacks(rollback_runs(platform))
    return 0


if __name__ == "__main__":
    sys.exit(main())
