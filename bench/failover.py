"""Benchmark: HAProxy failover and a rolling deploy on the local fleet, under a steady client.

1. Failover: a client requests the shop's health path through the EIP every 50 ms; HAProxy
   is stopped on the node holding the EIP. Printed: seconds from the stop to moto showing
   the EIP on the other node, seconds to the first successful response after the first
   failure, and failed requests (target <= 3 s).
2. Rolling deploy of the 2 ecom-platform servers (a code-only change) under the same client:
   failed requests (target 0) and total seconds.
Needs root; starts the fleet and takes it down again.
"""
from __future__ import annotations

import sys
import time

from fleet.probe import ClientLoop, Platform, fresh_platform

SHOP = "shop.ecom.test"


def failover(platform: Platform) -> None:
    master = platform.eip_holder()
    other = {"haproxy-a": "haproxy-b", "haproxy-b": "haproxy-a"}[master]
    with ClientLoop(platform, SHOP) as client:
        time.sleep(1.0)
        stopped = time.monotonic()
        platform.on_host(master, "systemctl stop haproxy")
        while platform.eip_holder() != other and time.monotonic() - stopped < 30:
            time.sleep(0.05)
        moved = time.monotonic() - stopped
        time.sleep(3.0)
    after = [(t, ok) for t, ok in client.events if t >= stopped]
    first_failure = next((t for t, ok in after if not ok), None)
    recovered = next((t for t, ok in after if ok and first_failure and t > first_failure), None)
    outage = (recovered - first_failure) if first_failure and recovered else 0.0
    print(f"failover: EIP on {other} {moved:.2f} s after stopping haproxy on {master}; "
          f"client outage {outage:.2f} s; failed requests {client.failed} of {client.ok + client.failed} "
          f"(target <= 3 s)")
    platform.on_host(master, "systemctl start haproxy")


def rolling(platform: Platform) -> None:
    platform.stage("ecom-platform", "code-change")
    with ClientLoop(platform, SHOP) as client:
        started = time.monotonic()
        platform.local("up")
        seconds = time.monotonic() - started
    print(f"rolling deploy of 2 servers: {seconds:.1f} s, failed requests {client.failed} of "
          f"{client.ok + client.failed} (target 0)")


def main() -> int:
    with fresh_platform() as platform:
        platform.local("up")
        rolling(platform)
        failover(platform)
    return 0


if __name__ == "__main__":
    sys.exit(main())
