"""Benchmark: HAProxy failover and a rolling deploy on the local fleet, under a steady client.

1. Failover, 3 rounds: a client requests the shop's health path through the EIP every 50 ms; HAProxy
   is stopped (`systemctl stop`) on the node holding the EIP, started again once the EIP has moved, and
   the next round stops it on the new holder. Printed per round and as min/median: seconds from the stop
   to moto showing the EIP on the other node, the client's outage (first failure to the next success),
   failed requests, and whether the EIP moved exactly once (no flapping). Target: outage <= 1.5 s.
2. Rolling deploy of the 2 ecom-platform servers (a code-only change) under the same client:
   failed requests (target 0) and total seconds.
Needs root; starts the fleet and takes it down again.

    .venv/bin/python bench/failover.py            (as root; about 3 minutes)
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass

from fleet.probe import ClientLoop, Platform, fresh_platform

SHOP = "shop.ecom.test"
PEER = {"haproxy-a": "haproxy-b", "haproxy-b": "haproxy-a"}


@dataclass(frozen=True)
class Failover:
    stopped_on: str
    moved_s: float            # stop -> moto shows the EIP on the peer
    outage_s: float           # the client's first failure -> its next success
    failed: int
    requests: int
    holders: tuple[str | None, ...]  # every holder seen from the stop to the end of the round, in order


def failover(platform: Platform, settle_s: float = 5.0) -> Failover:
    """Stop haproxy on the EIP's holder, watch the EIP and the client, start haproxy again and watch
    `settle_s` more seconds (a node that took the EIP back would show up in `holders`)."""
    master = platform.eip_holder()
    if master is None:
        raise SystemExit("failover: no HAProxy node holds the EIP before the stop")
    other = PEER[master]
    holders: list[str | None] = []
    with ClientLoop(platform, SHOP) as client:
        time.sleep(1.0)
        stopped = time.monotonic()
        platform.on_host(master, "systemctl stop haproxy")
        moved = None
        while time.monotonic() - stopped < 30:
            holder = platform.eip_holder()
            if not holders or holders[-1] != holder:
                holders.append(holder)
            if holder == other and moved is None:
                moved = time.monotonic() - stopped
            if moved is not None and time.monotonic() - stopped > moved + 2.0:
                break
            time.sleep(0.05)
        platform.on_host(master, "systemctl start haproxy")
        settle_until = time.monotonic() + settle_s
        while time.monotonic() < settle_until:
            holder = platform.eip_holder()
            if holders[-1] != holder:
                holders.append(holder)
            time.sleep(0.2)
    after = [(t, ok) for t, ok in client.events if t >= stopped]
    first_failure = next((t for t, ok in after if not ok), None)
    recovered = next((t for t, ok in after if ok and first_failure and t > first_failure), None)
    outage = (recovered - first_failure) if first_failure and recovered else 0.0
    return Failover(master, moved if moved is not None else float("inf"), outage, client.failed,
                    client.ok + client.failed, tuple(holders))


def failovers(platform: Platform, rounds: int = 3) -> list[Failover]:
    results = []
    for index in range(rounds):
        result = failover(platform)
        results.append(result)
        print(f"failover {index + 1}/{rounds}: haproxy stopped on {result.stopped_on}; EIP moved after "
              f"{result.moved_s:.2f} s; client outage {result.outage_s:.2f} s; failed {result.failed} of "
              f"{result.requests}; holders {' -> '.join(h or 'nobody' for h in result.holders)}", flush=True)
    outages = [r.outage_s for r in results]
    print(f"failover outage: min {min(outages):.2f} s, median {statistics.median(outages):.2f} s "
          f"(target <= 1.5 s)", flush=True)
    return results


def rolling(platform: Platform, tag: str = "code-change") -> tuple[float, int, int, str]:
    """Stage `tag` of ecom-platform and run `up` under the steady client: (seconds, failed, requests, up's output)."""
    platform.stage("ecom-platform", tag)
    with ClientLoop(platform, SHOP) as client:
        started = time.monotonic()
        out = platform.local("up").stdout
        seconds = time.monotonic() - started
    print(f"rolling deploy of 2 servers ({tag}): {seconds:.1f} s, failed requests {client.failed} of "
          f"{client.ok + client.failed} (target 0)", flush=True)
    return seconds, client.failed, client.ok + client.failed, out


def main() -> int:
    with fresh_platform() as platform:
        platform.local("up")
        rolling(platform)
        failovers(platform)
    return 0


if __name__ == "__main__":
    sys.exit(main())
