"""The HAProxy pair's inputs: the apps and servers behind it, its checks, each node; the checks they share."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ecom_infra import defaults as D
from ecom_infra.rules import (
    ABS_PATH,
    ALLOCATION_ID,
    APP_NAME,
    CHECK_INTERVAL,
    HOSTNAME,
    INSTANCE_ID,
    INTERFACE,
    NAME,
    PORT,
    REGION,
    SERVER_NAME,
    VRRP_ROUTER_ID,
    check,
    check_ipv4,
)

# Names of the secrets the component feeds on stdin (never rendered into a script).
TLS_PEM_SECRET = "haproxy_tls_pem"
VRRP_PASSWORD_SECRET = "vrrp_password"

# Priorities: the preferred first master wins the initial election; nopreempt keeps whoever is
# master afterwards (see templates/haproxy/keepalived.conf.j2). Both are high on purpose: a backup
# told by a priority-0 advert that the master gave up waits its skew time, (256 - priority) / 256
# advert intervals, before taking over: 0.61 s at priority 100, 0.06 s at 240.
MASTER_PRIORITY = 250
BACKUP_PRIORITY = 240

# `timeout check` in haproxy.cfg: a check unanswered this long fails.
CHECK_TIMEOUT_S = 5

# Shapes only HAProxy's inputs take; the rest are ecom_infra.rules'.
# No spaces or '#': haproxy would split or cut the `http-check send ... uri` line there.
_HEALTH_PATH = re.compile(r"^/[A-Za-z0-9._~/%?=&+-]*$")
# Rendered into the takeover script as a Python literal: scheme, host and port only.
_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?/?$")


def _check_count(value: int, key: str, low: int, high: int) -> None:
    check(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
          key, f"{value!r} must be a whole number from {low} to {high}")


def _check_path(value: str, key: str) -> None:
    # Paths end up in shell scripts (quoted) and in config files (unquoted): keep them plain.
    check(isinstance(value, str) and bool(ABS_PATH.fullmatch(value)), key,
          f"{value!r} must be an absolute path of letters, digits, '.', '_', '-', '/'")


# --------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class BackendServer:
    """One app server as HAProxy sees it (nginx on the app server answers on `port`)."""
    name: str
    address: str
    port: int = D.HTTP_PORT
    agent_port: int | None = None
    """The port of its HAProxy agent (agent-check), None for none."""

    def validate(self, key: str) -> None:
        check(isinstance(self.name, str) and bool(SERVER_NAME.fullmatch(self.name)), f"{key}.name",
              f"{self.name!r} must be letters, digits, '.', '_', '-' (at most 63)", "app-1")
        check_ipv4(self.address, f"{key}.address")
        _check_count(self.port, f"{key}.port", *PORT)
        if self.agent_port is not None:
            _check_count(self.agent_port, f"{key}.agent_port", *PORT)


@dataclass(frozen=True)
class Backend:
    """One app: the Host names routed to it, its health path and every server that runs it."""
    app: str
    hostnames: tuple[str, ...]
    health_path: str
    servers: tuple[BackendServer, ...]

    def __post_init__(self) -> None:
        # Accept lists from callers but keep the value hashable and immutable.
        object.__setattr__(self, "hostnames", tuple(self.hostnames))
        object.__setattr__(self, "servers", tuple(self.servers))

    def validate(self) -> None:
        key = f"backends[{self.app}]"
        check(isinstance(self.app, str) and bool(APP_NAME.fullmatch(self.app)), "backends[].app",
              f"{self.app!r} must be lowercase letters, digits and '-'", "ecom-platform")
        check(len(self.hostnames) > 0, f"{key}.hostnames", "needs at least one hostname",
              "shop.example.com")
        for i, host in enumerate(self.hostnames):
            check(isinstance(host, str) and bool(HOSTNAME.fullmatch(host)), f"{key}.hostnames[{i}]",
                  f"{host!r} is not a lowercase DNS name", "shop.example.com")
        check(len(set(self.hostnames)) == len(self.hostnames), f"{key}.hostnames",
              "lists a hostname twice")
        check(isinstance(self.health_path, str) and bool(_HEALTH_PATH.fullmatch(self.health_path)),
              f"{key}.health_path", f"{self.health_path!r} must start with '/' and hold no "
              "spaces or '#'", "/up")
        check(len(self.servers) > 0, f"{key}.servers", "needs at least one app server")
        for server in self.servers:
            server.validate(f"{key}.servers[{server.name}]")
        names = [s.name for s in self.servers]
        check(len(set(names)) == len(names), f"{key}.servers", "lists a server name twice")

    @property
    def check_host(self) -> str:
        """Host header of the health check: the app's first (canonical) hostname."""
        return self.hostnames[0]


@dataclass(frozen=True)
class HealthCheck:
    """HAProxy's active checks of app servers (HAProxy's own defaults: 2 s, fall 3, rise 2)."""
    interval_s: int = 2
    fall: int = 3
    rise: int = 2

    def validate(self) -> None:
        _check_count(self.interval_s, "health_check.interval_s", 1, 300)
        _check_count(self.fall, "health_check.fall", 1, 100)
        _check_count(self.rise, "health_check.rise", 1, 100)


@dataclass(frozen=True)
class HaproxyNodeSpec:
    """One HAProxy node of the pair, with what keepalived needs to move the Elastic IP."""
    name: str
    private_ip: str
    peer_private_ip: str
    instance_id: str
    is_master: bool
    """The preferred first master (higher priority). With nopreempt it does not take the
    address back after a failover; whoever is master keeps it."""
    vrrp_router_id: int
    eip_allocation_id: str
    region: str
    aws_endpoint_url: str | None = None
    """None on AWS; the moto server's URL on the local fleet."""
    tls_cert: bool = False
    """True: HAProxy also serves :443; the pem (certificate + key) comes on stdin."""
    vrrp_auth: bool = False
    """True: VRRP PASS authentication; the password (1-8 chars) comes on stdin."""
    vrrp_interface: str | None = None
    """None: the interface that holds `private_ip`, found on the node at install time."""
    check_interval_s: int = D.CHECK_INTERVAL
    check_fall: int = 2
    check_rise: int = 2
    advert_int_s: int = 1
    notify_attempts: int = 8
    notify_retry_delay_s: float = 0.5

    def validate(self) -> None:
        key = f"haproxy_nodes[{self.name}]"
        check(isinstance(self.name, str) and bool(NAME.fullmatch(self.name)), "haproxy_nodes[].name",
              f"{self.name!r} must be lowercase letters, digits and '-'", "haproxy-a")
        check_ipv4(self.private_ip, f"{key}.private_ip")
        check_ipv4(self.peer_private_ip, f"{key}.peer_private_ip")
        check(self.private_ip != self.peer_private_ip, f"{key}.peer_private_ip",
              "must differ from private_ip (it is the other node)")
        check(isinstance(self.instance_id, str) and bool(INSTANCE_ID.fullmatch(self.instance_id)),
              f"{key}.instance_id", f"{self.instance_id!r} is not an EC2 instance id",
              "i-0123456789abcdef0")
        _check_count(self.vrrp_router_id, f"{key}.vrrp_router_id", *VRRP_ROUTER_ID)
        check(isinstance(self.eip_allocation_id, str)
              and bool(ALLOCATION_ID.fullmatch(self.eip_allocation_id)),
              f"{key}.eip_allocation_id", f"{self.eip_allocation_id!r} is not an allocation id",
              "eipalloc-0123456789abcdef0")
        check(isinstance(self.region, str) and bool(REGION.fullmatch(self.region)), f"{key}.region",
              f"{self.region!r} is not an AWS region", "us-east-1")
        if self.aws_endpoint_url is not None:
            check(bool(_ENDPOINT.fullmatch(self.aws_endpoint_url)), f"{key}.aws_endpoint_url",
                  f"{self.aws_endpoint_url!r} must be http(s)://host[:port]",
                  "http://10.213.77.1:5000")
        if self.vrrp_interface is not None:
            check(bool(INTERFACE.fullmatch(self.vrrp_interface)), f"{key}.vrrp_interface",
                  f"{self.vrrp_interface!r} is not an interface name", "ens5")
        _check_count(self.check_interval_s, f"{key}.check_interval_s", *CHECK_INTERVAL)
        _check_count(self.check_fall, f"{key}.check_fall", 1, 20)
        _check_count(self.check_rise, f"{key}.check_rise", 1, 20)
        _check_count(self.advert_int_s, f"{key}.advert_int_s", 1, 60)
        _check_count(self.notify_attempts, f"{key}.notify_attempts", 1, 20)
        check(isinstance(self.notify_retry_delay_s, (int, float))
              and 0 <= self.notify_retry_delay_s <= 30,
              f"{key}.notify_retry_delay_s", "must be from 0 to 30 seconds")

    @property
    def priority(self) -> int:
        return MASTER_PRIORITY if self.is_master else BACKUP_PRIORITY


def _heredoc_safe(text: str, delimiter: str) -> str:
    """A file shipped in a quoted heredoc: it must end with a newline and never hold the
    delimiter on a line of its own (that would end the heredoc early)."""
    if not text.endswith("\n"):
        text += "\n"
    if delimiter in text.splitlines():
        raise ValueError(f"rendered text contains the heredoc delimiter {delimiter}")
    return text
