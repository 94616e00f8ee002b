"""The fault matrix: faults injected into the running platform under a steady client, one shared fleet.

For each case: how many requests failed (a client asks for the shop's health path through the EIP every
50 ms), seconds from the fault until every server is UP on both HAProxy nodes and no request failed since,
whether that needed a run of `make up`, whether the next run converges (exit 0, every server runs the
staged release), and what was left behind (a drained or down server, a release folder no build finished,
a revisions.log whose last line is not the release puma runs). The suite prints the table at the end
(tests/faults/conftest.py). Cases run in file order and each leaves the platform serving.

Cases (distinct code paths): the deploy SIGKILLed during the build (precompile), while the new release
boots in puma's idle slot (the build), and in the publish after the switch; the live puma killed; nginx killed; an app host killed (the next
run starts it again); an app host whose sshd died (the next run reboots it, as AWS auto-recovery would);
an app server rebooted (units stopped, then started in boot order); the HAProxy node holding the EIP killed.
"""
from __future__ import annotations

import subprocess
import threading
import time

import pytest

from components.remote_steps import as_root
from fleet import hosts as fleet_hosts
from fleet.local import FLEET_NAME
from fleet.probe import ClientLoop, Platform
from fleet.ssh.connection import Connection
from fleet.ssh.runner import SshRunner
from tests.platform.test_local_fleet import KILL_DEPLOY_IN_PRECOMPILE, kill_deploy_when

from .conftest import ROWS

pytestmark = [pytest.mark.fleet, pytest.mark.faults]

SHOP = "shop.ecom.test"
APP = "ecom-platform"
SERVERS = {"ecom-platform": ("ecom-platform-1", "ecom-platform-2"), "ecom-docs": ("ecom-docs-1",)}
NODES = ("haproxy-a", "haproxy-b")
QUIET_S = 13.0       # how long a fault may take to heal by itself before the next run is needed to heal it
STABLE_S = 7.0       # UP this long counts as healed: HAProxy marks a server DOWN after 3 failed checks, 2 s apart

# On ecom-platform-1: SIGKILL the release-publish (the drained wrapper, which holds the drain lock when it drains,
# and its whole session) at a chosen point: `switched` (`current` and nginx's link switched, the health check, the
# hooks or the finishing under way). Polled every 10 ms: the publish is a switch now, over in a few tenths of a
# second. Detached (own session), so the kill cannot take it along; writes "<epoch seconds> <current>" (or
# "never") to the result file.
KILL_DRAINED_PUBLISH = r"""
result=/root/fault-kill.result
rm -f "$result"
setsid bash -c '
app=/srv/www/ecom-platform
before=$(readlink "$app/current")
seen=""
for _ in $(seq 4800); do
  pids=$(pgrep -f "ECOM_DRAINED_STE[P]" || true)
  if [ -n "$pids" ]; then
    [ -n "$seen" ] || seen=$(date +%s%N)
    now=$(date +%s%N)
    case "$2" in
      switched) [ "$(readlink "$app/current")" != "$before" ] ;;
    esac && {
      for pid in $pids; do
        session=$(ps -o sid= -p "$pid" | tr -d " ")
        if [ -n "$session" ]; then pkill -KILL -s "$session" || true; fi
      done
      echo "$(date +%s.%N) $(readlink "$app/current")" > "$1"
      exit 0
    }
  fi
  sleep 0.01
done
echo never > "$1"
' killer "$result" POINT </dev/null >/dev/null 2>&1 &
"""

# The live puma slot's pid file (the slot nginx's link names), as a shell snippet setting $pidfile.
LIVE_PID_FILE = r"""
slot=$(readlink /srv/www/ecom-platform/slots/puma.sock); slot=${slot##*/puma-}; slot=${slot%.sock}
pidfile=/srv/www/ecom-platform/shared/tmp/pids/puma-$slot.pid
"""

# What a server holds of a release, in one line: current, the release the live slot's puma master runs (its cwd),
# release folders with no `built` marker (half-made), and revisions.log's last line.
RELEASE_FACTS = LIVE_PID_FILE + r"""
app=/srv/www/ecom-platform
current=$(basename "$(readlink "$app/current")")
running=$(basename "$(readlink "/proc/$(cat "$pidfile")/cwd")")
half=""
for dir in "$app"/releases/*; do
  name=$(basename "$dir")
  [ -e "$app/meta/$name/built" ] || half="$half$name,"
done
printf '%s|%s|%s|%s\n' "$current" "$running" "$half" "$(tail -n 1 "$app/revisions.log")"
"""


# ----------------------------------------------------------------------------- looking


STATS = as_root("echo 'show stat' | socat stdio /run/haproxy/admin.sock")


def node_connections(platform: Platform) -> dict[str, tuple[str, Connection]]:
    """{node: (address, connection)}, read once: `up` rewrites the plan file while a case runs."""
    plan = platform.plan()
    found = {}
    for node in NODES:
        inputs = next(r["inputs"]["connection"] for r in plan["resources"]
                      if r["type"] == "command:remote:Command" and r["name"].startswith(f"{node}-"))
        found[node] = (plan["hosts"][node]["privateIp"], Connection.from_inputs(inputs, node))
    return found


def all_up(nodes: dict[str, tuple[str, Connection]]) -> bool:
    """Every server of every app is UP (not drained, not down) on both HAProxy nodes."""
    try:
        with SshRunner(log=lambda line: None) as ssh:
            for address, conn in nodes.values():
                if not fleet_hosts.ssh_banner(address, timeout=0.5):
                    return False     # a dead node: do not wait for SSH's dial retries
                result = ssh.run(conn, STATS)
                rows = [line.split(",") for line in result.stdout.splitlines()]
                status = {(row[0], row[1]): row[17].split(" ")[0] for row in rows if len(row) > 17}
                if result.exit_code != 0 or any(status.get((app, server)) != "UP"
                                                for app, servers in SERVERS.items() for server in servers):
                    return False
        return True
    except Exception:   # noqa: BLE001 - a node that does not answer (dead host, no stats) is not normal
        return False


class Watcher:
    """Samples all_up() in the background for the whole case: (monotonic time, every server UP)."""

    def __init__(self, platform: Platform):
        self.nodes = node_connections(platform)
        self.samples: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), all_up(self.nodes)))
            time.sleep(0.2)

    def normal_since(self, after: float) -> float | None:
        """The first sample after `after` from which every later sample is UP; None if the last one is not."""
        since = None
        for at, up in self.samples:
            if at < after:
                continue
            if not up:
                since = None
            elif since is None:
                since = at
        return since

    def wait_normal(self, after: float, timeout: float) -> float | None:
        """When every server has been UP since, for STABLE_S (a fault shows in HAProxy only after its checks
        fail); None if that did not happen within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            since = self.normal_since(after)
            if since is not None and self.samples[-1][0] - since >= STABLE_S:
                return since
            time.sleep(0.2)
        return None

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def release_facts(platform: Platform, server: str) -> dict:
    current, running, half, last = platform.on_host(server, RELEASE_FACTS).strip().split("|", 3)
    return {"current": current, "running": running, "half": [n for n in half.split(",") if n], "last": last}


def leftovers(platform: Platform) -> list[str]:
    """What a fault or its recovery left behind; empty when nothing."""
    found = []
    if not all_up(node_connections(platform)):
        found.append("a server not UP on both HAProxy nodes")
    for server in SERVERS[APP]:
        facts = release_facts(platform, server)
        if facts["half"]:
            found.append(f"{server}: half-made release {facts['half']}")
        if facts["running"] != facts["current"]:
            found.append(f"{server}: puma runs {facts['running']}, current is {facts['current']}")
        words = facts["last"].split()
        if len(words) < 5 or words[1] != "deployed" or f"release={facts['current']}" not in words:
            found.append(f"{server}: revisions.log ends with {facts['last']!r}, current is {facts['current']}")
    return found


def runs_staged(platform: Platform, sha: str) -> bool:
    return all(release_facts(platform, server)["running"].endswith(sha[:12]) for server in SERVERS[APP])


def staged_sha(platform: Platform) -> str:
    doc = platform.plan()
    return doc["outputs"]["apps"][APP]["sha"]


# ----------------------------------------------------------------------------- one case


def run_case(platform: Platform, name: str, inject, *, zero_failures: bool = False) -> dict:
    """Inject a fault under the steady client, let it heal by itself for QUIET_S, run `make up` once, check."""
    with ClientLoop(platform, SHOP) as client, Watcher(platform) as watcher:
        time.sleep(0.5)
        faulted = inject()
        healed = watcher.wait_normal(faulted, QUIET_S)
        run_started = time.monotonic()
        nxt = platform.local("up", check=False)
        run_seconds = time.monotonic() - run_started
        watcher.wait_normal(faulted, 60)
        time.sleep(0.5)
    # Healed by itself: up to that point (the next run's own drains are not the fault's); else after the run.
    normal = healed if healed is not None else watcher.normal_since(faulted)
    until = run_started if healed is not None else float("inf")
    failures = [t for t, ok in client.events if not ok and faulted <= t < until]
    row = {"case": name, "requests": client.ok + client.failed, "failed": client.failed,
           "to_normal": (max([normal, *failures]) - faulted) if normal is not None else "never",
           "run_needed": healed is None, "run_s": run_seconds,
           "converges": nxt.returncode == 0 and runs_staged(platform, staged_sha(platform)),
           "next_run": nxt}
    left = leftovers(platform)
    row["left"] = "; ".join(left) or "nothing"
    ROWS.append({k: v for k, v in row.items() if k != "next_run"})
    print(f"\n[faults] {name}: {row['failed']} of {row['requests']} failed ({client.errors[:3]}), "
          f"to normal {row['to_normal']}, run needed: {row['run_needed']}, next run exit {nxt.returncode} "
          f"({run_seconds:.0f} s), left: {row['left']}")
    assert nxt.returncode == 0, f"{name}: the next run failed:\n{nxt.stdout[-2000:]}\n{nxt.stderr[-2000:]}"
    assert row["converges"], f"{name}: the next run did not make every server run the staged release"
    assert not left, f"{name}: left behind: {left}"
    assert watcher.normal_since(faulted) is not None, f"{name}: not every server UP on both nodes after the run"
    if zero_failures:
        assert client.failed == 0, f"{name}: {client.failed} failed requests: {client.errors[:5]}"
    return row


def epoch_to_monotonic(epoch: float) -> float:
    return epoch - (time.time() - time.monotonic())


def killed_deploy(platform: Platform, point: str) -> float:
    """Run `make up` while ecom-platform-1's drained publish is SIGKILLed at `point`; the kill's time."""
    platform.on_host("ecom-platform-1", KILL_DRAINED_PUBLISH.replace("POINT", point))
    failed = platform.local("up", check=False)
    result = platform.on_host("ecom-platform-1", "cat /root/fault-kill.result").split()
    assert result and result[0] != "never", f"the publish never reached {point!r}"
    assert failed.returncode != 0 and "ecom-platform-1-release-publish" in failed.stdout + failed.stderr
    return epoch_to_monotonic(float(result[0]))


# ----------------------------------------------------------------------------- the cases


def test_a_host_that_refuses_the_login_ends_the_run_in_one_line(platform):
    """Issue 15 item 2: a host the run cannot reach ends it with one line naming the host and what failed,
    exit 1, no traceback, and nothing run on any host (the executor's state is untouched)."""
    pid = fleet_hosts.pid1(FLEET_NAME, "ecom-docs-1")
    keys = "/home/admin/.ssh/authorized_keys"

    def in_host(*argv: str) -> None:     # the host's own mount namespace and root, from this machine
        subprocess.run(["nsenter", "-t", str(pid), "-m", "-r", "--", *argv], check=True)

    state = (platform.state / "executor-state.json").read_bytes()
    in_host("mv", keys, keys + ".off")
    try:
        failed = platform.local("up", check=False)
    finally:
        in_host("mv", keys + ".off", keys)
    said = [line for line in failed.stderr.splitlines() if line.strip()]
    assert failed.returncode == 1, failed.stdout[-2000:] + failed.stderr[-2000:]
    assert "Traceback" not in failed.stderr and len(said) == 1, failed.stderr
    assert said[0].startswith("fleet.local: error: ecom-docs-1 (") and "cannot log in over SSH" in said[0], said
    assert "Permission denied" in said[0]
    assert (platform.state / "executor-state.json").read_bytes() == state


def killed_build(platform: Platform, killer_script: str, what: str) -> float:
    """Run `make up` while `killer_script` (tests.platform.test_local_fleet.kill_deploy_when) kills ecom-platform-1's
    release-build; the kill's time."""
    killed: list[float] = []
    killer = threading.Thread(target=lambda: (platform.on_host("ecom-platform-1", killer_script),
                                              killed.append(time.monotonic())), daemon=True)
    killer.start()
    failed = platform.local("up", check=False)
    killer.join(timeout=120)
    assert killed, f"the {what} was never seen"
    assert failed.returncode != 0 and "ecom-platform-1-release-build" in failed.stdout + failed.stderr
    return killed[0]


def test_deploy_killed_in_the_build(platform):
    """The old release keeps serving (nothing was switched or restarted); the next run sweeps the half-made
    release and deploys."""
    platform.stage(APP, "asset-change")          # an asset change: the build precompiles

    def kill() -> float:
        at = killed_build(platform, KILL_DEPLOY_IN_PRECOMPILE, "precompile")
        assert release_facts(platform, "ecom-platform-1")["half"], "the kill left no half-made release"
        return at

    run_case(platform, "deploy SIGKILLed in the build (precompile)", kill, zero_failures=True)
    assert "removed unfinished release" in platform.step_output("ecom-platform-1-release-build")


# The build's health check on the idle slot's socket, while the new release boots there. puma itself is systemd's,
# so it lives on, half-booted or booted, with no ready marker.
KILL_DEPLOY_IN_BOOT = kill_deploy_when("curl .*--unix-socket /srv/www/ecom-platform/shared/tmp/socket[s]/puma-")


def test_deploy_killed_while_the_new_release_boots(platform):
    """Nothing switched: the live slot keeps serving, the server is UP, and the next run boots the release in the
    idle slot again (no ready marker: a half-booted slot is never switched to) and deploys."""
    platform.stage(APP, "r1")
    run_case(platform, "deploy SIGKILLed while the release boots",
             lambda: killed_build(platform, KILL_DEPLOY_IN_BOOT, "boot"), zero_failures=True)
    assert "booting: " in platform.step_output("ecom-platform-1-release-build")


def test_deploy_killed_after_the_switch(platform):
    """`current` was switched but the publish never finished: the next run logs the switch as unfinished,
    restarts puma on what `current` names and finishes the deploy."""
    platform.stage(APP, "r2")
    run_case(platform, "deploy SIGKILLed after the switch", lambda: killed_deploy(platform, "switched"))
    log = platform.on_host("ecom-platform-1", "cat /srv/www/ecom-platform/revisions.log")
    assert " unfinished " in log


def test_puma_killed(platform):
    """systemd restarts the live slot's puma (Restart=always); HAProxy retries the idempotent requests that hit it."""
    def kill() -> float:
        platform.on_host("ecom-platform-1", LIVE_PID_FILE + 'kill -KILL "$(cat "$pidfile")"')
        return time.monotonic()

    row = run_case(platform, "puma SIGKILLed", kill)
    assert not row["run_needed"]


def test_nginx_killed(platform):
    """systemd restarts nginx (the nginx-site step's drop-in; Debian's unit alone would leave it dead)."""
    def kill() -> float:
        platform.on_host("ecom-platform-1", "kill -KILL \"$(cat /run/nginx.pid)\"")
        return time.monotonic()

    row = run_case(platform, "nginx SIGKILLed", kill)
    assert not row["run_needed"], "nginx stayed dead until a run"


def test_app_host_killed_is_started_again_by_the_next_run(platform):
    """Issue 15 item 2: a dead host is a stopped instance; `up` starts it again, says so, and converges."""
    def kill() -> float:
        assert fleet_hosts.kill_host(FLEET_NAME, "ecom-platform-2") > 0
        return time.monotonic()

    row = run_case(platform, "app host killed (power cut)", kill)
    assert row["run_needed"]
    said = row["next_run"].stdout
    assert "[fleet] ecom-platform-2: not running (its systemd is not running): started again" in said
    assert said.count("not running (") == 1       # no other host was touched


def test_app_host_whose_sshd_died_is_rebooted_by_the_next_run(platform):
    """systemd runs but sshd is dead (a failed status check): `up` reboots the host, as auto-recovery would."""
    def kill() -> float:
        # --runtime: the mask lives in /run, so the reboot brings sshd back as a new boot would. Detached:
        # stopping sshd ends this very session.
        platform.on_host("ecom-platform-2", "setsid bash -c 'sleep 0.3; systemctl mask --runtime --now "
                                            "ssh.service' </dev/null >/dev/null 2>&1 &")
        address = platform.plan()["hosts"]["ecom-platform-2"]["privateIp"]
        deadline = time.monotonic() + 30
        while fleet_hosts.ssh_banner(address, timeout=0.5):
            assert time.monotonic() < deadline, "sshd still answers 30 s after it was stopped"
            time.sleep(0.1)
        return time.monotonic()

    row = run_case(platform, "app host sshd dead (failed status check)", kill)
    said = row["next_run"].stdout
    assert "[fleet] ecom-platform-2: not running (systemd runs but sshd has not answered" in said
    assert "rebooted, as AWS auto-recovery would" in said


def test_app_server_reboot(platform):
    """`systemctl reboot`: every unit stopped in order, the host gone; the next run starts it and its enabled
    units (nginx, puma, the HAProxy agent) come up in boot order."""
    def reboot() -> float:
        platform.on_host("ecom-platform-2", "setsid bash -c 'sleep 0.5; systemctl reboot' "
                                            "</dev/null >/dev/null 2>&1 &")
        rebooted = time.monotonic()
        deadline = rebooted + 60
        while fleet_hosts.pid1(FLEET_NAME, "ecom-platform-2") is not None:
            assert time.monotonic() < deadline, "the host did not go down within 60 s of systemctl reboot"
            time.sleep(0.2)
        return rebooted

    row = run_case(platform, "app server rebooted (units stopped in order)", reboot)
    assert row["run_needed"]


def test_haproxy_node_holding_the_eip_killed(platform):
    """keepalived on the other node takes the EIP; the next run starts the dead node again as BACKUP."""
    holder = platform.eip_holder()
    other = {"haproxy-a": "haproxy-b", "haproxy-b": "haproxy-a"}[holder]

    def kill() -> float:
        assert fleet_hosts.kill_host(FLEET_NAME, holder) > 0
        return time.monotonic()

    row = run_case(platform, f"HAProxy node killed ({holder}, held the EIP)", kill)
    assert row["run_needed"]
    assert platform.eip_holder() == other      # nopreempt: the EIP does not flap back
