"""Benchmark: seconds per deploy phase on the local fleet (2 ecom-platform servers).

Phases: a first deploy (fleet start included, then the same deploy's remote steps), a
code-only change, an asset change and a no-op. For each: wall seconds of `fleet.local up`,
the executor's seconds, and the seconds of release-build / release-publish per server.
Targets: the code-only change under 50% of the first deploy's executor time; the no-op
runs no remote command. Needs root; starts the fleet and takes it down again.
"""
from __future__ import annotations

import re
import sys
import time

from fleet.probe import Platform, fresh_platform

# create/update/replace only: a replacement's old resource is deleted afterwards under the same name.
STEP = re.compile(r"^\[executor\] (\S+) (\S+): (create|update|replace) ok \(([0-9.]+) s\)$")
DONE = re.compile(r"^\[executor\] done in ([0-9.]+) s")


def measure(platform: Platform, label: str) -> dict:
    started = time.monotonic()
    out = platform.local("up").stdout
    wall = time.monotonic() - started
    steps = {m.group(2): float(m.group(4)) for m in map(STEP.match, out.splitlines()) if m}
    executor = next((float(m.group(1)) for m in map(DONE.match, out.splitlines()) if m), 0.0)
    row = {"phase": label, "wall": wall, "executor": executor, "commands": len(steps)}
    for server in ("ecom-platform-1", "ecom-platform-2"):
        row[f"{server} build"] = steps.get(f"{server}-release-build", 0.0)
        row[f"{server} publish"] = steps.get(f"{server}-release-publish", 0.0)
    return row


def main() -> int:
    with fresh_platform() as platform:
        rows = [measure(platform, "first deploy (fleet start included)")]
        platform.stage("ecom-platform", "code-change")
        rows.append(measure(platform, "code-only change"))
        platform.stage("ecom-platform", "asset-change")
        rows.append(measure(platform, "asset change"))
        rows.append(measure(platform, "no-op"))
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:.1f}" if isinstance(row[k], float) else str(row[k]) for k in keys))
    first, code = rows[0]["executor"], rows[1]["executor"]
    print(f"code-only / first deploy (executor seconds): {code / first:.0%} (target < 50%)")
    print(f"no-op remote commands: {rows[3]['commands']} (target 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
