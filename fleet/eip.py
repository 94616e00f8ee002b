"""Elastic IP emulation: the EIP address on the bridge is DNATed to whichever host moto says holds it.

On AWS, keepalived's notify script calls `associate-address` and the EIP's traffic moves to the new holder.
Here the EIP address sits on the fleet bridge in the root namespace, and a daemon (one per fleet, in the fleet
cgroup, log `<state>/eip.log`) polls moto every 100 ms: `describe_addresses` for the followed allocation,
then `describe_instances` for the holder's PrivateIpAddress (once per instance id: it never changes; the
instances are created in moto with the fleet host's address). When the holder changes it replaces the single
rule in the fleet's `<FLEET>-EIP` nat chain in one iptables-restore transaction, so new connections to the
EIP reach the new holder within ~200 ms.
Connections already open keep their conntrack entry and stay with the old holder, as on AWS.

Which allocation to follow: `eip.allocation_id` in the spec at `up`, then `python -m fleet eip
--allocation-id eipalloc-...` (or `--spec` with an updated spec), stored in `<state>/eip.json`; the daemon
re-reads it on every poll.
"""
from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ecom_infra.rules import ALLOCATION_ID

from . import hosts, network
from .daemon import daemon_spec
from .network import FleetError
from .spec import FleetSpec, state_dir

POLL_SECONDS = 0.1
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Holder:
    instance_id: str
    address: ipaddress.IPv4Address


def allocation_path(name: str) -> Path:
    return state_dir(name) / "eip.json"


def follow(name: str, allocation_id: str | None) -> None:
    """Tell the running fleet's daemon which allocation to follow (None: route the EIP nowhere)."""
    if allocation_id is not None and not ALLOCATION_ID.fullmatch(allocation_id):
        from ecom_infra.errors import ConfigError  # noqa: PLC0415 - only bad input needs it
        raise ConfigError("--allocation-id", f"{allocation_id!r} is not an allocation id",
                          "eipalloc-0123456789abcdef0")
    path = allocation_path(name)
    if not path.parent.is_dir():
        raise FleetError(f"fleet {name!r} is not up (no {path.parent})")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"allocation_id": allocation_id}) + "\n")
    os.replace(tmp, path)  # the daemon never reads a half-written file


def read_allocation(name: str) -> str | None:
    try:
        return json.loads(allocation_path(name).read_text()).get("allocation_id")
    except (FileNotFoundError, ValueError):
        return None


def ec2_client(endpoint: str):
    import boto3  # noqa: PLC0415 - boto3 is slow to import; only the daemon and tests need it
    from botocore.config import Config  # noqa: PLC0415

    # Short timeouts and no retries: a slow answer must not hold the EIP on a dead holder for long (the fleet warms
    # moto's EC2 before starting the follower; anything else that talks to moto uses fleet.moto.client).
    config = Config(connect_timeout=0.5, read_timeout=1, retries={"max_attempts": 1})
    return boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=config)


def find_holder(ec2, allocation_id: str, known: dict[str, ipaddress.IPv4Address]) -> Holder | None:
    """Who holds the allocation according to moto, or None when it is not associated.

    `known` caches instance id -> private address: an instance keeps its primary private address for life,
    so a steady state costs one call per poll, and a move two.
    """
    addresses = ec2.describe_addresses(AllocationIds=[allocation_id])["Addresses"]
    instance_id = addresses[0].get("InstanceId") if addresses else None
    if not instance_id:
        return None
    if instance_id not in known:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        private = reservations[0]["Instances"][0].get("PrivateIpAddress")
        if not private:
            return None
        known[instance_id] = ipaddress.IPv4Address(private)
    return Holder(instance_id, known[instance_id])


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
    print(f"{stamp} [eip] {message}", flush=True)


class Follower:
    """One poll of moto and, when the holder changed, one swap of the DNAT rule."""

    def __init__(self, spec: FleetSpec, ec2):
        self.spec = spec
        self.ec2 = ec2
        self.target: ipaddress.IPv4Address | None = None
        self.last_error: str | None = None
        self.addresses: dict[str, ipaddress.IPv4Address] = {}

    def tick(self, allocation_id: str | None) -> None:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            holder = find_holder(self.ec2, allocation_id, self.addresses) if allocation_id else None
        except (BotoCoreError, ClientError) as exc:
            error = str(exc).splitlines()[0]
            if error != self.last_error:  # log a lasting problem once, not ten times a second
                log(f"cannot ask moto ({error}); keeping {self.target or 'no target'}")
                self.last_error = error
            return
        self.last_error = None
        target = holder.address if holder else None
        if holder is not None and target is not None and target not in self.spec.bridge.cidr:
            log(f"{holder.instance_id} has {target}, outside {self.spec.bridge.cidr}: not routing the EIP")
            target = None
        if target != self.target:
            network.set_eip_target(self.spec, target)
            who = f"{target} ({holder.instance_id})" if holder and target else "nobody"
            log(f"{self.spec.eip.address} -> {who} [allocation {allocation_id}]")
            self.target = target


def run_daemon(name: str) -> int:
    spec = daemon_spec(name, log)
    if spec is None:
        return 1
    follower = Follower(spec, ec2_client(spec.moto_endpoint))
    network.set_eip_target(spec, None)  # start from a known state: nothing routed until moto says so
    log(f"following allocations for {spec.eip.address} via {spec.moto_endpoint}, every {POLL_SECONDS}s")
    while True:
        started = time.monotonic()
        follower.tick(read_allocation(name))
        time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - started)))


def start(spec: FleetSpec):
    """Start the daemon in the fleet cgroup; it outlives `up`."""
    if spec.eip.allocation_id is not None and not allocation_path(spec.name).exists():
        follow(spec.name, spec.eip.allocation_id)
    argv = [sys.executable, "-m", "fleet", "eip-daemon", "--name", spec.name]
    return hosts.spawn(argv, hosts.fleet_cgroup(spec.name) / "eip", state_dir(spec.name) / "eip.log",
                       cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
