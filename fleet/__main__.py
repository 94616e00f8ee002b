"""`python -m fleet`: start, stop and inspect the local fleet (system-container hosts on one machine).

    python -m fleet up --spec spec.json        start bridge, firewall, moto, EIP daemon and every host
    python -m fleet down [--name ecomfleet]    stop and remove everything the fleet made (also after a crash)
    python -m fleet status [--name ecomfleet]  hosts, systemd, whether sshd answers (--json for tools)
    python -m fleet eip --allocation-id ID     which Elastic IP allocation the fleet's EIP follows

Bad input or a machine that cannot run the fleet: one line `fleet: error: ...`, exit 2, nothing changed.
A failure while starting: the half-started fleet is removed (unless --keep-on-failure), exit 1.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

from ecom_infra.errors import ConfigError

from . import eip, hosts, imds, moto, network
from .hosts import say
from .network import FleetError
from .spec import STATE_ROOT, FleetSpec, HostSpec, load, load_saved, save, state_dir

DEFAULT_NAME = "ecomfleet"
SSHD_TIMEOUT = 60.0
SSHD_GRACE = 5.0
NEEDED_PROGRAMS = ("ip", "iptables", "iptables-restore", "unshare", "pivot_root", "mount", "umount", "sysctl",
                   "mknod", "findmnt", "hostname")
NEEDED_FILES = ("/lib/systemd/systemd", "/usr/sbin/sshd", "/usr/bin/sudo")
NAMESPACES = ("net", "pid", "mnt", "uts", "cgroup")


# ---- checks before anything changes ---------------------------------------------------------------------

def require_root() -> None:
    if os.geteuid() != 0:
        raise ConfigError("user", "the fleet must run as root (it creates namespaces, mounts and iptables rules)")


def check_programs() -> None:
    for program in NEEDED_PROGRAMS:
        if shutil.which(program) is None:
            raise ConfigError("machine", f"program {program} is missing (apt-get install iproute2 iptables util-linux)")
    for path in NEEDED_FILES:
        if not Path(path).exists():
            raise ConfigError("machine", f"{path} is missing (apt-get install systemd openssh-server sudo)")


def probe_kernel() -> None:
    """Prove this machine can create the namespaces and the overlay a host needs, in a throwaway namespace."""
    for ns in NAMESPACES:
        if not Path(f"/proc/self/ns/{ns}").exists():
            raise ConfigError("machine", f"the kernel has no {ns} namespaces")
    if "overlay" not in Path("/proc/filesystems").read_text().split():
        raise ConfigError("machine", "the kernel has no overlay file system")
    hosts.cgroup2_root()
    probe = STATE_ROOT / f".probe-{os.getpid()}"
    for sub in ("upper", "work", "root"):
        (probe / sub).mkdir(parents=True, exist_ok=True)
    try:
        script = (f"mount -t overlay overlay -o lowerdir=/,upperdir={probe}/upper,workdir={probe}/work "
                  f"{probe}/root")
        proc = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount", "--uts", "--cgroup",
                               "--propagation", "private", "--", "sh", "-c", script],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            detail = (proc.stderr.strip() or f"exit {proc.returncode}").splitlines()[0]
            raise ConfigError("machine", f"cannot create namespaces or an overlay root here: {detail}")
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(probe)], check=False)


def check_not_up(spec: FleetSpec) -> None:
    if state_dir(spec.name).exists():
        raise ConfigError("name", f"fleet {spec.name!r} already has state in {state_dir(spec.name)}",
                          f"python -m fleet down --name {spec.name}")
    taken = network.fleet_netns(spec.name)
    if taken:
        raise ConfigError("name", f"network namespace {taken[0]} already exists",
                          f"python -m fleet down --name {spec.name}")


def preflight(spec: FleetSpec) -> None:
    require_root()
    check_programs()
    probe_kernel()
    check_not_up(spec)
    network.check_bridge_name_free(spec)
    network.check_cidr_free(spec)


@contextmanager
def fleet_lock():
    """One up/down at a time on this machine (flock on the state root: no lock file left behind)."""
    STATE_ROOT.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd = os.open(STATE_ROOT, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with suppress(OSError):
            STATE_ROOT.rmdir()  # only succeeds when no fleet is left: leave no trace
        os.close(fd)


# ---- up / down -------------------------------------------------------------------------------------------

def start_all(spec: FleetSpec) -> None:
    started = time.monotonic()
    say("fleet", f"bridge {spec.bridge.name} {spec.bridge.gateway}/{spec.bridge.cidr.prefixlen}, "
                 f"EIP {spec.eip.address}, firewall chains {spec.chain_prefix}-*")
    network.create_bridge(spec)
    network.apply_firewall(spec)
    moto_proc = moto.start(spec)
    say("moto", f"starting on {spec.moto_endpoint}")
    boots: dict[str, tuple[subprocess.Popen, float]] = {}
    for index, host in enumerate(spec.hosts):
        say(host.name, "preparing its root (overlay upper layer)")
        hosts.prepare_root(spec, host)
        say(host.name, f"network {host.address} on {spec.bridge.name} (netns {spec.netns(host)})")
        network.create_host_link(spec, index, host)
        say(host.name, "booting systemd")
        boots[host.name] = (hosts.boot(spec, host), time.monotonic())
    say("moto", f"up ({moto.wait_ready(spec, moto_proc):.1f} s)")
    say("moto", f"EC2 warmed up ({moto.warm_up(spec):.1f} s: its first call loads the AMI catalogue)")
    eip.start(spec)  # after the warm-up: the follower's short timeouts would fail on moto's first EC2 call
    say("eip", f"following {spec.eip.allocation_id or '(no allocation yet)'} for {spec.eip.address}")
    say("imds", f"metadata service for the hosts at {imds.ADDRESS} ({spec.bridge.gateway}:{imds.PORT}): "
                f"up ({imds.start(spec):.1f} s)")
    wait_for_sshd(spec, boots)
    say("fleet", f"{len(spec.hosts)} hosts up in {time.monotonic() - started:.1f} s")


def wait_for_sshd(spec: FleetSpec, boots: dict[str, tuple[subprocess.Popen, float]]) -> None:
    pending = {host.name: str(host.address) for host in spec.hosts}
    deadline = time.monotonic() + SSHD_TIMEOUT
    while pending:
        for name, address in sorted(pending.items()):
            proc, booted_at = boots[name]
            if hosts.ssh_banner(address, timeout=0.2):
                say(name, f"sshd up ({time.monotonic() - booted_at:.1f} s)")
                del pending[name]
            elif proc.poll() is not None:
                log = hosts.host_dir(spec, spec.host(name)) / "boot.log"
                lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] or ["(no log)"]
                raise FleetError(f"{name}: host exited during boot: {lines[-1]}")
        if pending and time.monotonic() > deadline:
            raise FleetError(f"{sorted(pending)[0]}: sshd did not answer within {SSHD_TIMEOUT:.0f} s")
        time.sleep(0.05)


def host_problem(spec: FleetSpec, host: HostSpec) -> str | None:
    """Why a host of a running fleet is not running, or None when it is (systemd up and sshd answering)."""
    if not Path("/run/netns", spec.netns(host)).exists():
        return "its network namespace is gone"
    if hosts.pid1(spec.name, host.name) is None:
        return "its systemd is not running"
    deadline = time.monotonic() + SSHD_GRACE   # sshd being restarted by its unit is not a dead host
    while not hosts.ssh_banner(str(host.address), timeout=0.5):
        if time.monotonic() > deadline:
            return f"systemd runs but sshd has not answered for {SSHD_GRACE:.0f} s"
        time.sleep(0.2)
    return None


def recover(spec: FleetSpec) -> list[tuple[str, str]]:
    """Start again every host of a running fleet that is not running, as AWS treats its instances: a stopped
    one (systemd or its namespace gone) is started again; one whose systemd runs but whose sshd is dead (a
    failed status check) is rebooted, as auto-recovery would. Either way it keeps its address and its root
    disk (the upper layer), and enabled units start in boot order. Returns [(host, what was done)]."""
    done: list[tuple[str, str]] = []
    with fleet_lock():
        boots: dict[str, tuple[subprocess.Popen, float]] = {}
        # Every host checked at once (read-only: its namespace, its PID 1, sshd's banner): each check waits on a
        # connection sshd forks a process for, and every `make up` checks every host.
        with ThreadPoolExecutor(max_workers=max(1, len(spec.hosts)), thread_name_prefix="check") as pool:
            problems = list(pool.map(lambda host: host_problem(spec, host), spec.hosts))
        for index, (host, problem) in enumerate(zip(spec.hosts, problems, strict=True)):
            if problem is None:
                continue
            rebooted = hosts.pid1(spec.name, host.name) is not None
            action = ("rebooted, as AWS auto-recovery would" if rebooted
                      else "started again, as a stopped instance is")
            say(host.name, f"not running ({problem}): {action} (same address, same root disk)")
            hosts.kill_host(spec.name, host.name)
            if not Path("/run/netns", spec.netns(host)).exists():
                network.run(["ip", "link", "del", "dev", spec.veth(index)], check=False)  # left by a lost netns
                network.create_host_link(spec, index, host)
            boots[host.name] = (hosts.boot(spec, host), time.monotonic())
            done.append((host.name, "rebooted" if rebooted else "started again"))
        if boots:
            wait_for_sshd(FleetSpec(**{**spec.__dict__, "hosts": tuple(h for h in spec.hosts if h.name in boots)}),
                          boots)
    return done


def up(spec: FleetSpec, keep_on_failure: bool = False) -> None:
    require_root()
    with fleet_lock():
        preflight(spec)
        save(spec)  # first change of all: from here on `down` knows what this fleet is
        try:
            start_all(spec)
        except BaseException as exc:  # also Ctrl-C: never leave a half-started fleet behind silently
            say("fleet", f"start failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            if keep_on_failure:
                say("fleet", f"kept for inspection; remove with: python -m fleet down --name {spec.name}")
            else:
                say("fleet", "removing the half-started fleet")
                teardown(spec.name)
            raise


def teardown(name: str) -> list[str]:
    """Everything `down` does, without the lock (callers hold it)."""
    try:
        spec = load_saved(name)
    except ConfigError:
        spec = None  # a damaged spec must not stop the cleanup; discovery by name still works
    removed = []
    killed = hosts.kill_all(name)
    if killed:
        removed.append(f"{killed} processes (cgroup {hosts.fleet_cgroup(name).name})")
    removed += network.teardown(name, name.upper())
    if spec is not None and Path("/sys/class/net", spec.bridge.name).exists():
        # Created by this fleet (up checked the name was free) but crashed before it was tagged.
        alias = Path("/sys/class/net", spec.bridge.name, "ifalias").read_text().strip()
        if alias in ("", network.alias(name)):
            network.run(["ip", "link", "del", "dev", spec.bridge.name], check=False)
            removed.append(f"link {spec.bridge.name}")
    if hosts.remove_state(name):
        removed.append(f"state {state_dir(name)}")
    return removed


def down(name: str) -> None:
    require_root()
    state_dir(name)  # validates the name
    with fleet_lock():
        removed = teardown(name)
    for item in removed:
        say("fleet", f"removed {item}")
    say("fleet", f"{name} is down" if removed else f"{name} was not up; nothing to remove")


# ---- status / eip ----------------------------------------------------------------------------------------

def collect_status(name: str) -> dict:
    spec = load_saved(name)
    if spec is None:
        return {"name": name, "up": False, "hosts": []}
    rows = []
    for host in spec.hosts:
        pid = hosts.pid1(name, host.name)
        banner = hosts.ssh_banner(str(host.address), timeout=1.0)
        rows.append({"name": host.name, "address": str(host.address), "netns": spec.netns(host),
                     "systemd_pid": pid, "sshd": banner})
    chain = network.run(["iptables", "-t", "nat", "-S", f"{spec.chain_prefix}-EIP"], check=False).stdout
    target = next((line.split()[-1] for line in chain.splitlines() if "--to-destination" in line), None)
    return {"name": name, "up": True, "moto": {"endpoint": spec.moto_endpoint, "answers": moto.answers(spec)},
            "eip": {"address": str(spec.eip.address), "allocation_id": eip.read_allocation(name),
                    "target": target},
            "hosts": rows}


def status(name: str, as_json: bool) -> int:
    require_root()
    state_dir(name)
    info = collect_status(name)
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True))
    elif not info["up"]:
        print(f"fleet {name}: not up")
    else:
        print(f"fleet {name}: moto {info['moto']['endpoint']} {'answers' if info['moto']['answers'] else 'DOWN'}; "
              f"EIP {info['eip']['address']} -> {info['eip']['target'] or 'nobody'} "
              f"(allocation {info['eip']['allocation_id'] or 'none'})")
        for row in info["hosts"]:
            systemd = f"systemd pid {row['systemd_pid']}" if row["systemd_pid"] else "NOT RUNNING"
            sshd = f"sshd up ({row['sshd']})" if row["sshd"] else "sshd DOWN"
            print(f"  {row['name']:<24} {row['address']:<15} {systemd:<20} {sshd}")
    healthy = info["up"] and info["moto"]["answers"] and all(r["sshd"] for r in info["hosts"])
    return 0 if healthy else 1


def set_eip(args: argparse.Namespace) -> None:
    if args.spec:
        spec = load(args.spec)
        name, allocation = spec.name, spec.eip.allocation_id
    else:
        name, allocation = args.name, (None if args.allocation_id == "none" else args.allocation_id)
    eip.follow(name, allocation)
    say("eip", f"fleet {name} now follows {allocation or 'no allocation'}")


# ---- command line ----------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fleet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_up = sub.add_parser("up", help="start the fleet described by a spec")
    p_up.add_argument("--spec", required=True, help="fleet spec (JSON)")
    p_up.add_argument("--keep-on-failure", action="store_true", help="leave a failed start for inspection")
    for verb, text in (("down", "stop the fleet and remove all it made"), ("status", "show the fleet's hosts")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("--name", default=DEFAULT_NAME, help=f"fleet name (default {DEFAULT_NAME})")
        if verb == "status":
            p.add_argument("--json", action="store_true", help="machine-readable output")
    p_eip = sub.add_parser("eip", help="choose the allocation the fleet's EIP follows")
    p_eip.add_argument("--name", default=DEFAULT_NAME)
    which = p_eip.add_mutually_exclusive_group(required=True)
    which.add_argument("--allocation-id", help="eipalloc-... (or 'none' to route the EIP nowhere)")
    which.add_argument("--spec", help="take the name and eip.allocation_id from an updated spec")
    for daemon in ("eip-daemon", "imds-daemon"):
        p_daemon = sub.add_parser(daemon, help=argparse.SUPPRESS)
        p_daemon.add_argument("--name", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            up(load(args.spec), keep_on_failure=args.keep_on_failure)
        elif args.command == "down":
            down(args.name)
        elif args.command == "status":
            return status(args.name, args.json)
        elif args.command == "eip":
            set_eip(args)
        elif args.command == "eip-daemon":
            return eip.run_daemon(args.name)
        elif args.command == "imds-daemon":
            return imds.run_daemon(args.name)
    except ConfigError as exc:
        print(f"fleet: error: {exc}", file=sys.stderr)
        return 2
    except FleetError as exc:
        print(f"fleet: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fleet: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
