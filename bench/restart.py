"""Benchmark: failed requests while puma restarts on one app server, with no HAProxy drain, under a steady client.

Two ways, on ecom-platform-1 while ecom-platform-2 serves too (HAProxy round-robins between them):
  socket held    `systemctl restart` of puma's service: its socket unit keeps the listening socket, so requests
                 wait in the backlog for the new puma (what a release's publish does now)
  socket closed  puma's service and socket stopped, 3 s (puma's boot here), then started: nginx finds no socket
                 meanwhile (what a restart did when puma bound its own socket)
The client alternates GET and POST /health. HAProxy replays a GET that got 502 on the other server (retry-on), never
a POST once nginx answered, so POSTs show what a restart costs: the app has no POST route and Rails answers 404, so
any answer below 500 was served by puma; a 5xx or no answer is a failed request. Printed per way: failed GETs and
POSTs of all sent, and the slowest served answer (one that waited for puma's boot). The client waits up to 15 s per
request, as a browser would, and sends the next one 50 ms after an answer.
Needs root; starts the fleet and takes it down again.

    .venv/bin/python bench/restart.py            (as root; about 3 minutes)
"""
from __future__ import annotations

import sys
import threading
import time
import urllib.error
import urllib.request
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
    failed_get: int
    failed_post: int
    requests: int
    slowest_s: float
    errors: tuple[str, ...]

    @property
    def failed(self) -> int:
        return self.failed_get + self.failed_post


def ask(platform: Platform, method: str, timeout_s: float) -> int:
    """The status of one request through the EIP (HTTPError carries it too)."""
    request = urllib.request.Request(f"http://{platform.fleet.eip_address}/health", method=method,
                                     data=b"" if method == "POST" else None, headers={"Host": SHOP})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def restart(platform: Platform, way: str, after_s: float = 3.0, timeout_s: float = 15.0) -> Restart:
    """Restart puma on SERVER the given way under a steady client; watch until puma answers again + `after_s`."""
    results: list[tuple[str, bool, float, str]] = []
    stop = threading.Event()

    def client() -> None:
        methods = ("GET", "POST")
        while not stop.is_set():
            method = methods[len(results) % 2]
            started = time.monotonic()
            try:
                status = ask(platform, method, timeout_s)
                ok, why = status < 500 and (method == "POST" or status == 200), f"{method} HTTP {status}"
            except OSError as exc:
                ok, why = False, f"{method} {exc}"
            results.append((method, ok, time.monotonic() - started, why))
            time.sleep(0.05)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        platform.on_host(SERVER, WAYS[way])
        # Until puma on this server answers its own health check again (nginx on the host, through the socket).
        platform.on_host(SERVER, "for _ in $(seq 1 600); do curl -sf -o /dev/null --max-time 5 "
                                 "-H 'Host: shop.ecom.test' http://127.0.0.1/health && exit 0; sleep 0.1; done; exit 1")
        time.sleep(after_s)
    finally:
        stop.set()
        thread.join(timeout_s + 5)
    failed = [why for _, ok, _, why in results if not ok]
    slowest = max((seconds for _, ok, seconds, _ in results if ok), default=0.0)
    failed_gets = sum(1 for m, ok, _, _ in results if m == "GET" and not ok)
    failed_posts = sum(1 for m, ok, _, _ in results if m == "POST" and not ok)
    return Restart(way, failed_gets, failed_posts, len(results), slowest, tuple(failed[:5]))


def report(result: Restart) -> None:
    print(f"puma restart on {SERVER}, no drain, {result.way}: failed {result.failed_get} GET + {result.failed_post} "
          f"POST of {result.requests}; slowest served answer {result.slowest_s:.2f} s"
          f"{'; e.g. ' + result.errors[0] if result.errors else ''}", flush=True)


def main() -> int:
    with fresh_platform() as platform:
        platform.local("up")
        for way in WAYS:
            for _ in range(3):
                report(restart(platform, way))
    return 0


if __name__ == "__main__":
    sys.exit(main())
