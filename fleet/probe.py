"""Looking at a running local platform from outside: HTTP through the EIP, root scripts
on hosts, who holds the EIP, what a deploy step printed. Used by the fleet tests and the
benchmarks, never by the deploy itself.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from components.remote_steps import as_root
from ecom_infra.stacks import PROJECT_DIR

from . import moto
from . import spec as fleet_spec
from .local import ENV, FLEET_NAME, LocalFleet
from .ssh.connection import Connection
from .ssh.runner import SshRunner


class Platform:
    def __init__(self, fleet: LocalFleet | None = None):
        self.fleet = fleet or LocalFleet.from_stack("local")
        self.state = self.fleet.state

    # -- driving it -------------------------------------------------------------------------

    def local(self, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
        """`python -m fleet.local ...` as `make up` runs it, output captured."""
        proc = subprocess.run([sys.executable, "-m", "fleet.local", *args], cwd=PROJECT_DIR, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"fleet.local {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                               f"{proc.stderr[-3000:]}")
        return proc

    def deploy_cli(self, *args: str) -> subprocess.CompletedProcess:
        """`ecom-deploy <verb>` against the fleet's moto, as CI would run it."""
        return subprocess.run([sys.executable, "-m", "ecom_infra.cli", *args, "--endpoint-url", self.fleet.endpoint],
                              cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120, check=True,
                              env={**ENV, "PATH": "/usr/bin:/bin"})

    def tag_sha(self, app: str, tag: str) -> str:
        repo = self.state / "origin" / f"{app}.git"
        return subprocess.run(["git", "--git-dir", str(repo), "rev-parse", f"{tag}^{{commit}}"],
                              capture_output=True, text=True, check=True).stdout.strip()

    def stage(self, app: str, tag: str) -> str:
        sha = self.tag_sha(app, tag)
        self.deploy_cli("stage", "--env", self.fleet.stack, "--app", app, "--sha", sha, "--actor", "fleet-probe",
                        "--no-verify-sha")  # a tag of the fleet's own origin, read above
        return sha

    # -- looking at it ----------------------------------------------------------------------

    def get(self, host: str, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
        request = urllib.request.Request(f"http://{self.fleet.eip_address}{path}", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def plan(self) -> dict:
        return json.loads((self.state / "plan.json").read_text())

    def step_output(self, name: str) -> str:
        state = json.loads((self.state / "executor-state.json").read_text())
        [entry] = [r for r in state["resources"].values() if r["name"] == name]
        return entry["outputs"]["stdout"] + entry["outputs"]["stderr"]

    def on_host(self, host: str, script: str) -> str:
        """Run a root script on a fleet host over SSH, pinning its host key."""
        conn = next(r["inputs"]["connection"] for r in self.plan()["resources"]
                    if r["type"] == "command:remote:Command" and r["name"].startswith(f"{host}-"))
        with SshRunner(log=lambda line: None) as ssh:
            result = ssh.run(Connection.from_inputs(conn, host), as_root(script))
        if result.exit_code != 0:
            raise RuntimeError(f"{host}: exit {result.exit_code}: {result.stderr[-2000:]}")
        return result.stdout

    def eip_holder(self) -> str | None:
        """The fleet host whose instance moto says holds the Elastic IP."""
        plan = self.plan()
        ec2 = moto.client(self.fleet.endpoint, "ec2")
        [address] = ec2.describe_addresses(AllocationIds=[plan["outputs"]["endpoint"]["allocationId"]])["Addresses"]
        holder = address.get("InstanceId")
        return next((name for name, h in plan["hosts"].items() if h["instanceId"] == holder), holder)


class ClientLoop:
    """A steady client: one request every `interval` s through the EIP, bounded in time, counting failures."""

    def __init__(self, platform: Platform, host: str, path: str = "/health", interval: float = 0.05,
                 limit_s: float = 900.0):
        self.platform, self.host, self.path, self.interval, self.limit_s = platform, host, path, interval, limit_s
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.events: list[tuple[float, bool]] = []      # (monotonic time, success)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status, _ = self.platform.get(self.host, self.path, timeout=2)
                success = status == 200
                if not success:
                    self.errors.append(f"HTTP {status}")
            except OSError as exc:
                success = False
                self.errors.append(str(exc))
            self.events.append((time.monotonic(), success))
            self.ok += success
            self.failed += not success
            time.sleep(self.interval)

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@contextmanager
def fresh_platform() -> Iterator[Platform]:
    """A platform started for the caller (a benchmark) and taken down after, never someone else's."""
    if fleet_spec.load_saved(FLEET_NAME) is not None:
        raise SystemExit(f"fleet {FLEET_NAME} is up: run `make down` first")
    platform = Platform()
    try:
        yield platform
    finally:
        platform.local("down", check=False)
