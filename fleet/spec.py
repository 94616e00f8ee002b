"""The fleet spec: one JSON file says which hosts exist, their addresses, keys, the bridge, the EIP and moto.

`load(path)` / `parse(mapping)` return a validated, frozen `FleetSpec` or raise `ConfigError` naming the key
(`hosts[1].address: ...`). Everything the fleet later puts into a command line, a file name or a network
interface name comes from here, so the patterns below are strict on purpose. The spec holds the hosts'
private host keys: it is stored with mode 600 and never printed.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ecom_infra.errors import ConfigError
from ecom_infra.rules import ALLOCATION_ID, INSTANCE_ID

# The fleet name prefixes network namespaces (`<name>-<host>`), iptables chains (`<NAME>-FORWARD`, at most
# 28 characters) and the cgroup; no dash, so `<name>-` never matches another fleet's prefix.
FLEET_NAME = re.compile(r"[a-z][a-z0-9]{1,11}")
# Linux interface names: at most 15 bytes.
IFACE_NAME = re.compile(r"[a-z][a-z0-9]{0,14}")
# Host names double as the hostname and part of the netns name: RFC 1123 labels, lower case.
HOST_NAME = re.compile(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?")
MAX_USER_DATA = 16384  # EC2's limit on user data (before base64)
AUTHORIZED_KEY = re.compile(
    r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( [^\n\r]*)?")
TOP_KEYS = {"name", "bridge", "hosts", "eip", "moto"}
MAX_HOSTS = 100
DEFAULT_MOTO_PORT = 5000
# Everything a fleet keeps lives here, never in /tmp (a host's systemd must not be able to touch it, and a
# crashed test run must leave enough behind for `down` to clean up).
STATE_ROOT = Path("/var/lib/ecom-fleet")


@dataclass(frozen=True)
class BridgeSpec:
    name: str
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address


@dataclass(frozen=True)
class HostSpec:
    name: str
    address: ipaddress.IPv4Address
    host_key: str = ""  # OpenSSH private key text; a secret, kept out of repr
    host_public_key: str = ""  # "ssh-ed25519 AAAA...", derived from host_key
    authorized_keys: tuple[str, ...] = ()
    # An EC2 instance's host: cloud-init boots it from this user data (NoCloud seed) and the instance id;
    # the fleet then writes neither its host key nor its admin user. Empty: a fleet-made host (the git host).
    user_data: str = ""  # a secret (it carries the host key), kept out of repr
    instance_id: str = ""

    @property
    def cloud_init(self) -> bool:
        return bool(self.user_data)

    def __repr__(self) -> str:  # never show the private key in a traceback or log
        return f"HostSpec(name={self.name!r}, address={str(self.address)!r})"


@dataclass(frozen=True)
class EipSpec:
    address: ipaddress.IPv4Address
    allocation_id: str | None


@dataclass(frozen=True)
class FleetSpec:
    name: str
    bridge: BridgeSpec
    hosts: tuple[HostSpec, ...]
    eip: EipSpec
    moto_port: int
    raw: dict  # the validated input, stored in the state dir so `down` knows what `up` made

    def __repr__(self) -> str:
        return f"FleetSpec(name={self.name!r}, hosts={[h.name for h in self.hosts]!r})"

    @property
    def chain_prefix(self) -> str:
        return self.name.upper()

    def netns(self, host: HostSpec) -> str:
        return f"{self.name}-{host.name}"

    def veth(self, index: int) -> str:
        """Root-side veth name: `<bridge>p<index>` cut to 15 bytes (index keeps it unique)."""
        suffix = f"p{index}"
        return self.bridge.name[: 15 - len(suffix)] + suffix

    def host(self, name: str) -> HostSpec:
        for host in self.hosts:
            if host.name == name:
                return host
        raise ConfigError("host", f"no host named {name!r} in fleet {self.name!r}")

    @property
    def moto_endpoint(self) -> str:
        return f"http://{self.bridge.gateway}:{self.moto_port}"


def load(path: str | Path) -> FleetSpec:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--spec", f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("--spec", f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from None
    return parse(data)


def parse(data: object) -> FleetSpec:
    obj = _mapping(data, "spec", TOP_KEYS, required=TOP_KEYS - {"moto"})
    name = _match(obj["name"], "name", FLEET_NAME, "ecomfleet")
    bridge = _bridge(obj["bridge"])
    hosts = _hosts(obj["hosts"], bridge)
    eip = _eip(obj.get("eip"), bridge, hosts)
    port = _port(obj.get("moto", {"port": DEFAULT_MOTO_PORT}))
    return FleetSpec(name=name, bridge=bridge, hosts=hosts, eip=eip, moto_port=port, raw=dict(obj))


def _mapping(value: object, key: str, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}" if key != "spec" else unknown[0], "unknown key",
                          f"allowed: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(value))
    if missing:
        raise ConfigError(f"{key}.{missing[0]}" if key != "spec" else missing[0], "is required")
    return value


def _match(value: object, key: str, pattern: re.Pattern, example: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(key, f"{value!r} is not a valid value (pattern {pattern.pattern})", example)
    return value


def _address(value: object, key: str, net: ipaddress.IPv4Network | None = None) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.IPv4Address(value) if isinstance(value, str) else None
    except ipaddress.AddressValueError:
        addr = None
    if addr is None:
        raise ConfigError(key, f"{value!r} is not an IPv4 address", "10.213.0.11")
    if net is not None and (addr not in net or addr in (net.network_address, net.broadcast_address)):
        raise ConfigError(key, f"{addr} is not a usable address in the bridge network {net}")
    return addr


def _bridge(value: object) -> BridgeSpec:
    obj = _mapping(value, "bridge", {"name", "cidr", "gateway"}, {"name", "cidr", "gateway"})
    name = _match(obj["name"], "bridge.name", IFACE_NAME, "ecombr0")
    try:
        cidr = ipaddress.IPv4Network(obj["cidr"]) if isinstance(obj["cidr"], str) else None
    except ValueError:
        cidr = None
    if cidr is None:
        raise ConfigError("bridge.cidr", f"{obj['cidr']!r} is not an IPv4 network", "10.213.0.0/24")
    if not cidr.is_private or cidr.is_loopback or cidr.is_link_local or not 16 <= cidr.prefixlen <= 29:
        raise ConfigError("bridge.cidr", f"{cidr} must be a private network between /16 and /29", "10.213.0.0/24")
    gateway = _address(obj["gateway"], "bridge.gateway", cidr)
    return BridgeSpec(name=name, cidr=cidr, gateway=gateway)


def _hosts(value: object, bridge: BridgeSpec) -> tuple[HostSpec, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError("hosts", "must be a non-empty list of hosts")
    if len(value) > MAX_HOSTS:
        raise ConfigError("hosts", f"at most {MAX_HOSTS} hosts")
    hosts: list[HostSpec] = []
    seen_names: set[str] = set()
    seen_addresses = {bridge.gateway}
    for index, item in enumerate(value):
        key = f"hosts[{index}]"
        obj = _mapping(item, key, {"name", "address", "host_key", "authorized_keys", "user_data", "instance_id"},
                       {"name", "address", "host_key", "authorized_keys"})
        name = _match(obj["name"], f"{key}.name", HOST_NAME, "ecom-platform-1")
        if name in seen_names:
            raise ConfigError(f"{key}.name", f"{name!r} is used by another host")
        address = _address(obj["address"], f"{key}.address", bridge.cidr)
        if address in seen_addresses:
            raise ConfigError(f"{key}.address", f"{address} is already the gateway's or another host's")
        private, public = _host_key(obj["host_key"], f"{key}.host_key")
        keys = _authorized_keys(obj["authorized_keys"], f"{key}.authorized_keys")
        user_data, instance_id = _cloud_init(obj, key, public)
        seen_names.add(name)
        seen_addresses.add(address)
        hosts.append(HostSpec(name=name, address=address, host_key=private, host_public_key=public,
                              authorized_keys=keys, user_data=user_data, instance_id=instance_id))
    return tuple(hosts)


def _host_key(value: object, key: str) -> tuple[str, str]:
    """Parse the private key; the message never echoes key material."""
    if not isinstance(value, str) or "PRIVATE KEY" not in value:
        raise ConfigError(key, "must be an OpenSSH ed25519 private key (PEM text)")
    try:
        private = serialization.load_ssh_private_key(value.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(key, f"is not a readable unencrypted OpenSSH private key ({type(exc).__name__})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(key, "must be an ed25519 key")
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    text = value if value.endswith("\n") else value + "\n"
    return text, public.decode()


def _cloud_init(obj: dict, key: str, public: str) -> tuple[str, str]:
    """(user data, instance id) of an instance host, or ("", "") for a fleet-made one; never echoes the data."""
    if "user_data" not in obj and "instance_id" not in obj:
        return "", ""
    if "user_data" not in obj or "instance_id" not in obj:
        missing = "user_data" if "user_data" not in obj else "instance_id"
        raise ConfigError(f"{key}.{missing}", "is required when the other of user_data/instance_id is given")
    data = obj["user_data"]
    if not isinstance(data, str) or not data.startswith("#cloud-config\n"):
        raise ConfigError(f"{key}.user_data", "must be cloud-config text starting with '#cloud-config'")
    if len(data.encode()) > MAX_USER_DATA:
        raise ConfigError(f"{key}.user_data", f"is larger than EC2's {MAX_USER_DATA} bytes")
    # sshd must present the key the fleet pins: the user data installs it, so it must be this host's key.
    if public.split()[1] not in data:
        raise ConfigError(f"{key}.user_data", "does not install this host's host_key (ssh_keys.ed25519_public)")
    instance_id = _match(obj["instance_id"], f"{key}.instance_id", INSTANCE_ID, "i-0123456789abcdef0")
    return data, instance_id


def _authorized_keys(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(key, "must be a non-empty list of public keys", "[\"ssh-ed25519 AAAA... admin\"]")
    for index, line in enumerate(value):
        if not isinstance(line, str) or not AUTHORIZED_KEY.fullmatch(line.strip()):
            raise ConfigError(f"{key}[{index}]", "is not a one-line OpenSSH public key",
                              "ssh-ed25519 AAAA... admin")
    return tuple(line.strip() for line in value)


def _eip(value: object, bridge: BridgeSpec, hosts: tuple[HostSpec, ...]) -> EipSpec:
    obj = _mapping(value, "eip", {"address", "allocation_id"}, {"address"})
    address = _address(obj["address"], "eip.address", bridge.cidr)
    if address == bridge.gateway or address in {h.address for h in hosts}:
        raise ConfigError("eip.address", f"{address} is already the gateway's or a host's address")
    allocation = obj.get("allocation_id")
    if allocation is not None:
        allocation = _match(allocation, "eip.allocation_id", ALLOCATION_ID, "eipalloc-0123456789abcdef0")
    return EipSpec(address=address, allocation_id=allocation)


def _port(value: object) -> int:
    obj = _mapping(value, "moto", {"port"}, {"port"})
    port = obj["port"]
    if not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65535:
        raise ConfigError("moto.port", f"{port!r} must be an integer between 1024 and 65535", "5000")
    return port


def state_dir(name: str) -> Path:
    _match(name, "--name", FLEET_NAME, "ecomfleet")
    return STATE_ROOT / name


def save(spec: FleetSpec) -> Path:
    """Store the spec (it holds private host keys: mode 600) before anything is created, so `down` can
    always find out what a half-started `up` made."""
    directory = state_dir(spec.name)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / "spec.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(spec.raw, out, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def load_saved(name: str) -> FleetSpec | None:
    """The spec a running (or half-started) fleet was started from, or None when there is no state."""
    path = state_dir(name) / "spec.json"
    if not path.exists():
        return None
    return load(path)
