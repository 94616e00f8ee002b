"""The EIP emulation: moto says who holds the Elastic IP, the fleet routes the EIP address there.

Two instances are created in the fleet's moto with the hosts' private addresses (what the platform's
Pulumi program does on AWS), an HTTP server in each host's netns says who it is, and the EIP address is
called from this machine and from a host while the allocation moves between them.
"""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet import eip as fleet_eip
from fleet import hosts
from fleet import moto as fleet_moto
from fleet.spec import state_dir
from tests.fleet.conftest import Fleet, fleet_cli

PORT = 8080
SWAP_LIMIT_S = 0.2


@dataclass
class Eip:
    ec2: object
    allocation_id: str
    instances: dict[str, str]  # host name -> instance id


def who_answers(address: str, timeout: float = 0.5) -> str | None:
    """The body of GET / on the EIP (each host serves its own name), or None when nothing answers."""
    conn = http.client.HTTPConnection(address, PORT, timeout=timeout)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode().strip()
    except OSError:
        return None
    finally:
        conn.close()


def wait_for(fleet: Fleet, host: str | None, limit: float) -> float:
    """Seconds until a new connection to the EIP reaches `host` (None: nobody answers); fails after `limit`."""
    started = time.monotonic()
    while True:
        answer = who_answers(fleet.eip, timeout=0.2)
        elapsed = time.monotonic() - started
        if answer == host:
            return elapsed
        assert elapsed < limit, f"EIP still answered by {answer!r}, not {host!r}, after {elapsed:.3f} s"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def eip(fleet: Fleet, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Eip:
    ec2 = fleet_moto.client(fleet.moto_endpoint, "ec2")  # the follower's short timeouts are its own
    vpc = ec2.create_vpc(CidrBlock=str(fleet.cidr))["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=str(fleet.cidr))["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instances = {}
    for host in fleet.host_public_keys:
        reply = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet,
                                  PrivateIpAddress=fleet.address(host))
        instances[host] = reply["Instances"][0]["InstanceId"]
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    fleet_cli("eip", "--name", fleet.name, "--allocation-id", allocation)
    for host in fleet.host_public_keys:  # an HTTP server in each host's network namespace, saying who it is
        www = tmp_path_factory.mktemp(f"www-{host}")
        (www / "index.html").write_text(f"{host}\n")
        server = subprocess.Popen(["ip", "netns", "exec", fleet.netns(host), sys.executable, "-m", "http.server",
                                   str(PORT), "--bind", fleet.address(host), "--directory", str(www)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        request.addfinalizer(lambda s=server: (s.kill(), s.wait()))
        deadline = time.monotonic() + 10
        while who_answers(fleet.address(host)) != host:
            assert time.monotonic() < deadline, f"test HTTP server in {host} did not start"
            time.sleep(0.05)
    return Eip(ec2=ec2, allocation_id=allocation, instances=instances)


def associate(eip: Eip, host: str) -> None:
    eip.ec2.associate_address(AllocationId=eip.allocation_id, InstanceId=eip.instances[host],
                              AllowReassociation=True)


@pytest.mark.fleet
def test_the_eip_reaches_its_holder_from_this_machine(fleet: Fleet, eip: Eip) -> None:
    associate(eip, "ecom-platform-1")
    wait_for(fleet, "ecom-platform-1", limit=2.0)
    assert who_answers(fleet.eip) == "ecom-platform-1"


@pytest.mark.fleet
def test_the_eip_moves_to_the_new_holder_within_200_ms(fleet: Fleet, eip: Eip) -> None:
    associate(eip, "ecom-platform-1")
    wait_for(fleet, "ecom-platform-1", limit=2.0)
    timings = []
    for host in ("ecom-lb-1", "ecom-platform-1", "ecom-lb-1"):
        associate(eip, host)
        timings.append(wait_for(fleet, host, limit=2.0))
    print("EIP re-association to first answer from the new holder (s):", [f"{t:.3f}" for t in timings])
    assert max(timings) < SWAP_LIMIT_S, timings


@pytest.mark.fleet
def test_hosts_reach_the_eip_too(fleet: Fleet, eip: Eip) -> None:
    associate(eip, "ecom-lb-1")
    wait_for(fleet, "ecom-lb-1", limit=2.0)
    for caller in fleet.host_public_keys:  # the other host, and the holder calling its own EIP
        out = fleet.ssh_ok(caller, f"curl -s -m 3 http://{fleet.eip}:{PORT}/")
        assert out.strip() == "ecom-lb-1", f"{caller} got {out!r}"


@pytest.mark.fleet
def test_a_disassociated_eip_routes_nowhere(fleet: Fleet, eip: Eip) -> None:
    associate(eip, "ecom-platform-1")
    wait_for(fleet, "ecom-platform-1", limit=2.0)
    association = eip.ec2.describe_addresses(AllocationIds=[eip.allocation_id])["Addresses"][0]["AssociationId"]
    eip.ec2.disassociate_address(AssociationId=association)
    wait_for(fleet, None, limit=2.0)
    chain = subprocess.run(["iptables", "-t", "nat", "-S", "ECOMTEST-EIP"], capture_output=True, text=True,
                           check=True).stdout
    assert "DNAT" not in chain


@pytest.mark.fleet
def test_each_change_is_logged(fleet: Fleet, eip: Eip) -> None:
    associate(eip, "ecom-lb-1")
    wait_for(fleet, "ecom-lb-1", limit=2.0)
    log = (state_dir(fleet.name) / "eip.log").read_text()
    assert f"{fleet.eip} -> {fleet.address('ecom-lb-1')} ({eip.instances['ecom-lb-1']})" in log
    assert f"[allocation {eip.allocation_id}]" in log


@pytest.mark.fleet
def test_the_eip_follows_an_updated_spec(fleet: Fleet, eip: Eip, tmp_path: Path) -> None:
    other = eip.ec2.allocate_address(Domain="vpc")["AllocationId"]
    try:
        updated = {**fleet.spec, "eip": {**fleet.spec["eip"], "allocation_id": other}}
        spec_path = tmp_path / "spec.json"
        spec_path.write_text(json.dumps(updated))
        fleet_cli("eip", "--spec", str(spec_path))
        assert fleet_eip.read_allocation(fleet.name) == other
        eip.ec2.associate_address(AllocationId=other, InstanceId=eip.instances["ecom-platform-1"])
        wait_for(fleet, "ecom-platform-1", limit=2.0)
    finally:
        fleet_cli("eip", "--name", fleet.name, "--allocation-id", eip.allocation_id)


@pytest.mark.fleet
def test_the_eip_command_refuses_a_bad_allocation_id(fleet: Fleet) -> None:
    proc = fleet_cli("eip", "--name", fleet.name, "--allocation-id", "alloc; rm -rf /", check=False)
    assert proc.returncode == 2
    assert proc.stderr == ("fleet: error: --allocation-id: 'alloc; rm -rf /' is not an allocation id "
                           "(example: eipalloc-0123456789abcdef0)\n")
    assert fleet_eip.read_allocation(fleet.name) != "alloc; rm -rf /"


@pytest.mark.fleet
def test_moto_and_the_eip_daemon_are_detached_fleet_processes(fleet: Fleet) -> None:
    moto_pid = int((state_dir(fleet.name) / "moto.pid").read_text())
    assert os.getsid(moto_pid) == moto_pid, "moto must have its own session to outlive `up`"
    for service in ("moto", "eip"):
        pids = hosts.cgroup_pids(hosts.fleet_cgroup(fleet.name) / service)
        assert len(pids) == 1, f"{service}: {pids}"
        assert (state_dir(fleet.name) / f"{service}.log").stat().st_size > 0
    assert moto_pid in hosts.cgroup_pids(hosts.fleet_cgroup(fleet.name) / "moto")
