"""Benchmark: time from `python -m fleet up` to every host's sshd answering, and memory per idle host.

    sudo .venv/bin/python bench/fleet_start.py [--hosts 5] [--idle 5]

Starts a fleet `ecombench` of N hosts (fresh ed25519 host keys, a free 10.213.x.0/24), measures wall-clock
time from launching `up` until each host's sshd sent its banner (checked here, independently of `up`'s own
report), lets the hosts idle, then sums PSS and RSS over each host's process tree (its cgroup) and the fleet's
moto and EIP daemons. The fleet is always removed at the end, also when the run fails. Target: < 20 s start.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet import hosts  # noqa: E402
from tests.fleet.conftest import free_cidr, keypair, make_spec  # noqa: E402

NAME = "ecombench"
TARGET_S = 20.0


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleet", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=check)


def measure_start(spec: dict, spec_path: Path) -> tuple[float, dict[str, float], float]:
    """(seconds until all sshd answered, per-host seconds, seconds `up` itself took)."""
    started = time.monotonic()
    up = subprocess.Popen([sys.executable, "-m", "fleet", "up", "--spec", str(spec_path)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    answered: dict[str, float] = {}
    pending = {h["name"]: h["address"] for h in spec["hosts"]}
    while pending and time.monotonic() - started < 120:
        for name, address in list(pending.items()):
            if hosts.ssh_banner(address, timeout=0.2):
                answered[name] = time.monotonic() - started
                del pending[name]
        if up.poll() not in (None, 0):
            break
        time.sleep(0.02)
    output, _ = up.communicate(timeout=120)
    up_seconds = time.monotonic() - started
    if up.returncode != 0 or pending:
        raise SystemExit(f"fleet did not come up (exit {up.returncode}, no sshd on {sorted(pending)}):\n{output}")
    return max(answered.values()), answered, up_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds to let hosts settle before measuring")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: must run as root")
    cli("down", "--name", NAME)
    _private, client_public = keypair()
    names = tuple(f"ecom-bench-{i + 1}" for i in range(args.hosts))
    spec, _publics = make_spec(NAME, f"{NAME}br0", free_cidr(), names, client_public)
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as work:
        spec_path = Path(work, "spec.json")
        spec_path.write_text(json.dumps(spec))
        spec_path.chmod(0o600)
        try:
            all_up, per_host, up_seconds = measure_start(spec, spec_path)
            time.sleep(args.idle)
            memory = {name: hosts.memory_kib(hosts.host_cgroup(NAME, name)) for name in names}
            daemons = {svc: hosts.memory_kib(hosts.fleet_cgroup(NAME) / svc) for svc in ("moto", "eip")}
        finally:
            down_started = time.monotonic()
            cli("down", "--name", NAME)
            down_seconds = time.monotonic() - down_started
    print(f"fleet start, {args.hosts} hosts: all sshd answering after {all_up:.2f} s "
          f"(target < {TARGET_S:.0f} s: {'OK' if all_up < TARGET_S else 'MISSED'}); `up` returned after "
          f"{up_seconds:.2f} s; `down` took {down_seconds:.2f} s")
    print(f"{'host':<16} {'sshd after s':>12} {'processes':>9} {'PSS MiB':>8} {'RSS MiB':>8}")
    for name in names:
        mem = memory[name]
        print(f"{name:<16} {per_host[name]:>12.2f} {mem['processes']:>9} {mem['pss'] / 1024:>8.1f} "
              f"{mem['rss'] / 1024:>8.1f}")
    pss = [memory[n]["pss"] / 1024 for n in names]
    print(f"idle host average: PSS {sum(pss) / len(pss):.1f} MiB (RSS counts shared pages once per host)")
    for svc, mem in daemons.items():
        print(f"fleet {svc} daemon: PSS {mem['pss'] / 1024:.1f} MiB, RSS {mem['rss'] / 1024:.1f} MiB")
    return 0 if all_up < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
