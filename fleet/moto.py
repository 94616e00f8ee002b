"""moto server: the fleet's AWS API (EC2 for the EIP, S3 for the sha file), a daemon on the bridge gateway.

It listens on the gateway address only. That address is local to this machine, so tools here reach it as
`http://<gateway>:<port>` just like the hosts do, and binding it never collides with another moto on
127.0.0.1 (binding 0.0.0.0 would, and would expose it on every interface). It runs in the fleet's cgroup,
so `down` stops it with the hosts; its output goes to `<state>/moto.log`.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import hosts
from .network import FleetError
from .spec import FleetSpec, state_dir


def moto_server_path() -> Path:
    """moto_server from the same venv as the running Python."""
    path = Path(sys.executable).parent / "moto_server"
    if not path.exists():
        raise FleetError(f"moto_server not found next to {sys.executable} (pip install 'moto[server]')")
    return path


def log_path(spec: FleetSpec) -> Path:
    return state_dir(spec.name) / "moto.log"


def start(spec: FleetSpec) -> subprocess.Popen:
    argv = [str(moto_server_path()), "-H", str(spec.bridge.gateway), "-p", str(spec.moto_port)]
    proc = hosts.spawn(argv, hosts.fleet_cgroup(spec.name) / "moto", log_path(spec))
    (state_dir(spec.name) / "moto.pid").write_text(f"{proc.pid}\n")
    return proc


# moto's dashboard page: a fixed 10 KB whatever moto holds. `/moto-api/data.json` dumps every backend's state
# (6 MB and ~3 s once EC2 has loaded its AMI catalogue), so a liveness probe on it says DOWN for a busy moto.
LIVENESS_PATH = "/moto-api/"
# Generous timeouts for clients that arrange or read state: moto's first EC2 call in a fresh process loads its AMI
# catalogue (~4 s here). Only the EIP follower keeps short ones (fleet/eip.py says why).
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60


_LOCK = threading.RLock()
_SESSION: list = []                       # the process's one botocore session, once made
_CLIENTS: dict[tuple[str, str, str], Any] = {}


def session():
    """The process's botocore session for moto (and for the release verbs `make up` runs in its process): the first
    client of a service loads its model and the endpoint data into the session (0.05-0.3 s each); later clients
    made from the same session reuse them. Made under the lock: a botocore session is not thread-safe."""
    import botocore.session  # noqa: PLC0415 - slow to import; `status` and `down` never need it

    with _LOCK:
        if not _SESSION:
            _SESSION.append(botocore.session.Session())
        return _SESSION[0]


def client(endpoint: str, service: str, region: str = "us-east-1"):
    """A botocore client on the fleet's moto (any credentials do), with timeouts that fit moto's slow first calls.
    One per endpoint, service and region in a process (a client is thread-safe; making one is the slow part)."""
    from botocore.config import Config  # noqa: PLC0415

    with _LOCK:
        key = (endpoint, service, region)
        if key not in _CLIENTS:
            config = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                            retries={"max_attempts": 2})
            _CLIENTS[key] = session().create_client(service, endpoint_url=endpoint, region_name=region,
                                                    aws_access_key_id="fleet", aws_secret_access_key="fleet",
                                                    config=config)
        return _CLIENTS[key]


def answers(spec: FleetSpec, timeout: float = 1.0) -> bool:
    """True when moto answers over HTTP (a cheap page: the answer must not depend on how much moto holds)."""
    try:
        with urllib.request.urlopen(f"{spec.moto_endpoint}{LIVENESS_PATH}", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return False


def warm_up(spec: FleetSpec) -> float:
    """Seconds of moto's first EC2 call (it loads the AMI catalogue), made here so no later client pays for it."""
    start_time = time.monotonic()
    client(spec.moto_endpoint, "ec2").describe_regions()
    return time.monotonic() - start_time


def wait_ready(spec: FleetSpec, proc: subprocess.Popen, timeout: float = 30.0) -> float:
    """Seconds until moto answered; a moto that exits fails fast with its last log line."""
    start_time = time.monotonic()
    while not answers(spec, timeout=0.5):
        if proc.poll() is not None:
            raise FleetError(f"moto_server exited: {_last_line(log_path(spec))}")
        if time.monotonic() - start_time > timeout:
            raise FleetError(f"moto_server did not answer on {spec.moto_endpoint} within {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - start_time


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except FileNotFoundError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"
