"""The fleet's network in the machine's root namespace: bridge, per-host netns + veth, firewall and NAT.

Layout: hosts sit on one bridge (`spec.bridge.name`) holding the gateway address (moto listens there) and the
EIP address. Each host has a network namespace `<fleet>-<host>` with `eth0` (a veth whose other end is a bridge
port) and a default route via the gateway. Forwarding is switched on for the bridge only (the per-interface
sysctl, not the machine-wide `ip_forward`), and the fleet's own iptables chains allow bridge-to-bridge traffic,
moto and ICMP on the gateway, and reject everything else from the hosts: no NAT to the outside, the platform
needs no internet.

Everything here is named after the fleet (`<fleet>-*` namespaces, `<FLEET>-*` chains, interface alias
`ecom-fleet:<fleet>`) so `teardown` finds exactly what the fleet made from the system alone, with or without
its state dir.
"""
from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
from pathlib import Path

from ecom_infra.errors import ConfigError

from .spec import FleetSpec, HostSpec

ALIAS_PREFIX = "ecom-fleet:"
IMDS_ADDRESS = "169.254.169.254"
IMDS_PORT = 80  # where fleet/imds.py listens on the gateway
# (table, built-in chain) pairs the fleet hooks into; teardown searches exactly these for its jumps.
HOOKS = (("filter", "INPUT"), ("filter", "FORWARD"), ("nat", "PREROUTING"), ("nat", "OUTPUT"),
         ("nat", "POSTROUTING"))


class FleetError(RuntimeError):
    """A step of the fleet failed on the system (not bad input): one line, names the step."""


def run(argv: list[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run one system command; on failure raise FleetError with the command and its first error line.

    Callers never pass secrets in argv (they go in files with mode 600), so the command can be shown.
    """
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()[0]
        raise FleetError(f"{shlex.join(argv)}: {detail}")
    return proc


def alias(fleet: str) -> str:
    return f"{ALIAS_PREFIX}{fleet}"


# ---- checks before anything is created -------------------------------------------------------------------

def networks_in_use() -> list[tuple[str, ipaddress.IPv4Network]]:
    """(interface, network) for every IPv4 address and non-default route on this machine."""
    used: list[tuple[str, ipaddress.IPv4Network]] = []
    for link in json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
        for info in link.get("addr_info", []):
            net = ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}").network
            used.append((link["ifname"], net))
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]"):
        dst = route.get("dst", "default")
        if dst in ("default", "0.0.0.0/0") or route.get("type") in ("broadcast", "local"):
            continue
        try:
            used.append((route.get("dev", "?"), ipaddress.IPv4Network(dst, strict=False)))
        except ValueError:
            continue
    return used


def check_cidr_free(spec: FleetSpec, used: list[tuple[str, ipaddress.IPv4Network]] | None = None) -> None:
    for dev, net in networks_in_use() if used is None else used:
        if spec.bridge.cidr.overlaps(net) and not net.is_loopback:
            raise ConfigError("bridge.cidr", f"{spec.bridge.cidr} overlaps {net} already in use on {dev}",
                              "pick a free private /24 such as 10.213.7.0/24")


def check_bridge_name_free(spec: FleetSpec) -> None:
    if Path("/sys/class/net", spec.bridge.name).exists():
        raise ConfigError("bridge.name", f"interface {spec.bridge.name} already exists on this machine")


# ---- creation --------------------------------------------------------------------------------------------

def set_sysctl(path: str, value: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    run([*prefix, "sysctl", "-qw", f"{path}={value}"])


def create_bridge(spec: FleetSpec) -> None:
    br, net = spec.bridge.name, spec.bridge.cidr
    run(["ip", "link", "add", br, "type", "bridge"])
    run(["ip", "link", "set", "dev", br, "alias", alias(spec.name)])
    # No IPv6 on the fleet's links: the link-local addresses would be a second, unfiltered way in and out.
    set_sysctl(f"net.ipv6.conf.{br}.disable_ipv6", "1")
    run(["ip", "addr", "add", f"{spec.bridge.gateway}/{net.prefixlen}", "dev", br])
    run(["ip", "addr", "add", f"{spec.eip.address}/32", "dev", br])
    # Forwarding for packets that arrive on the bridge only: EIP traffic from hosts is DNATed back onto it.
    set_sysctl(f"net.ipv4.conf.{br}.forwarding", "1")
    run(["ip", "link", "set", "dev", br, "up"])


def create_host_link(spec: FleetSpec, index: int, host: HostSpec) -> None:
    netns, veth = spec.netns(host), spec.veth(index)
    run(["ip", "netns", "add", netns])
    set_sysctl("net.ipv6.conf.all.disable_ipv6", "1", netns)
    set_sysctl("net.ipv6.conf.default.disable_ipv6", "1", netns)
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    run(["ip", "link", "set", "dev", veth, "alias", alias(spec.name)])
    set_sysctl(f"net.ipv6.conf.{veth}.disable_ipv6", "1")
    run(["ip", "link", "set", "dev", veth, "master", spec.bridge.name])
    # Hairpin: a host calling the EIP it holds itself gets its packet back through its own bridge port.
    run(["ip", "link", "set", "dev", veth, "type", "bridge_slave", "hairpin", "on"])
    run(["ip", "link", "set", "dev", veth, "up"])
    run(["ip", "-n", netns, "addr", "add", f"{host.address}/{spec.bridge.cidr.prefixlen}", "dev", "eth0"])
    run(["ip", "-n", netns, "link", "set", "dev", "lo", "up"])
    run(["ip", "-n", netns, "link", "set", "dev", "eth0", "up"])
    run(["ip", "-n", netns, "route", "add", "default", "via", str(spec.bridge.gateway)])


def firewall_rules(spec: FleetSpec) -> str:
    """iptables-restore input (applied with --noflush) for the fleet's chains and the jumps into them."""
    p, br, gw = spec.chain_prefix, spec.bridge.name, spec.bridge.gateway
    reject = "REJECT --reject-with icmp-admin-prohibited"
    return "\n".join([
        "*filter",
        f":{p}-INPUT - [0:0]",
        f":{p}-FORWARD - [0:0]",
        # Hosts may talk to the machine only to reach moto (and ping the gateway); replies to the machine's
        # own connections (ssh into hosts, curl to the EIP) are established traffic.
        f"-A {p}-INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"-A {p}-INPUT -d {gw}/32 -p tcp -m tcp --dport {spec.moto_port} -j ACCEPT",
        f"-A {p}-INPUT -d {gw}/32 -p icmp -j ACCEPT",
        # The metadata service (fleet/imds.py), only for connections made to 169.254.169.254:80.
        f"-A {p}-INPUT -d {gw}/32 -p tcp -m tcp --dport {IMDS_PORT} -m conntrack --ctstate DNAT "
        f"--ctorigdst {IMDS_ADDRESS}/32 --ctorigdstport 80 -j ACCEPT",
        f"-A {p}-INPUT -j {reject}",
        # Host to host (bridged, and EIP traffic routed back onto the bridge) only; never out of the bridge.
        f"-A {p}-FORWARD -i {br} -o {br} -j ACCEPT",
        f"-A {p}-FORWARD -j {reject}",
        f"-I INPUT 1 -i {br} -j {p}-INPUT",
        f"-I FORWARD 1 -i {br} -j {p}-FORWARD",
        f"-I FORWARD 1 -o {br} -j {p}-FORWARD",
        "COMMIT",
        "*nat",
        f":{p}-EIP - [0:0]",
        f":{p}-POST - [0:0]",
        f":{p}-IMDS - [0:0]",
        # Each host's 169.254.169.254 is the fleet's metadata responder on the gateway (one per fleet, so two
        # fleets on one machine never answer each other's hosts).
        f"-A {p}-IMDS -i {br} -p tcp -m tcp --dport 80 -j DNAT --to-destination {gw}:{IMDS_PORT}",
        # The EIP holder answers a DNATed connection to the gateway, so the reply comes back through the
        # machine and conntrack can undo the DNAT (otherwise a host calling the EIP gets a reply from a
        # stranger's address and drops it).
        f"-A {p}-POST -o {br} -m conntrack --ctstate DNAT -j SNAT --to-source {gw}",
        f"-I PREROUTING 1 -d {spec.eip.address}/32 -j {p}-EIP",
        f"-I OUTPUT 1 -d {spec.eip.address}/32 -j {p}-EIP",
        f"-I POSTROUTING 1 -j {p}-POST",
        f"-I PREROUTING 1 -d {IMDS_ADDRESS}/32 -j {p}-IMDS",
        "COMMIT",
        "",
    ])


def apply_firewall(spec: FleetSpec) -> None:
    remove_firewall(spec.chain_prefix)  # converge: a crashed earlier run may have left a partial set
    run(["iptables-restore", "--noflush"], stdin=firewall_rules(spec))


def eip_rules(spec: FleetSpec, target: ipaddress.IPv4Address | None) -> str:
    """Replace the EIP chain's content in one transaction: declaring a chain under --noflush flushes it."""
    lines = ["*nat", f":{spec.chain_prefix}-EIP - [0:0]"]
    if target is not None:
        lines.append(f"-A {spec.chain_prefix}-EIP -j DNAT --to-destination {target}")
    return "\n".join([*lines, "COMMIT", ""])


def set_eip_target(spec: FleetSpec, target: ipaddress.IPv4Address | None) -> None:
    run(["iptables-restore", "--noflush"], stdin=eip_rules(spec, target))


# ---- discovery and teardown ------------------------------------------------------------------------------

def fleet_chains(prefix: str) -> dict[str, list[str]]:
    """table -> the fleet's own chains in it."""
    chains: dict[str, list[str]] = {}
    for table in ("filter", "nat"):
        lines = run(["iptables", "-t", table, "-S"]).stdout.splitlines()
        chains[table] = [line.split()[1] for line in lines
                         if line.startswith(f"-N {prefix}-")]
    return chains


def fleet_jumps(prefix: str) -> list[tuple[str, list[str]]]:
    """(table, rule args) of every rule in a built-in chain that jumps to one of the fleet's chains."""
    jumps = []
    for table, chain in HOOKS:
        for line in run(["iptables", "-t", table, "-S", chain]).stdout.splitlines():
            args = shlex.split(line)
            if args[:1] == ["-A"] and "-j" in args and args[args.index("-j") + 1].startswith(f"{prefix}-"):
                jumps.append((table, args[1:]))
    return jumps


def remove_firewall(prefix: str) -> None:
    for table, rule in fleet_jumps(prefix):
        run(["iptables", "-t", table, "-D", *rule], check=False)
    for table, chains in fleet_chains(prefix).items():
        for chain in chains:
            run(["iptables", "-t", table, "-F", chain], check=False)
        for chain in chains:
            run(["iptables", "-t", table, "-X", chain], check=False)


def fleet_links(fleet: str) -> list[dict]:
    """Interfaces in the root namespace tagged with the fleet's alias (its bridge and veths)."""
    links = json.loads(run(["ip", "-j", "-d", "link", "show"]).stdout or "[]")
    return [link for link in links if link.get("ifalias") == alias(fleet)]


def fleet_netns(fleet: str) -> list[str]:
    names = [entry["name"] for entry in json.loads(run(["ip", "-j", "netns", "list"]).stdout or "[]")]
    return sorted(name for name in names if name.startswith(f"{fleet}-"))


def teardown(fleet: str, prefix: str) -> list[str]:
    """Remove the fleet's namespaces, interfaces and firewall. Idempotent; returns what it removed."""
    removed = []
    for netns in fleet_netns(fleet):
        run(["ip", "netns", "del", netns], check=False)  # takes the veth pair with it
        removed.append(f"netns {netns}")
    # Veths first (a leftover whose netns is gone), then the bridge.
    for link in sorted(fleet_links(fleet), key=lambda lk: lk.get("linkinfo", {}).get("info_kind") == "bridge"):
        run(["ip", "link", "del", "dev", link["ifname"]], check=False)
        removed.append(f"link {link['ifname']}")
    if fleet_jumps(prefix) or any(fleet_chains(prefix).values()):
        remove_firewall(prefix)
        removed.append(f"iptables chains {prefix}-*")
    return removed
