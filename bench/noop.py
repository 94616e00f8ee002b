"""Benchmark: the fixed cost of a no-op `make up` (same shas again) on the local fleet, and where it goes.

Runs `python -m fleet.local up` three times on a fleet that is up to date, prints wall seconds (min/median), the
CPU seconds it and its helper processes used (steadier than wall time on a busy machine), the remote commands
run (target 0) and, for the last run, the functions with the most cumulative time (cProfile), overall and the
project's own. The fleet is brought up and `up` run once more before: the first up creates moto's instances, so
its plan is not kept and the second runs the program again (fleet/plan_cache.py); from the third on a no-op
reuses that plan. Then rollbacks: ecom-platform staged to `code-change` and deployed, then `ecom-deploy rollback`
+ `make up` timed (wall, the executor's own seconds, and the rest: the fixed cost around it).
Then deploys of a new sha (code-only releases r1, r2...): `ecom-deploy stage` + `make up`, split by the up's own
lines (each stamped as it arrives) into the verb, the up's start (to its deploying plan), the plan, the rest
before the executor, the executor, what follows it (events, mark-live) and the process's exit; alternately with the
plan made by the planner the last up left (fleet/planner.py) and in the up's own process (the planner dismissed);
one more such deploy runs under cProfile, in its own process, whose summary is printed (not counted); for the
first deploy of each kind, when each of the up's own lines came (where its start goes).
Every timed up comes GAP_S after the last (a CI's deploys are minutes apart): the planner has loaded by then.
Targets (issue 16): a no-op under 2 s; a rollback's fixed cost as near 0.5 s as it gets. Needs root; starts the
fleet and takes it down again.

    .venv/bin/python bench/noop.py [--only noop|new-sha|rollback ...]     (as root; about 4 minutes)
"""
from __future__ import annotations

import argparse
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
from fleet import planner
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
            time.sleep(GAP_S)
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
        time.sleep(GAP_S)
        started = time.monotonic()
        platform.deploy_cli("rollback", "--env", platform.fleet.stack, "--app", APP, "--actor", "bench-noop")
        verb = time.monotonic() - started
        stamped = stamped_up()
        wall = time.monotonic() - started
        lines = [text for _, text in stamped]
        executor = next((float(m.group(1)) for m in map(DONE.search, lines) if m), 0.0)
        plan = next((line for line in lines if line.startswith("[up] plan: ") and "which hosts" not in line
                     and "same hosts" not in line), "")
        here = next((text[len("[up] plan: "):] for text in lines if "planning here" in text), None)
        rows.append({"wall": wall, "verb": verb, "up": wall - verb, "executor": executor, "plan": plan,
                     "parts": split_up(stamped), "by": f"planned in the up ({here})" if here else "by the planner",
                     "lines": [(t, text) for t, text in stamped if text.startswith("[up] ")]})
    return rows


def report_rollbacks(rows: list[dict]) -> None:
    for row in rows:
        print(f"rollback: {row['wall']:.2f} s = ecom-deploy rollback {row['verb']:.2f} s + make up {row['up']:.2f} s "
              f"(executor {row['executor']:.2f} s, the rest {row['up'] - row['executor']:.2f} s); "
              f"{row['plan'][len('[up] plan: '):][:60]}", flush=True)
        print("  make up: " + ", ".join(f"{part} {seconds:.2f}" for part, seconds in row["parts"].items()) + " s; "
              f"plan {row['by']}", flush=True)
        print("  up's lines: " + "; ".join(f"{t:.2f} {text[5:][:40]}" for t, text in row["lines"]), flush=True)


# The deploying plan's own line (not the fleet's shape: "which hosts" / "same hosts"), and the executor's start.
PLAN_LINE = re.compile(r"^\[up\] plan: (running the \S+ stack's program against moto|reusing a plan)")
EXECUTOR_START = re.compile(r"^\[up\] deploy: \d+ remote commands")
EXECUTOR_END = re.compile(r"^\[executor\] (done|nothing to do)")
ENDPOINT = re.compile(r"^endpoint: ")            # up's last line
NEW_SHA_TAGS = ("r1", "r2", "r3", "r4", "r5", "r6")   # code-only releases of ecom-platform (fleet/origin)
# Between one up and the next stage: the planner the last up left loads meanwhile, as between a CI's deploys
# (minutes apart); back to back, an up finds it still loading and plans itself.
GAP_S = 5.0


def stamped_up(profile: Path | None = None) -> list[tuple[float, str]]:
    """`python -m fleet.local up` (under cProfile into `profile` if given): each output line with the seconds since
    the start at which it arrived, and ("", seconds) at the exit."""
    argv = [sys.executable, "-m", "fleet.local", "up"]
    if profile is not None:
        argv = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "fleet.local", "up"]
    started = time.monotonic()
    lines = []
    # Unbuffered: the executor's lines are printed without a flush, and each must be stamped when it is written.
    with subprocess.Popen(argv, cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
        code = proc.wait(timeout=600)
    lines.append((time.monotonic() - started, ""))
    if code != 0:
        raise RuntimeError(f"fleet.local up exited {code}:\n" + "\n".join(text for _, text in lines[-30:]))
    return lines


def split_up(lines: list[tuple[float, str]]) -> dict[str, float]:
    """An up's seconds by part: start (to the deploying plan's line), plan (to the next line of up's own), before
    (the rest until the executor starts), executor, after (events, mark-live, to up's last line), exit (from it to
    the process's end); and the wall."""
    def first(pattern: re.Pattern, after: float = 0.0) -> float:
        return next(t for t, text in lines if t >= after and pattern.match(text))
    plan_at = first(PLAN_LINE)
    plan_done = next(t for t, text in lines if t > plan_at and text.startswith("[up] ") and not PLAN_LINE.match(text))
    exec_at = first(EXECUTOR_START)
    exec_done = first(EXECUTOR_END, exec_at)
    last = first(ENDPOINT, exec_done)
    wall = lines[-1][0]
    return {"start": plan_at, "plan": plan_done - plan_at, "before": exec_at - plan_done,
            "executor": exec_done - exec_at, "after": last - exec_done, "exit": wall - last, "wall": wall}


def new_sha_runs(platform: Platform, tags: tuple[str, ...] = NEW_SHA_TAGS) -> tuple[list[dict], str]:
    """Per tag but the last, GAP_S after the last up: `ecom-deploy stage` (timed, sha looked up before) + the timed
    up, alternately with the planner the last up left (fleet/planner.py) and with it dismissed (the up plans in its
    own process); the last tag's up runs under cProfile, in its own process. (rows, the profile's summary)."""
    rows = []
    summary = ""
    with tempfile.TemporaryDirectory() as tmp:
        for index, tag in enumerate(tags):
            profiled = index == len(tags) - 1
            mode = "own process" if profiled or index % 2 else "planner"
            time.sleep(GAP_S)
            if mode != "planner" and not planner.dismiss(platform.fleet):
                raise RuntimeError("no planner was waiting to be dismissed")
            sha = platform.tag_sha(APP, tag)
            started = time.monotonic()
            platform.deploy_cli("stage", "--env", platform.fleet.stack, "--app", APP, "--sha", sha,
                                "--actor", "bench-noop", "--no-verify-sha")   # a tag of the fleet's own origin
            verb = time.monotonic() - started
            lines = stamped_up(Path(tmp) / "up.prof" if profiled else None)
            plan_line = next(text for _, text in lines if PLAN_LINE.match(text))
            if not plan_line.startswith("[up] plan: running"):
                raise RuntimeError(f"{tag}: a new sha reused a kept plan: {plan_line}")
            if mode == "planner" and any("planning here" in text for _, text in lines):
                raise RuntimeError(f"{tag}: the planner did not plan:\n" + "\n".join(t for _, t in lines))
            if profiled:
                text = io.StringIO()
                stats = pstats.Stats(str(Path(tmp) / "up.prof"), stream=text).sort_stats("cumulative")
                stats.print_stats(r"/(fleet|ecom_infra|components|renderers)/", 30)
                stats.print_callees(r"fleet/local.py:\d+\((up|_deploy|deploy|deploying_plan|make_deploying_plan)\)")
                stats.sort_stats("tottime").print_stats(20)
                summary = text.getvalue()
            else:
                rows.append({"tag": tag, "mode": mode, "verb": verb, **split_up(lines),
                             "lines": [(t, text) for t, text in lines if text.startswith("[up] ")]})
    return rows, summary


def report_new_sha(rows: list[dict], summary: str) -> None:
    parts = ("verb", "start", "plan", "before", "executor", "after", "exit")
    for row in rows:
        outside = row["verb"] + row["wall"] - row["executor"]
        print(f"new sha ({row['tag']}, plan by the {row['mode']}): {row['verb'] + row['wall']:.2f} s = " + " + ".join(
            f"{part} {row[part]:.2f}" for part in parts) + f" s; outside the executor {outside:.2f} s", flush=True)
    for mode in sorted({row["mode"] for row in rows}):       # where the start goes: when each of up's lines came
        first = next(row for row in rows if row["mode"] == mode)
        print(f"new sha ({first['tag']}, plan by the {mode}), up's lines: " + "; ".join(
            f"{t:.2f} {text[5:][:40]}" for t, text in first["lines"]), flush=True)
    for mode in sorted({row["mode"] for row in rows}):
        chosen = [row for row in rows if row["mode"] == mode]
        for part in (*parts, "wall", "outside"):
            values = [row["verb"] + row["wall"] - row["executor"] if part == "outside" else row[part]
                      for row in chosen]
            print(f"new sha, plan by the {mode}, {part}: min {min(values):.2f} s, median "
                  f"{statistics.median(values):.2f} s", flush=True)
    print("cProfile of one more new-sha up (the project's functions by cumulative time, then all by own time):")
    print(summary, flush=True)


PHASES = ("noop", "new-sha", "rollback")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=PHASES, default=list(PHASES), help="run only these parts")
    args = parser.parse_args(argv)
    with fresh_platform() as platform:
        platform.local("up")
        platform.local("up")         # the first up created moto's instances: its plan was not kept (see above)
        if "noop" in args.only:
            report(*noop_runs())
        if "new-sha" in args.only:
            report_new_sha(*new_sha_runs(platform))
        if "rollback" in args.only:
            report_rollbacks(rollback_runs(platform))
    return 0


if __name__ == "__main__":
    sys.exit(main())
