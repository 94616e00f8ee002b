"""Fleet hosts: boot, SSH with pinned keys, isolation, reachability, clean `down`, refusal of bad input.

Fast checks of the spec and the rendered rules run anywhere; everything marked `fleet` runs real hosts.
"""
from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ecom_infra.errors import ConfigError
from fleet import hosts, network
from fleet import moto as fleet_moto
from fleet import spec as fleet_spec
from tests.fleet.conftest import (
    ROOT,
    Fleet,
    fleet_cli,
    free_cidr,
    keypair,
    make_spec,
    require_root,
    user_data,
    write_private,
)

BOOT_SCRIPT = ROOT / "fleet" / "host-boot.sh"


# ---- what a fleet leaves on the machine ------------------------------------------------------------------

def leftovers(name: str, bridge: str) -> dict[str, list[str]]:
    """Everything of fleet `name` still on this machine, by kind (all lists empty = nothing left)."""
    prefix = name.upper()
    state_path = str(fleet_spec.state_dir(name))
    cgroup_name = f"{hosts.CGROUP_PREFIX}{name}"
    processes = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cgroup = (proc / "cgroup").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if state == "Z":  # already dead; only waiting for this machine's PID 1 to reap it (it does within ~1 s)
            continue
        if f"/{cgroup_name}/" in cgroup or f"/{cgroup_name}\n" in cgroup or state_path in cmdline:
            processes.append(f"{proc.name} {cmdline[:80]}")
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if state_path in line.split()[4] or f"/run/netns/{name}-" in line.split()[4]]
    rules = [line for line in subprocess.run(["iptables-save"], capture_output=True, text=True,
                                             check=True).stdout.splitlines()
             if f"{prefix}-" in line or re.search(rf"\b{re.escape(bridge)}\b", line)]
    return {
        "netns": network.fleet_netns(name),
        "links": [link["ifname"] for link in network.fleet_links(name)]
        + ([bridge] if Path("/sys/class/net", bridge).exists() else []),
        "iptables": rules,
        "cgroups": [str(hosts.fleet_cgroup(name))] if hosts.fleet_cgroup(name).exists() else [],
        "processes": processes,
        "mounts": mounts,
        "state": [state_path] if Path(state_path).exists() else [],
    }


def assert_nothing_left(name: str, bridge: str) -> None:
    left = leftovers(name, bridge)
    for kind, items in left.items():
        assert items == [], f"{kind} left behind by fleet {name}: {items}"


# ---- spec validation (no root needed) ----------------------------------------------------------------------

def valid_spec() -> dict:
    _private, public = keypair()
    spec, _ = make_spec("ecomtestv", "ecomtestvbr0", ipaddress.IPv4Network("10.213.251.0/24"),
                        ("ecom-platform-1", "ecom-platform-2"), public)
    return spec


def public_of(private: str) -> str:
    key = serialization.load_ssh_private_key(private.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def rsa_private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


BAD_SPECS = {
    "missing hosts": (lambda s: s.pop("hosts"), "hosts: is required"),
    "unknown key": (lambda s: s.update(colour="blue"), "colour: unknown key"),
    "bad fleet name": (lambda s: s.update(name="Ecom Fleet"), "name: "),
    "address outside cidr": (lambda s: s["hosts"][0].update(address="10.9.9.9"), "hosts[0].address: "),
    "duplicate host": (lambda s: s["hosts"][1].update(name=s["hosts"][0]["name"]), "hosts[1].name: "),
    "duplicate address": (lambda s: s["hosts"][1].update(address=s["hosts"][0]["address"]),
                          "hosts[1].address: "),
    "host key garbage": (lambda s: s["hosts"][0].update(host_key="-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n"),
                         "hosts[0].host_key: "),
    "host key not ed25519": (lambda s: s["hosts"][1].update(host_key=rsa_private_key()),
                             "hosts[1].host_key: must be an ed25519 key"),
    "authorized key with a newline": (lambda s: s["hosts"][0].update(
        authorized_keys=["ssh-ed25519 AAAAC3Nza\ncommand=\"sh\" ssh-ed25519 AAAA"]),
        "hosts[0].authorized_keys[0]: "),
    "public cidr": (lambda s: s["bridge"].update(cidr="8.8.8.0/24"), "bridge.cidr: "),
    "gateway outside cidr": (lambda s: s["bridge"].update(gateway="10.1.1.1"), "bridge.gateway: "),
    "eip is the gateway": (lambda s: s["eip"].update(address=s["bridge"]["gateway"]), "eip.address: "),
    "bad allocation id": (lambda s: s["eip"].update(allocation_id="alloc-1"), "eip.allocation_id: "),
    "moto port as text": (lambda s: s["moto"].update(port="5000"), "moto.port: "),
    "interface name too long": (lambda s: s["bridge"].update(name="a-very-long-bridge-name"), "bridge.name: "),
    "user data without instance id": (lambda s: s["hosts"][0].update(user_data="#cloud-config\n"),
                                      "hosts[0].instance_id: is required"),
    "user data not cloud-config": (lambda s: s["hosts"][0].update(user_data="#!/bin/sh\n", instance_id="i-0123abcd"),
                                   "hosts[0].user_data: must be cloud-config"),
    "user data installing another key": (lambda s: s["hosts"][0].update(
        user_data=s["hosts"][1]["user_data"] if "user_data" in s["hosts"][1] else "#cloud-config\n",
        instance_id="i-0123abcd"), "hosts[0].user_data: does not install this host's host_key"),
    "bad instance id": (lambda s: s["hosts"][0].update(user_data=user_data("h", s["hosts"][0]["host_key"],
                                                                            public_of(s["hosts"][0]["host_key"])),
                                                       instance_id="instance-1"), "hosts[0].instance_id: "),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_is_refused_with_one_line_naming_the_key(case: str) -> None:
    spec = valid_spec()
    mutate, expected = BAD_SPECS[case]
    mutate(spec)
    with pytest.raises(ConfigError) as err:
        fleet_spec.parse(spec)
    message = str(err.value)
    assert message.startswith(expected), message
    assert "\n" not in message and "PRIVATE KEY" not in message


def test_valid_spec_derives_names_and_public_keys() -> None:
    spec = fleet_spec.parse(valid_spec())
    assert spec.netns(spec.hosts[0]) == "ecomtestv-ecom-platform-1"
    assert spec.veth(1) == "ecomtestvbr0p1" and len(spec.veth(99)) <= 15
    assert spec.hosts[0].host_public_key.startswith("ssh-ed25519 AAAA")
    assert "PRIVATE" not in repr(spec) + repr(spec.hosts[0])  # keys never reach a log via repr
    assert spec.moto_endpoint.startswith("http://10.213.251.1:")


def test_cli_refuses_malformed_spec_before_touching_anything() -> None:
    proc = fleet_cli("up", "--spec", "/dev/stdin", check=False, input_text='{"name": "ecomtestv", ')
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("fleet: error: --spec: /dev/stdin is not JSON"), proc.stderr
    assert not fleet_spec.state_dir("ecomtestv").exists()


def test_overlap_check_names_the_interface() -> None:
    spec = fleet_spec.parse(valid_spec())
    with pytest.raises(ConfigError, match=r"bridge.cidr: 10.213.251.0/24 overlaps 10.213.0.0/16 .* on eth9"):
        network.check_cidr_free(spec, used=[("eth9", ipaddress.IPv4Network("10.213.0.0/16"))])
    network.check_cidr_free(spec, used=[("eth9", ipaddress.IPv4Network("10.214.0.0/16"))])  # no overlap: fine


def test_firewall_only_lets_hosts_reach_the_bridge_and_moto() -> None:
    spec = fleet_spec.parse(valid_spec())
    rules = network.firewall_rules(spec).splitlines()
    port = spec.moto_port
    assert f"-A ECOMTESTV-INPUT -d 10.213.251.1/32 -p tcp -m tcp --dport {port} -j ACCEPT" in rules
    assert "-A ECOMTESTV-INPUT -j REJECT --reject-with icmp-admin-prohibited" in rules
    assert "-A ECOMTESTV-FORWARD -i ecomtestvbr0 -o ecomtestvbr0 -j ACCEPT" in rules
    assert rules.index("-A ECOMTESTV-FORWARD -j REJECT --reject-with icmp-admin-prohibited") > rules.index(
        "-A ECOMTESTV-FORWARD -i ecomtestvbr0 -o ecomtestvbr0 -j ACCEPT")
    assert not any("MASQUERADE" in r or ("SNAT" in r and "DNAT" not in r) for r in rules)  # no NAT outwards
    assert "-I OUTPUT 1 -d 10.213.251.100/32 -j ECOMTESTV-EIP" in rules


# ---- tools check what the fleet renders ---------------------------------------------------------------------

@pytest.mark.tools
def test_host_boot_script_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    proc = subprocess.run(["shellcheck", "--severity=style", str(BOOT_SCRIPT)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout
    assert os.access(BOOT_SCRIPT, os.X_OK), "host-boot.sh must be executable (it re-execs itself)"


@pytest.mark.tools
def test_git_origin_script_passes_shellcheck(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    from fleet.local import ORIGIN_DIGEST, ORIGIN_TEMPLATE  # noqa: PLC0415
    from renderers import render  # noqa: PLC0415

    script = tmp_path / "git-origin.sh"
    script.write_text(render(ORIGIN_TEMPLATE, deploy_public_key="ssh-ed25519 AAAA deploy",
                             repos=["ecom-docs.git", "ecom-platform.git"], digest="0" * 64,
                             digest_path=ORIGIN_DIGEST))
    proc = subprocess.run(["shellcheck", "--severity=style", str(script)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout
    assert f"> {ORIGIN_DIGEST}.new" in script.read_text()


@pytest.mark.fleet
def test_boot_script_refuses_to_start_systemd_outside_private_namespaces(tmp_path: Path) -> None:
    """The guards run before any mount; `--uts` keeps even a broken guard away from this machine's hostname."""
    require_root()
    missing = str(tmp_path / "no-such-host")
    here = os.readlink("/proc/self/ns/mnt")  # what `outer` passes: the namespace it ran in
    cases = {
        (): "must be PID 1 of a new PID namespace",
        ("unshare", "--pid", "--fork", "--uts", "--"): "must run in a new mount namespace",
        ("unshare", "--pid", "--fork", "--uts", "--mount", "--propagation", "shared", "--"):
            "needs private mount propagation",
        ("unshare", "--pid", "--fork", "--uts", "--mount", "--propagation", "private", "--"):
            "is not a prepared host dir",
    }
    for prefix, expected in cases.items():
        proc = subprocess.run([*prefix, str(BOOT_SCRIPT), "inner", missing, "guard-test", here],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 1 and expected in proc.stderr, (prefix, proc.stderr)
    assert not Path(missing).exists()
    assert socket.gethostname() != "guard-test"


@pytest.mark.fleet
@pytest.mark.tools
def test_firewall_rules_are_accepted_by_iptables_restore() -> None:
    require_root()
    spec = fleet_spec.parse(valid_spec())
    proc = subprocess.run(["iptables-restore", "--test", "--noflush"], input=network.firewall_rules(spec),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    for target in (None, ipaddress.IPv4Address("10.213.251.11")):
        proc = subprocess.run(["iptables-restore", "--test", "--noflush"], input=network.eip_rules(spec, target),
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.fleet
@pytest.mark.tools
def test_prepared_root_has_valid_sudoers_and_only_the_spec_host_key(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    require_root()
    monkeypatch.setattr(fleet_spec, "STATE_ROOT", tmp_path)
    spec = fleet_spec.parse(valid_spec())
    upper = hosts.prepare_root(spec, spec.hosts[0]) / "upper"
    proc = subprocess.run(["visudo", "-cf", str(upper / "etc/sudoers.d/ecom-fleet-admin")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    key = upper / "etc/ssh/ssh_host_ed25519_key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_text() == spec.hosts[0].host_key
    for other in Path("/etc/ssh").glob("ssh_host_*"):
        if not other.name.startswith("ssh_host_ed25519_key"):
            hidden = upper / "etc/ssh" / other.name
            assert hidden.is_char_device() and os.stat(hidden).st_rdev == 0, f"{other.name} is not whited out"
    wants = upper / "etc/systemd/system/multi-user.target.wants"
    assert os.getxattr(wants, "trusted.overlay.opaque") == b"y"
    assert sorted(p.name for p in wants.iterdir()) == ["ssh.service"]
    for unit in ("nginx.service", "haproxy.service", "keepalived.service"):  # disabled, not masked
        assert not (upper / "etc/systemd/system" / unit).exists()
    assert os.readlink(upper / "etc/systemd/system/postgresql.service") == "/dev/null"


# ---- a running fleet ---------------------------------------------------------------------------------------

@pytest.mark.fleet
def test_sshd_answers_with_the_pinned_host_key(fleet: Fleet) -> None:
    for host in fleet.host_public_keys:
        assert fleet.ssh_ok(host, "hostname").strip() == host


@pytest.mark.fleet
def test_a_wrong_host_key_is_refused(fleet: Fleet) -> None:
    _private, stranger = keypair()
    wrong = write_private(fleet.work / "wrong_known_hosts",
                          "".join(f"{h['address']} {stranger}\n" for h in fleet.spec["hosts"]))
    proc = fleet.ssh("ecom-platform-1", "true", known_hosts=wrong)
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr or "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr


@pytest.mark.fleet
def test_an_unknown_client_key_is_refused(fleet: Fleet) -> None:
    private, _public = keypair()
    key = write_private(fleet.work / "stranger_key", private)
    proc = fleet.ssh("ecom-platform-1", "true", key=key)
    assert proc.returncode == 255 and "Permission denied" in proc.stderr


@pytest.mark.fleet
def test_systemd_is_pid1_and_the_system_is_running(fleet: Fleet) -> None:
    for host in fleet.host_public_keys:
        out = fleet.ssh(host, "cat /proc/1/comm; systemctl is-system-running --wait; "
                              "systemctl --failed --no-legend --plain")
        lines = out.stdout.splitlines()
        assert lines[0] == "systemd"
        assert lines[1] == "running", f"{host} is {lines[1]}; failed units: {lines[2:]}"


@pytest.mark.fleet
def test_admin_has_passwordless_sudo_and_sshd_config_is_valid(fleet: Fleet) -> None:
    out = fleet.ssh_ok("ecom-lb-1", "sudo -n id -u && sudo -n sshd -t && echo sshd-config-ok")
    assert out.split() == ["0", "sshd-config-ok"]


@pytest.mark.fleet
def test_the_spec_key_is_the_only_host_key(fleet: Fleet) -> None:
    out = fleet.ssh_ok("ecom-platform-1", "sudo -n stat -c '%n %a' /etc/ssh/ssh_host_* && "
                                          "sudo -n cat /etc/ssh/ssh_host_ed25519_key.pub")
    lines = out.splitlines()
    assert lines[:2] == ["/etc/ssh/ssh_host_ed25519_key 600", "/etc/ssh/ssh_host_ed25519_key.pub 644"]
    assert lines[2].startswith(fleet.host_public_keys["ecom-platform-1"])


@pytest.mark.fleet
def test_only_sshd_and_systemd_essentials_run(fleet: Fleet) -> None:
    out = fleet.ssh_ok("ecom-platform-1", "systemctl list-units --type=service --state=running --no-legend "
                                          "--plain | cut -d' ' -f1; echo --; "
                                          "systemctl is-enabled nginx haproxy keepalived postgresql ssh || true")
    running, enabled = out.split("--\n")
    allowed = {"dbus.service", "ssh.service", "systemd-journald.service", "systemd-logind.service"}
    extra = {u for u in running.split() if u not in allowed and not re.fullmatch(r"user@\d+\.service", u)}
    assert extra == set(), f"services a host should not run: {extra}"
    # Deploy scripts enable these later: disabled, not masked. postgresql has no business in a host.
    assert enabled.split() == ["disabled", "disabled", "disabled", "masked", "enabled"]


@pytest.mark.fleet
def test_files_are_private_to_each_host(fleet: Fleet) -> None:
    marker = f"fleet-marker-{uuid.uuid4().hex}"
    fleet.ssh_ok("ecom-platform-1", f"sudo -n touch /root/{marker} /var/tmp/{marker} && touch /tmp/{marker}")
    out = fleet.ssh("ecom-lb-1", f"sudo -n ls /root/{marker} /var/tmp/{marker} /tmp/{marker}")
    assert out.returncode != 0 and out.stdout == "", out.stdout
    for path in (f"/root/{marker}", f"/var/tmp/{marker}", f"/tmp/{marker}"):
        assert not Path(path).exists(), f"{path} leaked onto this machine"
    # And a host cannot look into the fleet's state dir, where every host's upper layer lives.
    assert fleet.ssh_ok("ecom-lb-1", "sudo -n ls -A /var/lib/ecom-fleet").strip() == ""


@pytest.mark.fleet
def test_hosts_reach_each_other_and_moto_on_the_gateway(fleet: Fleet) -> None:
    peer = fleet.address("ecom-lb-1")
    out = fleet.ssh_ok("ecom-platform-1",
                       f"timeout 3 bash -c 'head -c 4 </dev/tcp/{peer}/22'; echo; "
                       f"curl -s -o /dev/null -w '%{{http_code}}' {fleet.moto_endpoint}/moto-api/data.json")
    assert out.split() == ["SSH-", "200"]
    assert fleet.ssh_ok("ecom-lb-1", "getent hosts ecom-platform-1").split()[0] == fleet.address("ecom-platform-1")


@pytest.fixture
def outside(request: pytest.FixtureRequest) -> str:
    """A listener in a network namespace of this test, off the bridge: the 'rest of the world' for a host."""
    require_root()
    ns, veth, root_addr, addr = "eftoutside", "eftout0", "192.168.213.1", "192.168.213.2"

    def cleanup() -> None:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)

    cleanup()
    request.addfinalizer(cleanup)
    for argv in (["ip", "netns", "add", ns],
                 ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
                 ["ip", "addr", "add", f"{root_addr}/30", "dev", veth], ["ip", "link", "set", veth, "up"],
                 ["ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", "eth0"],
                 ["ip", "-n", ns, "link", "set", "eth0", "up"], ["ip", "-n", ns, "link", "set", "lo", "up"]):
        subprocess.run(argv, check=True, capture_output=True)
    server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "8080", "--bind",
                               addr], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    request.addfinalizer(lambda: (server.kill(), server.wait()))
    deadline = time.monotonic() + 10
    probe = ["curl", "-s", "-m", "1", f"http://{addr}:8080/"]
    while subprocess.run(probe, capture_output=True, check=False).returncode:
        assert time.monotonic() < deadline, "the outside listener did not start"
        time.sleep(0.1)
    return addr


@pytest.mark.fleet
def test_hosts_reach_nothing_else(fleet: Fleet, outside: str) -> None:
    # A listener on this machine (all addresses) that is not moto: hosts must not reach it via the gateway.
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        out = fleet.ssh("ecom-platform-1",
                        f"curl -s -m 3 -o /dev/null -w '%{{http_code}}' http://{outside}:8080/; echo \" $?\"; "
                        f"timeout 3 bash -c '</dev/tcp/{fleet.gateway}/{port}' 2>/dev/null; echo $?; "
                        f"timeout 3 bash -c '</dev/tcp/{fleet.gateway}/80' 2>/dev/null; echo $?; "
                        "cat /proc/sys/net/ipv6/conf/all/disable_ipv6")
    curl_code, curl_rc, tcp_rc, imds_direct_rc, ipv6_off = out.stdout.split()
    assert curl_code == "000" and curl_rc != "0", "a host reached an address outside the bridge"
    assert tcp_rc != "0", "a host reached a non-moto port on the gateway"
    # The metadata responder listens there, but only for connections made to 169.254.169.254.
    assert imds_direct_rc != "0", "a host reached the metadata responder other than at 169.254.169.254"
    assert ipv6_off == "1"


@pytest.mark.fleet
def test_a_host_pins_no_network_namespace(fleet: Fleet) -> None:
    """A host's mount namespace starts as a copy of the machine's, /run/netns/* included; a kept copy would keep
    another host's (or another fleet's) namespace and veth alive after `down` deleted it."""
    for host in fleet.host_public_keys:
        pids = hosts.cgroup_pids(hosts.host_cgroup(fleet.name, host))
        assert pids
        for pid in pids:  # the unshare process is outside the chroot: it sees the whole mount namespace
            targets = [line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
            assert not [t for t in targets if t.startswith("/run/netns/")], f"{host} pid {pid} pins {targets}"


@pytest.mark.fleet
def test_status_reports_every_host(fleet: Fleet) -> None:
    info = json.loads(fleet_cli("status", "--name", fleet.name, "--json").stdout)
    assert info["up"] and info["moto"]["answers"]
    assert [h["name"] for h in info["hosts"]] == list(fleet.host_public_keys)
    for row in info["hosts"]:
        assert row["sshd"].startswith("SSH-2.0-OpenSSH") and isinstance(row["systemd_pid"], int)
    text = fleet_cli("status", "--name", fleet.name).stdout
    assert "ecom-platform-1" in text and "sshd up" in text


@pytest.mark.fleet
def test_status_says_moto_answers_while_it_holds_the_ec2_catalogue(fleet: Fleet) -> None:
    # moto's state dump grows to megabytes once EC2 has loaded its AMIs: a probe on it timed out and said DOWN.
    assert fleet_moto.client(fleet.moto_endpoint, "ec2").describe_images()["Images"]
    info = json.loads(fleet_cli("status", "--name", fleet.name, "--json").stdout)
    assert info["moto"] == {"endpoint": fleet.moto_endpoint, "answers": True}
    assert f"moto {fleet.moto_endpoint} answers" in fleet_cli("status", "--name", fleet.name).stdout


@pytest.mark.fleet
def test_moto_listens_on_the_gateway_only(fleet: Fleet) -> None:
    port = fleet.spec["moto"]["port"]
    listeners = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                               check=True).stdout.split("\n")
    local = {line.split()[3] for line in listeners if line.strip()}
    assert local == {f"{fleet.gateway}:{port}"}


# ---- refusing to start ---------------------------------------------------------------------------------------

def spec_beside(fleet: Fleet, name: str, **bridge) -> dict:
    _private, public = keypair()
    cidr = ipaddress.IPv4Network(bridge.get("cidr") or free_cidr(skip=(fleet.cidr,)))
    spec, _ = make_spec(name, f"{name}br0", cidr, ("ecom-platform-1",), public)
    return spec


def refused(spec: dict, env: dict | None = None) -> str:
    """Run `up`; assert it refused with one line and exit 2; return the message."""
    proc = fleet_cli("up", "--spec", "/dev/stdin", check=False, input_text=json.dumps(spec), env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("fleet: error: "), proc.stderr
    assert proc.stdout == ""
    return proc.stderr


@pytest.mark.fleet
def test_refuses_a_cidr_that_overlaps_an_address_in_use(fleet: Fleet) -> None:
    spec = spec_beside(fleet, "ecomtestx", cidr=str(fleet.cidr))
    message = refused(spec)
    assert f"bridge.cidr: {fleet.cidr} overlaps" in message and f"on {fleet.name}br0" in message
    assert_nothing_left("ecomtestx", "ecomtestxbr0")


@pytest.mark.fleet
def test_refuses_to_start_a_fleet_that_is_already_up(fleet: Fleet) -> None:
    spec = copy.deepcopy(fleet.spec)
    assert "name: fleet 'ecomtest' already has state" in refused(spec)


@pytest.mark.fleet
def test_refuses_when_namespaces_cannot_be_created(fleet: Fleet, tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "unshare").write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\n"
                                  "exit 1\n")
    (fake / "unshare").chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{fake}:{os.environ['PATH']}"}
    message = refused(spec_beside(fleet, "ecomtestn"), env=env)
    assert "machine: cannot create namespaces or an overlay root here: unshare: unshare failed" in message
    assert_nothing_left("ecomtestn", "ecomtestnbr0")
    assert not list(fleet_spec.STATE_ROOT.glob(".probe-*"))


@pytest.mark.root  # becomes another user
def test_refuses_to_run_as_an_ordinary_user() -> None:
    """Forked and setuid to nobody, so no interpreter has to be executable by that user."""
    spec_path = Path(f"/dev/shm/ecomtest-spec-{os.getpid()}.json")
    spec_path.write_text(json.dumps(valid_spec()))
    spec_path.chmod(0o644)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 99
        try:
            sys.stderr = open(write_end, "w", closefd=False)  # pytest replaced sys.stderr in this process
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            from fleet.__main__ import main  # noqa: PLC0415
            code = main(["up", "--spec", str(spec_path)])
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    _pid, status = os.waitpid(child, 0)
    stderr = os.read(read_end, 4096).decode()
    os.close(read_end)
    spec_path.unlink()
    assert os.waitstatus_to_exitcode(status) == 2, stderr
    assert stderr == "fleet: error: user: the fleet must run as root (it creates namespaces, mounts and iptables " \
                     "rules)\n"
    assert not fleet_spec.state_dir("ecomtestv").exists()


# ---- faults while starting, and down --------------------------------------------------------------------------

@pytest.fixture
def scratch_fleet(request: pytest.FixtureRequest, tmp_path: Path, fleet: Fleet):
    """A second, 1-host fleet for tests that break or stop it; always removed."""
    name = "ecomtestd"
    fleet_cli("down", "--name", name)
    request.addfinalizer(lambda: fleet_cli("down", "--name", name))
    spec = spec_beside(fleet, name)
    return name, spec, write_private(tmp_path / "spec.json", json.dumps(spec))


@pytest.mark.fleet
def test_down_removes_everything_a_running_fleet_made(scratch_fleet) -> None:
    name, _spec, spec_path = scratch_fleet
    fleet_cli("up", "--spec", str(spec_path))
    before = leftovers(name, f"{name}br0")
    assert before["netns"] and before["processes"] and before["iptables"] and before["cgroups"]
    out = fleet_cli("down", "--name", name).stdout
    assert f"[fleet] fleet: {name} is down" in out
    assert_nothing_left(name, f"{name}br0")


@pytest.mark.fleet
def test_down_cleans_up_after_up_was_killed_half_way(scratch_fleet) -> None:
    name, _spec, spec_path = scratch_fleet
    up = subprocess.Popen([sys.executable, "-m", "fleet", "up", "--spec", str(spec_path)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    for line in up.stdout:
        if "booting systemd" in line:
            up.send_signal(signal.SIGKILL)  # as a killed test run or a crash would
            break
    up.wait()
    up.stdout.close()
    assert up.returncode == -signal.SIGKILL
    half = leftovers(name, f"{name}br0")
    assert half["netns"] and half["processes"] and half["state"], "nothing was half-started: the test proves nothing"
    fleet_cli("down", "--name", name)
    assert_nothing_left(name, f"{name}br0")


@pytest.mark.fleet
def test_a_failed_start_removes_the_half_started_fleet(scratch_fleet) -> None:
    name, spec, _ = scratch_fleet
    with socket.socket() as squatter:  # moto cannot bind its port: the start fails after hosts were booted
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("0.0.0.0", spec["moto"]["port"]))
        squatter.listen()
        proc = fleet_cli("up", "--spec", "/dev/stdin", check=False, input_text=json.dumps(spec))
    assert proc.returncode == 1
    assert proc.stderr.startswith("fleet: error: moto_server exited:") and proc.stderr.count("\n") == 1
    assert "removing the half-started fleet" in proc.stdout
    assert_nothing_left(name, f"{name}br0")
