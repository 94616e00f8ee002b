"""The instance metadata service (IMDSv2) every fleet host reaches at 169.254.169.254, as on EC2.

One responder per fleet (a daemon in the fleet cgroup, log `<state>/imds.log`) listens on the bridge gateway,
port 80; the fleet's nat chain `<FLEET>-IMDS` sends each host's connections to 169.254.169.254:80 there
(`fleet/network.py`). As on EC2, the caller is identified by where the request comes from: the host's address
on the bridge is the instance's private address in moto, so each host sees its own instance.

What it serves, with the instance profile `http_tokens = required` and `http_put_response_hop_limit = 1`:
- `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds: 1..21600` -> a token bound to the caller's
  address; a PUT with `X-Forwarded-For` is refused (403), as EC2 does;
- `GET /latest/meta-data/...` only with a valid token (`X-aws-ec2-metadata-token`), else 401: `instance-id`,
  `local-ipv4`, `placement/availability-zone`, `placement/region`, `iam/info`, `iam/security-credentials/`
  and `iam/security-credentials/<role>` (the role of the instance's profile in moto, credentials from moto's
  `sts:AssumeRole` on it, renewed five minutes before they expire);
- every reply leaves with IP TTL 1 (the hop limit): a host gets it, a container behind a host (one more
  routed hop) does not.
"""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import hosts
from .daemon import daemon_spec
from .network import IMDS_ADDRESS as ADDRESS
from .network import IMDS_PORT as PORT  # on the gateway, where the nat chain sends 169.254.169.254:80
from .network import FleetError
from .spec import FleetSpec, state_dir

HOP_LIMIT = 1              # the program's metadata_options.http_put_response_hop_limit
MAX_TOKEN_TTL = 21600
RENEW_BEFORE_S = 300
REPO_ROOT = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} [imds] {message}", flush=True)


class Metadata:
    """Instances and their profiles' credentials, read from moto; cached, since an instance keeps its address."""

    def __init__(self, endpoint: str, region: str = "us-east-1"):
        self.endpoint, self.region = endpoint, region
        self.lock = threading.Lock()
        self.clients: dict[str, object] = {}
        self.credentials: dict[str, dict] = {}   # role arn + instance id -> credentials document
        self.credentials_lock = threading.Lock()

    def client(self, service: str):
        """A moto client made on first use, so the responder listens before boto3 has loaded (seconds)."""
        from . import moto  # noqa: PLC0415 - boto3 is slow to import

        with self.lock:
            if service not in self.clients:
                self.clients[service] = moto.client(self.endpoint, service, self.region)
        return self.clients[service]

    def instance(self, address: str) -> dict | None:
        reservations = self.client("ec2").describe_instances(Filters=[
            {"Name": "private-ip-address", "Values": [address]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
        found = [i for r in reservations for i in r["Instances"]]
        return found[0] if found else None

    def role(self, instance: dict) -> dict | None:
        """The role of the instance's profile, or None when it has no profile (EC2 then has no iam/ tree)."""
        arn = (instance.get("IamInstanceProfile") or {}).get("Arn")
        if not arn:
            return None
        profile = self.client("iam").get_instance_profile(InstanceProfileName=arn.rsplit("/", 1)[-1])["InstanceProfile"]
        roles = profile.get("Roles") or []
        return {"profile_arn": profile["Arn"], "profile_id": profile["InstanceProfileId"],
                "role_arn": roles[0]["Arn"], "role_name": roles[0]["RoleName"]} if roles else None

    def role_credentials(self, instance: dict, role: dict) -> dict:
        key = f"{role['role_arn']} {instance['InstanceId']}"
        sts = self.client("sts")
        with self.credentials_lock:
            cached = self.credentials.get(key)
            if cached and cached["_expires"] - time.time() > RENEW_BEFORE_S:
                return cached
            made = sts.assume_role(RoleArn=role["role_arn"], RoleSessionName=instance["InstanceId"])
            creds = made["Credentials"]
            expires = creds["Expiration"]
            document = {
                "Code": "Success", "LastUpdated": _stamp(datetime.now(UTC)), "Type": "AWS-HMAC",
                "AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": creds["SecretAccessKey"],
                "Token": creds["SessionToken"], "Expiration": _stamp(expires), "_expires": expires.timestamp()}
            self.credentials[key] = document
            log(f"{instance['InstanceId']}: credentials of {role['role_name']} until {document['Expiration']}")
            return document


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Tokens:
    """Session tokens, each bound to the address that asked for it, until its TTL runs out."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.issued: dict[str, tuple[str, float]] = {}

    def issue(self, address: str, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            now = time.monotonic()
            self.issued = {t: v for t, v in self.issued.items() if v[1] > now}
            self.issued[token] = (address, now + ttl)
        return token

    def valid(self, token: str | None, address: str) -> int | None:
        """Seconds the token has left, or None when it is missing, unknown, expired or someone else's."""
        with self.lock:
            address_and_end = self.issued.get(token or "")
        if not address_and_end or address_and_end[0] != address:
            return None
        left = int(address_and_end[1] - time.monotonic())
        return left if left > 0 else None


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], metadata: Metadata, allowed: ipaddress.IPv4Network):
        self.metadata, self.tokens, self.allowed = metadata, Tokens(), allowed
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # The hop limit: replies leave with TTL 1 (the listening socket's TTL is inherited by each connection).
        self.socket.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, HOP_LIMIT)
        super().server_bind()


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "EC2ws"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        log(f"{self.client_address[0]} {format % args}")

    def reply(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def caller(self) -> str | None:
        address = self.client_address[0]
        return address if ipaddress.IPv4Address(address) in self.server.allowed else None

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/latest/api/token":
            return self.reply(404, "Not Found")
        if self.headers.get("X-Forwarded-For") is not None:
            return self.reply(403, "Forbidden")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= MAX_TOKEN_TTL:
            return self.reply(400, "Bad Request")
        caller = self.caller()
        if caller is None:
            return self.reply(403, "Forbidden")
        token = self.server.tokens.issue(caller, int(ttl))
        return self.reply(200, token, {"X-aws-ec2-metadata-token-ttl-seconds": ttl})

    def do_GET(self) -> None:  # noqa: N802
        caller = self.caller()
        left = self.server.tokens.valid(self.headers.get("X-aws-ec2-metadata-token"), caller) if caller else None
        if left is None:       # http_tokens = required: no IMDSv1
            return self.reply(401, "Unauthorized")
        try:
            status, body = self.answer(caller or "", self.path)
        except Exception as exc:  # noqa: BLE001 - moto unreachable or confused: 500, and say why in the log
            log(f"{caller} {self.path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            status, body = 500, "Internal Server Error"
        return self.reply(status, body, {"X-aws-ec2-metadata-token-ttl-seconds": str(left)})

    def answer(self, caller: str, path: str) -> tuple[int, str]:
        if not path.startswith("/latest/meta-data/"):
            return 404, "Not Found"
        what = path[len("/latest/meta-data/"):]
        metadata = self.server.metadata
        instance = metadata.instance(caller)
        if instance is None:
            return 404, "Not Found"
        role = metadata.role(instance)
        simple = {
            "": "instance-id\nlocal-ipv4\nplacement/\n" + ("iam/" if role else ""),
            "instance-id": instance["InstanceId"],
            "local-ipv4": instance["PrivateIpAddress"],
            "placement/": "availability-zone\nregion",
            "placement/availability-zone": instance["Placement"]["AvailabilityZone"],
            "placement/region": metadata.region,
        }
        if what in simple:
            return 200, simple[what]
        if role is None or not what.startswith("iam/"):
            return 404, "Not Found"
        if what == "iam/":
            return 200, "info\nsecurity-credentials/"
        if what == "iam/info":
            return 200, json.dumps({"Code": "Success", "LastUpdated": _stamp(datetime.now(UTC)),
                                    "InstanceProfileArn": role["profile_arn"],
                                    "InstanceProfileId": role["profile_id"]}, indent=2)
        if what == "iam/security-credentials/":
            return 200, role["role_name"]
        if what == f"iam/security-credentials/{role['role_name']}":
            document = metadata.role_credentials(instance, role)
            return 200, json.dumps({k: v for k, v in document.items() if not k.startswith("_")}, indent=2)
        return 404, "Not Found"


def run_daemon(name: str) -> int:
    spec = daemon_spec(name, log)
    if spec is None:
        return 1
    server = Server((str(spec.bridge.gateway), PORT), Metadata(spec.moto_endpoint), spec.bridge.cidr)
    log(f"answering {ADDRESS}:80 for {spec.bridge.cidr} on {spec.bridge.gateway}:{PORT} "
        f"(IMDSv2 only, hop limit {HOP_LIMIT})")
    server.serve_forever()
    return 0


def start(spec: FleetSpec, timeout: float = 30.0) -> float:
    """Start the responder in the fleet cgroup (it outlives `up`); seconds until it accepted a connection."""
    argv = [sys.executable, "-m", "fleet", "imds-daemon", "--name", spec.name]
    log_file = state_dir(spec.name) / "imds.log"
    proc = hosts.spawn(argv, hosts.fleet_cgroup(spec.name) / "imds", log_file, cwd=REPO_ROOT,
                       env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    started = time.monotonic()
    while True:
        try:
            socket.create_connection((str(spec.bridge.gateway), PORT), timeout=0.5).close()
            return time.monotonic() - started
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() - started > timeout:
            lines = log_file.read_text(errors="replace").strip().splitlines() or ["(no log)"]
            raise FleetError(f"metadata service did not start on {spec.bridge.gateway}:{PORT}: {lines[-1]}")
        time.sleep(0.1)
