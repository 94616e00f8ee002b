"""Instance hosts boot as EC2 instances do: cloud-init from the user data, and a metadata service (IMDSv2).

`ecom-app-1` boots from the program's user data (renderers/host.py); `ecom-norule-1` from the same user data
without the nftables rule that keeps non-root processes away from 169.254.169.254. Both are instances in moto
with an instance profile, so the fleet's metadata service (fleet/imds.py) hands out that role's credentials.
"""
from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
from pathlib import Path

import pytest

from fleet import hosts
from fleet import spec as fleet_spec
from renderers import render
from tests.fleet.conftest import INSTANCE_HOSTS, Fleet, keypair, make_spec, require_root, write_private

ROLE = "ecom-test-node"
TOKEN = ("curl -sS -f -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
         "http://169.254.169.254/latest/api/token")


def imds_get(path: str) -> str:
    return f'curl -sS -f -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/{path}'


def as_root(fleet: Fleet, host: str, script: str) -> subprocess.CompletedProcess:
    return fleet.ssh(host, f"sudo -n bash -c {shlex.quote(script)}")


def imds_log(fleet: Fleet) -> str:
    """The responder's log, for failure messages."""
    try:
        return (fleet_spec.state_dir(fleet.name) / "imds.log").read_text()[-3000:]
    except FileNotFoundError:
        return "(no imds.log)"


@pytest.fixture(scope="module")
def instances(fleet: Fleet) -> dict[str, str]:
    """The two instance hosts as moto instances with an instance profile: host name -> moto instance id."""
    from fleet import moto  # noqa: PLC0415

    ec2, iam = moto.client(fleet.moto_endpoint, "ec2"), moto.client(fleet.moto_endpoint, "iam")
    vpc = ec2.create_vpc(CidrBlock=str(fleet.cidr.supernet(new_prefix=16)))["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=str(fleet.cidr))["Subnet"]["SubnetId"]
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                      "Principal": {"Service": "ec2.amazonaws.com"}}]}
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))
    iam.create_instance_profile(InstanceProfileName=ROLE)
    iam.add_role_to_instance_profile(InstanceProfileName=ROLE, RoleName=ROLE)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ids = {}
    for host in INSTANCE_HOSTS:
        made = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet,
                                 PrivateIpAddress=fleet.address(host), IamInstanceProfile={"Name": ROLE})
        ids[host] = made["Instances"][0]["InstanceId"]
    return ids


# ---- the prepared root: the seed, and nothing cloud-init writes -------------------------------------------------

@pytest.mark.fleet
@pytest.mark.tools
def test_an_instance_root_gets_a_nocloud_seed_and_neither_host_key_nor_admin(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    require_root()
    monkeypatch.setattr(fleet_spec, "STATE_ROOT", tmp_path)
    _private, client = keypair()
    raw, _publics = make_spec("ecomtests", "ecomtestsbr0", ipaddress.IPv4Network("10.213.250.0/24"),
                              ("ecom-app-1",), client)
    spec = fleet_spec.parse(raw)
    host = spec.hosts[0]
    upper = hosts.prepare_root(spec, host) / "upper"
    seed = upper / hosts.SEED_DIR
    assert (seed / "user-data").read_text() == host.user_data
    assert (seed / "user-data").stat().st_mode & 0o777 == 0o600
    assert f"instance-id: {INSTANCE_HOSTS['ecom-app-1']}\n" in (seed / "meta-data").read_text()
    assert not (upper / "etc/ssh/ssh_host_ed25519_key").exists()
    assert not (upper / "etc/sudoers.d/ecom-fleet-admin").exists()
    assert "admin:" not in ((upper / "etc/passwd").read_text() if (upper / "etc/passwd").exists() else "")
    wants = upper / "etc/systemd/system/cloud-init.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == ["cloud-config.service", "cloud-final.service",
                                                       "cloud-init-local.service", "cloud-init.service"]
    # cloud-init itself checks the image config and the user data it will read.
    proc = subprocess.run(["cloud-init", "schema", "--config-file", str(seed / "user-data")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- a booted instance host ---------------------------------------------------------------------------------------

@pytest.mark.fleet
def test_cloud_init_ran_from_the_seed_and_finished_without_errors(fleet: Fleet) -> None:
    for host, instance_id in INSTANCE_HOSTS.items():
        out = fleet.ssh_ok(host, "cloud-init status --wait --long; sudo -n cloud-init query instance_id; "
                                 "sudo -n cloud-init query platform")
        assert "status: done" in out, f"{host}: {out}"
        assert "errors: []" in out or "error" not in out.lower(), f"{host}: {out}"
        assert out.split()[-2:] == [instance_id, "nocloud"], f"{host}: {out}"


@pytest.mark.fleet
def test_sshd_presents_the_user_data_host_key_and_a_changed_key_fails(fleet: Fleet) -> None:
    assert fleet.ssh_ok("ecom-app-1", "hostname").strip() == "ecom-app-1"
    out = fleet.ssh_ok("ecom-app-1", "sudo -n sh -c 'ls /etc/ssh/ssh_host_*; cat /etc/ssh/ssh_host_ed25519_key.pub'")
    assert out.split()[:2] == ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub"]
    assert fleet.host_public_keys["ecom-app-1"] in out
    _private, stranger = keypair()
    wrong = write_private(fleet.work / "wrong_known_hosts_app", f"{fleet.address('ecom-app-1')} {stranger}\n")
    proc = fleet.ssh("ecom-app-1", "true", known_hosts=wrong)
    assert proc.returncode == 255 and "Host key verification failed" in proc.stderr, proc.stderr


@pytest.mark.fleet
def test_root_gets_a_token_and_the_profile_credentials(fleet: Fleet, instances: dict[str, str]) -> None:
    script = (f"token=$({TOKEN}) && {imds_get('instance-id')} && echo && "
              f"role=$({imds_get('iam/security-credentials/')}) && echo \"$role\" && "
              f"{imds_get('iam/security-credentials/$role')}")
    proc = as_root(fleet, "ecom-app-1", script)
    assert proc.returncode == 0, f"{proc.stderr}\n{imds_log(fleet)}"
    instance_id, role, document = proc.stdout.split("\n", 2)
    assert instance_id == instances["ecom-app-1"]
    assert role == ROLE
    creds = json.loads(document)
    assert creds["Code"] == "Success" and creds["AccessKeyId"] and creds["Token"]
    # boto3's own credential chain on the host (what keepalived's notify_master uses) finds them.
    identity = fleet.ssh_ok("ecom-app-1", "sudo -n python3 -c 'import boto3, sys; print(boto3.client(\"sts\", "
                                          f"region_name=\"us-east-1\", endpoint_url=\"{fleet.moto_endpoint}\")"
                                          ".get_caller_identity()[\"Arn\"])'").strip()
    assert identity.endswith(f":assumed-role/{ROLE}/{instances['ecom-app-1']}"), identity


@pytest.mark.fleet
def test_the_metadata_service_refuses_requests_without_a_valid_token(fleet: Fleet, instances: dict) -> None:
    code = "curl -s -o /dev/null -w '%{http_code}\\n' "
    proc = as_root(fleet, "ecom-app-1",
        f"{code}http://169.254.169.254/latest/meta-data/instance-id; "
        f"{code}-H 'X-aws-ec2-metadata-token: forged' http://169.254.169.254/latest/meta-data/instance-id; "
        f"{code}-X PUT http://169.254.169.254/latest/api/token; "
        f"{code}-X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 21601' http://169.254.169.254/latest/api/token")
    assert proc.stdout.split() == ["401", "401", "400", "400"], f"{proc.stderr}\n{imds_log(fleet)}"


@pytest.mark.fleet
def test_a_non_root_user_is_blocked_by_the_user_data_rule(fleet: Fleet, instances: dict) -> None:
    proc = fleet.ssh("ecom-app-1", TOKEN)                      # admin, not root
    assert proc.returncode == 7 and proc.stdout == "", proc.stderr     # refused by the rule: no connection
    assert as_root(fleet, "ecom-app-1", TOKEN).stdout, "root, same host, same moment: gets a token"
    out = fleet.ssh_ok("ecom-app-1", "sudo -n nft list table inet ecom_imds")
    assert "ip daddr 169.254.169.254 meta skuid != 0 reject" in out


@pytest.mark.fleet
def test_the_first_step_fails_loudly_on_a_host_whose_user_data_lacks_the_rule(fleet: Fleet, instances: dict):
    check = render("host/wait_for_cloud_init.sh.j2")
    proc = fleet.ssh("ecom-norule-1", TOKEN)                   # the hole the rule closes: admin gets a token
    assert proc.returncode == 0 and proc.stdout, proc.stderr
    failing = as_root(fleet, "ecom-norule-1", "set -euo pipefail\n" + check)
    assert failing.returncode == 1
    assert "error: a non-root process reached the instance metadata service" in failing.stderr
    passing = as_root(fleet, "ecom-app-1", "set -euo pipefail\n" + check)
    assert passing.returncode == 0, passing.stderr


@pytest.mark.fleet
def test_a_container_behind_the_host_gets_no_token_hop_limit_1(fleet: Fleet, instances: dict) -> None:
    """As on EC2 with http_put_response_hop_limit 1: replies leave with TTL 1, one routed hop more drops them."""
    netns, inner = fleet.netns("ecom-app-1"), f"{fleet.name}-hop"
    run = lambda *argv: subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: E731
    run("ip", "netns", "del", inner)
    try:
        for argv in (["ip", "netns", "add", inner],
                     ["ip", "link", "add", "hop0", "netns", netns, "type", "veth", "peer", "name", "eth0",
                      "netns", inner],
                     ["ip", "-n", netns, "addr", "add", "192.168.77.1/24", "dev", "hop0"],
                     ["ip", "-n", netns, "link", "set", "hop0", "up"],
                     ["ip", "-n", inner, "addr", "add", "192.168.77.2/24", "dev", "eth0"],
                     ["ip", "-n", inner, "link", "set", "eth0", "up"],
                     ["ip", "-n", inner, "route", "add", "default", "via", "192.168.77.1"],
                     ["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                     # what Docker does on a host: the container's traffic leaves with the host's address
                     ["ip", "netns", "exec", netns, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s",
                      "192.168.77.0/24", "-o", "eth0", "-j", "MASQUERADE"]):
            proc = run(*argv)
            assert proc.returncode == 0, f"{argv}: {proc.stderr}"
        from_container = run("ip", "netns", "exec", inner, "curl", "-sS", "-m", "3", "-X", "PUT", "-H",
                             "X-aws-ec2-metadata-token-ttl-seconds: 60", "http://169.254.169.254/latest/api/token")
        assert from_container.returncode == 28, from_container      # timed out: the replies never came back
        assert from_container.stdout == ""
    finally:
        run("ip", "netns", "del", inner)
        run("ip", "netns", "exec", netns, "iptables", "-t", "nat", "-F", "POSTROUTING")
    # The host itself, in the same moment, gets its token.
    assert fleet.ssh_ok("ecom-app-1", f"sudo -n {TOKEN}").strip()


def boot_marks(fleet: Fleet, host: str) -> dict[str, float]:
    """Seconds from the host's systemd start to sshd active and to cloud-init's last stage done (if any)."""
    units = ["ssh.service", "cloud-init-local.service", "cloud-init.service", "cloud-final.service"]
    out = fleet.ssh_ok(host, "systemctl show -p UserspaceTimestampMonotonic --value; for u in "
                             + " ".join(units) + "; do systemctl show -p ActiveEnterTimestampMonotonic --value $u; "
                             "done")
    start, *marks = [int(x or 0) for x in out.split()]
    return {unit: round((mark - start) / 1e6, 2) for unit, mark in zip(units, marks, strict=False) if mark}


@pytest.mark.fleet
def test_boot_time_through_cloud_init_stays_reasonable(fleet: Fleet) -> None:
    """Reported with -s: a fleet-made host (as before) against an instance host booting through cloud-init."""
    before, after = boot_marks(fleet, "ecom-platform-1"), boot_marks(fleet, "ecom-app-1")
    blame = fleet.ssh_ok("ecom-app-1", "sudo -n cloud-init analyze blame 2>/dev/null | head -n 12")
    print(f"\n[boot] fleet-made host: {before}\n[boot] cloud-init host: {after}\n[boot] cloud-init analyze blame:\n"
          f"{blame}")
    assert set(after) == {"ssh.service", "cloud-init-local.service", "cloud-init.service", "cloud-final.service"}
    assert after["ssh.service"] >= after["cloud-init.service"]     # sshd starts only with the pinned key in place
    assert after["cloud-final.service"] < 60, after
