"""Fixtures for the local fleet: a real 2-host fleet (session scope), SSH with pinned host keys, the CLI.

The fleet tests need root (namespaces, mounts, iptables). The fleet fixture removes any leftover of a killed
earlier run first (`down` works from what is on the system), and its finalizer runs `down` even when `up`
failed half-way. Names: fleet `ecomtest`, bridge `ecomtestbr0`, a /24 from 10.213.200-254 that nothing on
this machine uses yet, so a developer's own `ecomfleet` keeps running beside the tests.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleet import network
from tests.support.keys import new_ssh_key as keypair

ROOT = Path(__file__).resolve().parents[2]

FLEET_NAME = "ecomtest"
# Instance hosts boot through cloud-init from the program's user data (the second one's lacks the IMDS rule);
# the others are fleet-made hosts like the git host (the fleet writes their host key and admin user).
INSTANCE_HOSTS = {"ecom-app-1": "i-0a000000000000001", "ecom-norule-1": "i-0a000000000000002"}
HOST_NAMES = ("ecom-platform-1", "ecom-lb-1", *INSTANCE_HOSTS)


def user_data(host: str, private: str, public: str) -> str:
    """The program's user data for this host key; `ecom-norule-1`'s without the nftables IMDS rule."""
    from renderers.host import IMDS_RULE, render_cloud_init  # noqa: PLC0415

    text = render_cloud_init(private, public)
    if host == "ecom-norule-1":
        text = "\n".join(line for line in text.splitlines() if IMDS_RULE not in line) + "\n"
        text = text.replace("bootcmd:\n", "").replace("runcmd:\n", "")
    return text


def free_cidr(skip: tuple[ipaddress.IPv4Network, ...] = ()) -> ipaddress.IPv4Network:
    """A 10.213.x.0/24 that overlaps nothing on this machine (and none of `skip`)."""
    used = [net for _dev, net in network.networks_in_use()] + list(skip)
    for third in range(200, 255):
        candidate = ipaddress.IPv4Network(f"10.213.{third}.0/24")
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise RuntimeError("no free 10.213.200-254.0/24 network on this machine")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fleet_cli(*args: str, check: bool = True, input_text: str | None = None, env: dict | None = None,
              timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m fleet ...` as a separate process, exactly as a person runs it."""
    run_env = {**os.environ, "PYTHONPATH": str(ROOT)} if env is None else env
    proc = subprocess.run([sys.executable, "-m", "fleet", *args], cwd=ROOT, capture_output=True, text=True,
                          input=input_text, env=run_env, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"fleet {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Fleet:
    """A running test fleet and what a test needs to talk to it."""
    name: str
    spec: dict
    spec_path: Path
    client_key: Path
    known_hosts: Path
    work: Path
    host_public_keys: dict[str, str] = field(default_factory=dict)

    @property
    def cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.spec["bridge"]["cidr"])

    @property
    def gateway(self) -> str:
        return self.spec["bridge"]["gateway"]

    @property
    def moto_endpoint(self) -> str:
        return f"http://{self.gateway}:{self.spec['moto']['port']}"

    @property
    def eip(self) -> str:
        return self.spec["eip"]["address"]

    def address(self, host: str) -> str:
        return next(h["address"] for h in self.spec["hosts"] if h["name"] == host)

    def netns(self, host: str) -> str:
        return f"{self.name}-{host}"

    def ssh(self, host: str, command: str, known_hosts: Path | None = None, key: Path | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
        """OpenSSH client, host key pinned: only the spec's key for this address is accepted."""
        argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-i", str(key or self.client_key), "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"admin@{self.address(host)}", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def ssh_ok(self, host: str, command: str) -> str:
        proc = self.ssh(host, command)
        assert proc.returncode == 0, f"{host}: {command!r} failed ({proc.returncode}): {proc.stderr.strip()}"
        return proc.stdout


def write_private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def make_spec(name: str, bridge: str, cidr: ipaddress.IPv4Network, host_names: tuple[str, ...],
              client_public: str) -> tuple[dict, dict[str, str]]:
    """A spec with fresh host keys; returns (spec, host name -> host public key)."""
    base = list(cidr.hosts())
    hosts, publics = [], {}
    for index, host in enumerate(host_names):
        private, public = keypair()
        hosts.append({"name": host, "address": str(base[10 + index]), "host_key": private,
                      "authorized_keys": [f"{client_public} test-admin"]})
        if host in INSTANCE_HOSTS:
            hosts[-1].update(user_data=user_data(host, private, public), instance_id=INSTANCE_HOSTS[host])
        publics[host] = public
    spec = {"name": name, "bridge": {"name": bridge, "cidr": str(cidr), "gateway": str(base[0])},
            "hosts": hosts, "eip": {"address": str(base[99]), "allocation_id": None},
            "moto": {"port": free_port()}}
    return spec, publics


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the fleet needs root (namespaces, mounts, iptables)")


@pytest.fixture(scope="session")
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    require_root()
    work = tmp_path_factory.mktemp("fleet")
    client_private, client_public = keypair()
    fleet_cli("down", "--name", FLEET_NAME)  # a killed earlier run may have left one behind
    spec, publics = make_spec(FLEET_NAME, f"{FLEET_NAME}br0", free_cidr(), HOST_NAMES, client_public)
    spec_path = write_private(work / "spec.json", json.dumps(spec, indent=2))
    known = "".join(f"{h['address']} {publics[h['name']]}\n" for h in spec["hosts"])
    handle = Fleet(name=FLEET_NAME, spec=spec, spec_path=spec_path,
                   client_key=write_private(work / "client_key", client_private),
                   known_hosts=write_private(work / "known_hosts", known), work=work, host_public_keys=publics)
    request.addfinalizer(lambda: fleet_cli("down", "--name", FLEET_NAME))  # before `up`: also after a failed one
    fleet_cli("up", "--spec", str(spec_path))
    return handle
