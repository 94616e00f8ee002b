"""Running the app-server scripts for real on this machine: the pieces tests share.

A "host" here is this machine with everything the steps touch moved into a temp folder:
the deploy root, nginx's folder (a private nginx.conf on a loopback port), the systemd
and Datadog folders. `service_manager="direct"` makes release-publish start puma itself
(this machine has no systemd as PID 1); everything else is the script the hosts run.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from renderers.app_server.files import render_environment_file
from renderers.app_server.spec import SLOTS, AppServerSpec
from renderers.app_server.steps import app_server_steps
from renderers.steps import Step

HOST_TOOLS = ("bash", "git", "ruby", "bundle", "puma", "nginx", "curl", "runuser", "setsid", "flock", "useradd")


def require_tools(*names: str) -> None:
    """Skip only when a host program is absent (CI installs them all)."""
    missing = [name for name in names if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]
    if missing:
        pytest.skip(f"host programs not installed: {', '.join(missing)}")


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("runs host scripts that create users and chown files: needs root")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_public_tempdir(prefix: str) -> Path:
    """A temp folder other users can traverse (nginx's workers, the deploy user)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def pids_of_user(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                continue
    return pids


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass(frozen=True)
class Account:
    user: str
    uid: int


NGINX_CONF = """\
user www-data;
worker_processes 1;
pid {base}/run/nginx.pid;
error_log {base}/log/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log {base}/log/nginx-access.log;
    client_body_temp_path {base}/run/body;
    proxy_temp_path {base}/run/proxy;
    include /etc/nginx/mime.types;
    include {base}/nginx/sites-enabled/*;
}}
"""


@dataclass
class Host:
    """This machine, posing as one app server, with its own folders under `base`."""

    base: Path
    spec: AppServerSpec
    account: Account

    def with_sha(self, sha: str, **changes) -> Host:
        self.spec = replace(self.spec, sha=sha, **changes)
        return self

    def steps(self) -> dict[str, Step]:
        return {step.name: step for step in app_server_steps(self.spec)}

    def run(self, name: str, stdin: str | None = None, timeout: float = 180,
            script: str | None = None) -> subprocess.CompletedProcess:
        """Run step `name` (or a given script) as the component would: bash as root."""
        text = script if script is not None else self.steps()[name].create
        return subprocess.run(["bash", "-c", text], input=stdin or "", capture_output=True, text=True,
                              timeout=timeout, env=script_env(), check=False)

    def start(self, name: str) -> subprocess.Popen:
        """Start step `name` without waiting (to interrupt it, or race it)."""
        return subprocess.Popen(["bash", "-c", self.steps()[name].create], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=script_env(),
                                start_new_session=True)

    def env_file(self, secrets: tuple[tuple[str, str], ...] = ()) -> str:
        """What the component feeds the app-env step: plain and secret variables."""
        return render_environment_file(self.spec.env + secrets)

    def provision(self) -> None:
        for name in ("deploy-user", "layout", "app-env", "ruby", "puma-config", "puma-unit", "nginx-site"):
            result = self.run(name, stdin=self.env_file() if name == "app-env" else None)
            assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"

    def deploy(self, sha: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        """Build then publish `sha`; both must succeed."""
        self.with_sha(sha)
        build = self.run("release-build")
        assert build.returncode == 0, f"build of {sha} failed:\n{build.stdout}\n{build.stderr}"
        publish = self.run("release-publish")
        assert publish.returncode == 0, f"publish of {sha} failed:\n{publish.stdout}\n{publish.stderr}"
        return build, publish

    # ---- what is on disk
    @property
    def app_dir(self) -> Path:
        return Path(self.spec.app_dir)

    def current(self) -> str | None:
        link = self.app_dir / "current"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def releases(self) -> list[str]:
        return sorted(p.name for p in (self.app_dir / "releases").iterdir())

    def live_releases(self) -> list[str]:
        return sorted(p.parent.name for p in (self.app_dir / "meta").glob("*/live"))

    def release_sha(self, release: str) -> str:
        return (self.app_dir / "meta" / release / "sha").read_text().strip()

    def live_slot(self) -> str | None:
        """The puma slot nginx sends requests to (from root's link slots/puma.sock)."""
        try:
            target = os.readlink(self.spec.live_socket)
        except OSError:
            return None
        found = [slot for slot in SLOTS if target == self.spec.slot_socket(slot)]
        return found[0] if found else None

    def slot_pid(self, slot: str | None) -> int | None:
        if slot is None:
            return None
        try:
            pid = int(Path(self.spec.pid_file(slot)).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def puma_pid(self) -> int | None:
        """The pid of the live slot's puma."""
        return self.slot_pid(self.live_slot())

    def get(self, path: str = "/", host: str | None = None) -> tuple[int, str]:
        """An HTTP GET through this host's nginx."""
        import http.client  # noqa: PLC0415

        conn = http.client.HTTPConnection("127.0.0.1", self.spec.http_port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host or self.spec.hostnames[0]})
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            conn.close()


def script_env() -> dict[str, str]:
    # What sudo would give the script: no proxies, no caller's bundler or git settings.
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
            "HOME": "/root"}


def _stop_pidfile(path: Path) -> None:
    """TERM the process a pid file names and wait (up to 5 s) for it to go, then KILL it."""
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    kill_pids([pid])


def _processes_under(base: Path) -> list[int]:
    """Processes whose working folder is inside `base` (puma of this host)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd").startswith(str(base) + "/"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def make_host(deploy_account: Account, origin: dict, app: str = "ecom-platform", **changes) -> Host:
    base = make_public_tempdir(f"ecom-host-{app}-")
    for sub in ("srv", "nginx/sites-available", "nginx/sites-enabled", "systemd", "datadog", "run", "log"):
        (base / sub).mkdir(parents=True)
    (base / "nginx" / "nginx.conf").write_text(NGINX_CONF.format(base=base))
    spec = AppServerSpec(
        app=app,
        repo_url=f"file://{origin['dir']}/{app}.git",
        hostnames=(f"{app}.test",),
        branch="main",
        deploy_user=deploy_account.user,
        deploy_group=deploy_account.user,
        deploy_root=str(base / "srv"),
        health_timeout=20,
        puma_workers=2,
        puma_threads_min=1,
        puma_threads_max=2,
        bundle_local=True,
        http_port=free_port(),
        http_bind="127.0.0.1",
        nginx_dir=str(base / "nginx"),
        nginx_conf=str(base / "nginx" / "nginx.conf"),
        nginx_pid_file=str(base / "run" / "nginx.pid"),
        systemd_dir=str(base / "systemd"),
        datadog_conf_dir=str(base / "datadog"),
        service_manager="direct",
    )
    return Host(base=base, spec=replace(spec, **changes), account=deploy_account)


def destroy_host(host: Host) -> None:
    """Stop what the host's steps started (puma: every process working inside the host's
    folder; nginx: by its pid file) and remove the folder."""
    kill_pids(_processes_under(host.base))
    _stop_pidfile(Path(host.spec.nginx_pid_file))
    shutil.rmtree(host.base, ignore_errors=True)


def ok(result: subprocess.CompletedProcess) -> str:
    """A step's output, after asserting it succeeded (the output says why when it did not)."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def hook_runs(host: Host) -> list[str]:
    """What the test hooks appended to shared/log/hook-runs, one line per run."""
    path = Path(host.spec.shared_dir) / "log" / "hook-runs"
    return path.read_text().splitlines() if path.exists() else []
