"""Helpers for the HAProxy pair tests (imported by conftest.py and the test modules): real haproxy / keepalived / moto, on loopback or in
private network namespaces the tests create. Everything started here is stopped by a
finalizer, also when the test fails."""
from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from renderers.haproxy.layout import HaproxyLayout, ServiceControl
from renderers.haproxy.spec import Backend, BackendServer, HaproxyNodeSpec, HealthCheck

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-boto3: what the nodes run

# Fast checks so a test sees a server go DOWN or UP within a second or two.
FAST_CHECKS = HealthCheck(interval_s=1, fall=1, rise=1)


def need(*programs: str) -> None:
    """Skip (only) when a host program the test drives is not installed."""
    for program in programs:
        if shutil.which(program) is None and not Path(program).exists():
            pytest.skip(f"{program} is not installed")


def need_system_boto3() -> None:
    need(SYSTEM_PYTHON)
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import boto3"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("python3-boto3 is not installed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def run_script(script: str, stdin: str | None = None, timeout: float = 60,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a step's script the way the remote command does: as the text of `bash -c`."""
    return subprocess.run(["bash", "-c", script], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=env)


# --------------------------------------------------------------------------- app servers

class QuietHTTPServer(ThreadingHTTPServer):
    """HAProxy ends its health checks with a TCP reset: not worth a traceback."""
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class AppServer:
    """A small HTTP server on loopback that plays one app server behind HAProxy.

    GET /up answers 200 while `healthy`, else 503; GET /slow?s=N answers after N seconds;
    anything else answers 200 with the server's name and the X-Forwarded-Proto it saw, or 502
    while `restarting` (nginx in front of a puma that is down). POST answers the same way;
    `posts` counts the POSTs that reached this server.
    """

    def __init__(self, name: str):
        self.name = name
        self.healthy = True
        self.restarting = False
        self.hits = 0
        self.posts = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                url = urlparse(self.path)
                if url.path == "/up":
                    status = 200 if owner.healthy else 503
                    body = b"ok\n" if owner.healthy else b"sick\n"
                else:
                    owner.hits += 1
                    if url.path == "/slow":
                        time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
                    status = 502 if owner.restarting else 200
                    proto = self.headers.get("X-Forwarded-Proto", "-")
                    body = f"{owner.name} {proto}\n".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.posts += 1
                status = 502 if owner.restarting else 200
                body = f"{owner.name} POST\n".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep pytest output quiet
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        # A short poll interval keeps shutdown() fast.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def as_backend_server(self) -> BackendServer:
        return BackendServer(self.name, "127.0.0.1", self.port)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def two_apps(servers: list[AppServer]) -> list[Backend]:
    """ecom-platform on app-1/app-2 (shop.test, www.shop.test), ecom-docs on docs-1."""
    by_name = {s.name: s.as_backend_server() for s in servers}
    return [
        Backend("ecom-platform", ("shop.test", "www.shop.test"), "/up",
                (by_name["app-1"], by_name["app-2"])),
        Backend("ecom-docs", ("docs.test",), "/up", (by_name["docs-1"],)),
    ]


# --------------------------------------------------------------------------- haproxy

def local_layout(directory: Path, **overrides) -> HaproxyLayout:
    """Paths in `directory`, HAProxy as the test's own process (no chroot, no user switch,
    logs on stdout), listening on free loopback ports."""
    values = dict(config_path=str(directory / "haproxy.cfg"),
                  admin_socket=str(directory / "admin.sock"),
                  cert_path=str(directory / "certs" / "site.pem"),
                  chroot=None, user=None, group=None,
                  log_target="stdout format raw local0",
                  http_bind=f"127.0.0.1:{free_port()}",
                  https_bind=f"127.0.0.1:{free_port()}")
    values.update(overrides)
    return HaproxyLayout(**values)



def ask_socket(path: str, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(5)
        conn.connect(path)
        conn.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


class HaproxyProcess:
    """The real haproxy in master-worker mode (-W, foreground), as this test's child."""

    def __init__(self, layout: HaproxyLayout, log_path: Path):
        self.layout = layout
        self.log_path = log_path
        self.pidfile = Path(layout.config_path).with_suffix(".pid")
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [layout.haproxy_bin, "-W", "-f", layout.config_path, "-p", str(self.pidfile)],
            stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(self._answers, 10, "haproxy's admin socket")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"haproxy exited {self.proc.returncode}: {self.log()}")
        try:
            return "Pid:" in ask_socket(self.layout.admin_socket, "show info")
        except OSError:
            return False

    @property
    def master_pid(self) -> int:
        return self.proc.pid

    def service(self) -> ServiceControl:
        """How the install scripts drive this process: kill -0 / kill -USR2 on the master
        (what Debian's unit does on reload). It is never started by a script."""
        pid = str(self.master_pid)
        return ServiceControl(is_active=("kill", "-0", pid), reload=("kill", "-USR2", pid),
                              start=("false",))

    def worker_pid(self) -> int:
        for line in ask_socket(self.layout.admin_socket, "show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        raise AssertionError("no Pid in show info")

    def wait_new_worker(self, old_pid: int) -> int:
        def new_pid():
            try:
                pid = self.worker_pid()
            except OSError:
                return None
            return pid if pid != old_pid else None
        return wait_until(new_pid, 10, "a reloaded haproxy worker")

    def server_status(self, backend: str, server: str) -> dict:
        lines = ask_socket(self.layout.admin_socket, "show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == backend and row.get("svname") == server:
                return row
        raise AssertionError(f"{backend}/{server} not in show stat")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def http_get(port: int, host: str, path: str = "/", timeout: float = 5):
    """GET through HAProxy with an explicit Host header -> (status, body, headers)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as reply:
            return reply.status, reply.read().decode(), dict(reply.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def http_post(port: int, host: str, path: str = "/", body: bytes = b"order=1", timeout: float = 5):
    """POST through HAProxy -> (status, body)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                     headers={"Host": host})
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Return redirects to the test instead of following them."""

    def redirect_request(self, *args, **kwargs):
        return None


def port_of(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1])


# --------------------------------------------------------------------------- tools

def self_signed_pem(hostname: str) -> str:
    """A throwaway certificate + key (EC P-256, 2 days) as one pem, like HAProxy's crt file."""
    with tempfile.TemporaryDirectory() as work:
        key, crt = Path(work, "key.pem"), Path(work, "crt.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", f"/CN={hostname}", "-addext", f"subjectAltName=DNS:{hostname}",
                        "-keyout", str(key), "-out", str(crt)],
                       check=True, capture_output=True)
        return crt.read_text() + key.read_text()


def run_in_netns(argv: list[str], *, interface: str, address: str, stdin: str | None = None,
                 env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `argv` in a fresh, private network namespace holding one veth `interface` with
    `address`/24. The namespace, its links and addresses vanish when the command ends."""
    setup = ('set -e; ip link add "$1" type veth peer name vpeer0; '
             'ip addr add "$2/24" dev "$1"; ip link set "$1" up; ip link set vpeer0 up; '
             'shift 2; exec "$@"')
    return subprocess.run(["unshare", "--net", "--", "bash", "-c", setup, "netns-setup",
                           interface, address, *argv],
                          input=stdin, capture_output=True, text=True, env=env,
                          timeout=timeout)


# --------------------------------------------------------------------------- moto / AWS

def aws_env(home: Path, **extra: str) -> dict:
    """Environment for anything that talks to moto: fake credentials, no instance metadata
    lookups (they would leave loopback), and a private HOME so ~/.aws is never read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    env.update(extra)
    return env


@dataclasses.dataclass
class MotoWorld:
    """Two EC2 instances and an Elastic IP associated with the first, in a moto server."""
    endpoint: str
    instance_a: str
    instance_b: str
    allocation_id: str
    public_ip: str


def ec2_client(endpoint: str):
    import boto3
    return boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def make_moto_world(endpoint: str) -> MotoWorld:
    ec2 = ec2_client(endpoint)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    reply = ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2, InstanceType="t3.micro")
    first, second = (i["InstanceId"] for i in reply["Instances"])
    address = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=address["AllocationId"], InstanceId=first)
    return MotoWorld(endpoint, first, second, address["AllocationId"], address["PublicIp"])


def eip_holder(endpoint: str, allocation_id: str) -> str | None:
    addresses = ec2_client(endpoint).describe_addresses(AllocationIds=[allocation_id])
    return addresses["Addresses"][0].get("InstanceId")


def node_spec(name: str, world: MotoWorld, *, master: bool, private_ip: str, peer_ip: str,
              **overrides) -> HaproxyNodeSpec:
    values = dict(name=name, private_ip=private_ip, peer_private_ip=peer_ip,
                  instance_id=world.instance_a if master else world.instance_b,
                  is_master=master, vrrp_router_id=77, eip_allocation_id=world.allocation_id,
                  region="us-east-1", aws_endpoint_url=world.endpoint)
    values.update(overrides)
    return HaproxyNodeSpec(**values)
