"""Benchmark: seconds for the offline plan of each stack (targets: production < 3 s, 2 x 20 synthetic < 6 s).

Each run is a fresh process, as a person running `ecom-deploy plan` would see it
(interpreter start and imports included). Prints one line per stack: best and median of N runs.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5
SHA_FILE = "staging:\n  ecom-platform: '" + "1" * 40 + "'\nproduction:\n  ecom-platform: '" + "2" * 40 + "'\n"
SYNTHETIC = [
    {"name": "ecom-platform", "repo": "git@github.com:emami/ecom-platform.git", "servers": 20,
     "hostnames": ["shop.example.com"]},
    {"name": "ecom-docs", "repo": "git@github.com:emami/ecom-docs.git", "servers": 20,
     "hostnames": ["docs.example.com"]},
]
SCRIPT = """
import json, sys
from ecom_infra import plan
overrides = json.loads(sys.argv[2])
result = plan.run(sys.argv[1], sha_file_text=open(sys.argv[3]).read(), config_overrides=overrides)
print(len(result.to_dict()["resources"]))
"""


def time_stack(stack: str, overrides: dict, sha_path: str) -> tuple[list[float], int]:
    times, count = [], 0
    for _ in range(RUNS):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", SCRIPT, stack, json.dumps(overrides), sha_path],
                              cwd=ROOT, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        count = int(proc.stdout.strip().splitlines()[-1])
    return times, count


def main() -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write(SHA_FILE)
    cases = [("staging", {}, None), ("production", {}, 3.0),
             ("synthetic 2x20 (staging)", {"ecom-infra:apps": json.dumps(SYNTHETIC)}, 6.0)]
    for label, overrides, target in cases:
        stack = label.split()[0] if not label.startswith("synthetic") else "staging"
        times, count = time_stack(stack, overrides, f.name)
        verdict = "" if target is None else (" ok" if max(times) < target else " OVER TARGET")
        print(f"plan {label:28s} resources={count:4d} best={min(times):.2f}s median={statistics.median(times):.2f}s "
              f"worst={max(times):.2f}s" + (f" target<{target:.0f}s{verdict}" if target else ""))
    Path(f.name).unlink()


if __name__ == "__main__":
    main()
