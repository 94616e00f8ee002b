"""Benchmark: failed requests while puma restarts on one app server, with no HAProxy drain, under a steady client.

Two ways, on ecom-platform-1's live puma slot while ecom-platform-2 serves too (HAProxy round-robins between them):
  socket held    `systemctl restart` of the live slot's service: its socket unit keeps the listening socket, so
                 requests wait in the backlog for the new puma (what a crash or a reboot of puma costs)
  socket closed  the live slot's service and socket stopped, 3 s (puma's boot here), then started: nginx finds no
                 socket meanwhile (what a restart did when puma bound its own socket)
A publish restarts nothing the live slot serves: the release boots in the other slot and nginx switches to it; the
rolling deploys below measure that.
The client alternates GET and POST /health. HAProxy replays a GET that got 502 on the other server (retry-on), never
a POST once nginx answered, so POSTs show what a restart costs: the app has no POST route and Rails answers 404, so
any answer below 500 was served by puma; a 5xx or no answer is a failed request. Printed per way: failed GETs and
POSTs of all sent, and the slowest served answer (one that waited for puma's boot). The client waits up to 15 s per
request, as a browser would, and sends the next one 50 ms after an answer.
Then three rolling deploys of ecom-platform (`make up` after staging a code change) under the same client.
Needs root; starts the fleet and takes it down again.

`--phases` measures instead where a restart's time goes on that server, with no client: `systemctl stop` of puma
(graceful) and from `systemctl start` to the first 200 through nginx (puma's boot; the request waits in the socket),
3 rounds each, for puma as deployed and for variants of its config applied by hand on the host (then undone), and
how long Ruby, bundler and the app's environment take to load on their own.

    .venv/bin/python bench/restart.py            (as root; about 3 minutes)
    .venv/bin/python bench/restart.py --phases   (as root; about 3 minutes)
"""
from __future__ import annotations

import shlex
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from fleet.probe import Platform, fresh_platform

SHOP = "shop.ecom.test"
SERVER = "ecom-platform-1"
# puma's live slot on the server (the one nginx's link names), as a shell prefix setting $slot; the commands below
# name its units through it.
LIVE_SLOT = ('slot=$(readlink /srv/www/ecom-platform/slots/puma.sock); slot=${slot##*/puma-}; slot=${slot%.sock}; '
             'case "$slot" in a|b) ;; *) echo "no live puma slot" >&2; exit 1 ;; esac; ')
UNIT, SOCKET = "puma-ecom-platform@$slot.service", "puma-ecom-platform@$slot.socket"
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


def under_client(platform: Platform, label: str, action: Callable[[], None], after_s: float = 3.0,
                 timeout_s: float = 15.0) -> Restart:
    """Run `action` under a steady client alternating GET and POST through the EIP, from 1 s before to `after_s`
    after it."""
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
        action()
        time.sleep(after_s)
    finally:
        stop.set()
        thread.join(timeout_s + 5)
    failed = [why for _, ok, _, why in results if not ok]
    slowest = max((seconds for _, ok, seconds, _ in results if ok), default=0.0)
    failed_gets = sum(1 for m, ok, _, _ in results if m == "GET" and not ok)
    failed_posts = sum(1 for m, ok, _, _ in results if m == "POST" and not ok)
    return Restart(label, failed_gets, failed_posts, len(results), slowest, tuple(failed[:5]))


def restart(platform: Platform, way: str, after_s: float = 3.0, timeout_s: float = 15.0) -> Restart:
    """Restart puma on SERVER the given way under the client; watch until puma answers again + `after_s`."""
    def action() -> None:
        platform.on_host(SERVER, LIVE_SLOT + WAYS[way])
        # Until puma on this server answers its own health check again (nginx on the host, through the socket).
        platform.on_host(SERVER, "for _ in $(seq 1 600); do curl -sf -o /dev/null --max-time 5 "
                                 "-H 'Host: shop.ecom.test' http://127.0.0.1/health && exit 0; sleep 0.1; done; exit 1")
    return under_client(platform, way, action, after_s, timeout_s)


def deploy(platform: Platform, tag: str, after_s: float = 3.0) -> Restart:
    """A rolling deploy of ecom-platform's `tag` (`make up`: both servers, as the stack's drainRestarts says) under
    the client."""
    platform.stage("ecom-platform", tag)

    def action() -> None:
        platform.local("up")
    return under_client(platform, f"deploy of {tag}", action, after_s)


def report(result: Restart) -> None:
    what = result.way if result.way.startswith("deploy") else f"puma restart on {SERVER}, no drain, {result.way}"
    print(f"{what}: failed {result.failed_get} GET + {result.failed_post} "
          f"POST of {result.requests}; slowest served answer {result.slowest_s:.2f} s"
          f"{'; e.g. ' + result.errors[0] if result.errors else ''}", flush=True)


PUMA_RB = "/srv/www/ecom-platform/config/puma.rb"
DROP_IN = f"/etc/systemd/system/{UNIT}.d/bench.conf"
# Each variant: a root script that changes puma's config on the host (undone by UNDO).
VARIANTS = {
    "as deployed": ":",
    "no preload_app!": f"cp {PUMA_RB} {PUMA_RB}.bench && sed -i '/^preload_app!$/d' {PUMA_RB}",
    "single mode (workers 0)": f"cp {PUMA_RB} {PUMA_RB}.bench && echo 'workers 0' >> {PUMA_RB}",
    "ruby -rbundler/setup (no bundle exec)":
        f"mkdir -p {DROP_IN.rsplit('/', 1)[0]} && printf '[Service]\\nExecStart=\\nExecStart=/usr/bin/ruby "
        f"-rbundler/setup /usr/bin/puma -C {PUMA_RB}\\n' > {DROP_IN} && systemctl daemon-reload",
}
UNDO = (f"if [ -e {PUMA_RB}.bench ]; then mv {PUMA_RB}.bench {PUMA_RB}; fi; "
        f"if [ -e {DROP_IN} ]; then rm -f {DROP_IN}; systemctl daemon-reload; fi")
# One restart, timed in ms: the stop, then the start until nginx answers 200 through the socket.
TIMED_RESTART = f"""
ms() {{ echo $(( ${{EPOCHREALTIME//[!0-9]/}} / 1000 )); }}
log=/srv/www/ecom-platform/shared/log/puma.stdout.log
# Restarts this quick would hit systemd's start limit (5 in 10 s): reset it first, as the publish does.
systemctl reset-failed {UNIT} 2>/dev/null || true
t0=$(ms); systemctl stop {UNIT}; t1=$(ms); size=$(stat -c %s "$log"); systemctl start {UNIT} || exit 1
t2=""
for _ in $(seq 1500); do     # 30 s at least
  if curl -sf -o /dev/null --max-time 30 -H 'Host: {SHOP}' http://127.0.0.1/health; then t2=$(ms); break; fi
  sleep 0.02
done
if [ -z "$t2" ]; then echo "$((t1 - t0)) -1 no answer within 30 s"; exit 0; fi
booted=$(tail -c +"$((size + 1))" "$log" | grep -o 'booted in [0-9.]*s' | tail -n 1)
echo "$((t1 - t0)) $((t2 - t1)) worker ${{booted:-not forked}}"
"""
# What loading costs on its own, as the deploy user in the live release: ms per command (best of 3).
LOADS = {
    "ruby -e 0": "ruby -e 0",
    "bundle exec ruby -e 0": "bundle exec ruby -e 0",
    "ruby -rbundler/setup -e 0": "ruby -rbundler/setup -e 0",
    "bundle exec ruby -r ./config/environment -e 0 (Rails, eager load)":
        "RAILS_ENV=production bundle exec ruby -r ./config/environment -e 0",
}


def phases(platform: Platform) -> None:
    for name, command in LOADS.items():
        best = platform.on_host(SERVER, f"""cd /srv/www/ecom-platform/current
best=""; for _ in 1 2 3; do t0=${{EPOCHREALTIME//[!0-9]/}}
runuser -u deploy -- bash -c {shlex.quote(command)} >/dev/null 2>&1 || echo failed
ms=$(( (${{EPOCHREALTIME//[!0-9]/}} - t0) / 1000 )); if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
done; echo "$best" """).split()[-1]
        print(f"load, {name}: {best} ms", flush=True)
    for variant, change in VARIANTS.items():
        platform.on_host(SERVER, LIVE_SLOT + change)
        try:
            platform.on_host(SERVER, LIVE_SLOT + TIMED_RESTART)          # the variant takes effect (not counted)
            for _ in range(3):
                stop_ms, start_ms, booted = platform.on_host(SERVER, LIVE_SLOT + TIMED_RESTART).strip().split(" ", 2)
                answered = f"{int(start_ms) / 1000:.2f} s" if int(start_ms) >= 0 else "never"
                print(f"puma on {SERVER}, {variant}: stop {int(stop_ms) / 1000:.2f} s, start to first 200 "
                      f"{answered} (puma: {booted})", flush=True)
        finally:
            platform.on_host(SERVER, LIVE_SLOT + UNDO)
    platform.on_host(SERVER, LIVE_SLOT + TIMED_RESTART)


def main() -> int:
    with fresh_platform() as platform:
        platform.local("up")
        if "--phases" in sys.argv[1:]:
            phases(platform)
            return 0
        for way in WAYS:
            for _ in range(3):
                report(restart(platform, way))
        for tag in ("code-change", "r1", "r2"):
            report(deploy(platform, tag))
    return 0


if __name__ == "__main__":
    sys.exit(main())
