"""Benchmark: failed requests while puma restarts on one app server, with no HAProxy drain, under a steady client.

Two ways, on ecom-platform-1 while ecom-platform-2 serves too (HAProxy round-robins between them):
  socket held    `systemctl restart` of puma's service: its socket unit keeps the listening socket, so requests
                 wait in the backlog for the new puma (what a release's publish does now)
  socket closed  puma's service and socket stopped, 3 s (puma's boot here), then started: nginx finds no socket
                 meanwhile (what a restart did when puma bound its own socket)
Printed per way: failed requests of all sent, and the slowest successful answer (a request that waited for puma's
boot). The client waits up to 15 s per request, as a browser would, and sends the next one 50 ms after an answer.
Needs root; starts the fleet and takes it down again.

    .venv/bin/python bench/restart.py            (as root; about 3 minutes)
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from fleet.probe import Platform, fresh_platform

SHOP = "shop.ecom.test"
SERVER = "ecom-platform-1"
UNIT, SOCKET = "puma-ecom-platform.service", "puma-ecom-platform.socket"
WAYS = {
    "socket held": f"systemctl restart {UNIT}",
    # As when puma bound its own socket: no socket from puma's stop until the new puma has booted (about 3 s here).
    "socket closed": f"systemctl stop {UNIT} {SOCKET} && sleep 3 && systemctl start {UNIT}",
}


@dataclass(frozen=True)
class Restart:
    way: str
    failed: int
    requests: int
    slowest_s: float
    errors: tuple[str, ...]


def restart(platform: Platform, way: str, after_s: float = 3.0, timeout_s: float = 15.0) -> Restart:
    """Restart puma on SERVER the given way under a steady client; watch until puma answers again + `after_s`."""
    results: list[tuple[bool, float, str]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                status, _ = platform.get(SHOP, "/health", timeout=timeout_s)
                ok, why = status == 200, f"HTTP {status}"
            except OSError as exc:
                ok, why = False, str(exc)
            results.append((ok, time.monotonic() - started, why))
            time.sleep(0.05)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        platform.on_host(SERVER, WAYS[way])
        # Until puma on this server answers its own health check again (nginx on the host, through the socket).
        platform.on_host(SERVER, "for _ in $(seq 1 600); do curl -sf -o /dev/null --max-time 5 -H 'Host: shop.ecom.test' "
                                 "http://127.0.0.1/health && exit 0; sleep 0.1; done; exit 1")
        time.sleep(after_s)
    finally:
        stop.set()
        thread.join(timeout_s + 5)
    failed = [why for ok, _, why in results if not ok]
    slowest = max((seconds for ok, seconds, _ in results if ok), default=0.0)
    return Restart(way, len(failed), len(results), slowest, tuple(failed[:5]))


def report(result: Restart) -> None:
    print(f"puma restart on {SERVER}, no drain, {result.way}: failed {result.failed} of {result.requests}; "
          f"slowest answer {result.slowest_s:.2f} s{'; e.g. ' + result.errors[0] if result.errors else ''}", flush=True)


def main() -> int:
    with fresh_platform() as platform:
        platform.local("up")
        for way in WAYS:
            for _ in range(3):
                report(restart(platform, way))
    return 0


if __name__ == "__main__":
    sys.exit(main())
