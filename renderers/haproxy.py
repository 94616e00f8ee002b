"""The HAProxy pair: haproxy.cfg, keepalived with an Elastic IP, and rolling-restart helpers.

Plain values in, text and `Step`s out (no Pulumi here). `HaproxyPair` turns each Step into a
remote command on a node; the steps need a root connection (every script checks `id -u`).

What runs on a node, in order (`haproxy_node_steps`):
  haproxy-packages         haproxy, keepalived, python3-boto3 and the haproxy user, when missing
  haproxy-tls-cert         (only with TLS) the pem from stdin, mode 600, reload if it changed
  haproxy-config           haproxy.cfg: validate beside the live file, swap, reload on change
  keepalived-notify-master the script that moves the Elastic IP to this node
  keepalived-config        keepalived.conf: validate (`keepalived -t`), swap, reload on change
  keepalived-eip-held      (intended master only) wait until an instance holds the Elastic IP
Rolling restarts drain through HAProxy's agent-check: `agent_step` installs the agent on each app server and
`drained` wraps its publish. (Not steps on the nodes: after a failed publish the engine would never run a
`ready` step there.)

Paths and service commands live in `HaproxyLayout` / `KeepalivedLayout` so tests can point the
same scripts at temp files and at processes they started, without fake binaries.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field

from ecom_infra.errors import ConfigError

from . import content_hash, render
from .steps import Step

# Names of the secrets the component feeds on stdin (never rendered into a script).
TLS_PEM_SECRET = "haproxy_tls_pem"
VRRP_PASSWORD_SECRET = "vrrp_password"

# keepalived.conf is rendered with these placeholders; the install script fills them on the node
# (the interface owning the private IP is only known there, the password arrives on stdin).
INTERFACE_PLACEHOLDER = "@@VRRP_INTERFACE@@"
PASSWORD_PLACEHOLDER = "@@VRRP_PASSWORD@@"

# Priorities: the preferred first master wins the initial election; nopreempt keeps whoever is
# master afterwards (see templates/haproxy/keepalived.conf.j2). Both are high on purpose: a backup
# told by a priority-0 advert that the master gave up waits its skew time, (256 - priority) / 256
# advert intervals, before taking over: 0.61 s at priority 100, 0.06 s at 240.
MASTER_PRIORITY = 250
BACKUP_PRIORITY = 240

# `timeout check` in haproxy.cfg: a check unanswered this long fails.
CHECK_TIMEOUT_S = 5

# HAProxy's agent-check asks this port on each app server whether to drain it (AgentLayout).
AGENT_PORT = 8099
AGENT_STEP = "haproxy-agent"

_APP = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
# No spaces or '#': haproxy would split or cut the `http-check send ... uri` line there.
_HEALTH_PATH = re.compile(r"^/[A-Za-z0-9._~/%?=&+-]*$")
_SERVER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_ALLOCATION_ID = re.compile(r"^eipalloc-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?/?$")
_INTERFACE = re.compile(r"^[A-Za-z0-9._-]{1,15}$")
# Paths end up in shell scripts (quoted) and in config files (unquoted): keep them plain.
_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")
_BIND = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3})?:\d{1,5}$")


def _check(ok: bool, key: str, problem: str, example: str | None = None) -> None:
    if not ok:
        raise ConfigError(key, problem, example)


def _check_ipv4(value: str, key: str) -> None:
    try:
        ipaddress.IPv4Address(value)
    except (ipaddress.AddressValueError, ValueError):
        raise ConfigError(key, f"{value!r} is not an IPv4 address", "10.0.1.10") from None


def _check_count(value: int, key: str, low: int, high: int) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
           key, f"{value!r} must be a whole number from {low} to {high}")


def _check_path(value: str, key: str) -> None:
    _check(isinstance(value, str) and bool(_PATH.fullmatch(value)), key,
           f"{value!r} must be an absolute path of letters, digits, '.', '_', '-', '/'")


# --------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class BackendServer:
    """One app server as HAProxy sees it (nginx on the app server answers on `port`)."""
    name: str
    address: str
    port: int = 80
    agent_port: int | None = None
    """The port of its HAProxy agent (agent-check), None for none."""

    def validate(self, key: str) -> None:
        _check(isinstance(self.name, str) and bool(_SERVER.fullmatch(self.name)), f"{key}.name",
               f"{self.name!r} must be letters, digits, '.', '_', '-' (at most 63)", "app-1")
        _check_ipv4(self.address, f"{key}.address")
        _check_count(self.port, f"{key}.port", 1, 65535)
        if self.agent_port is not None:
            _check_count(self.agent_port, f"{key}.agent_port", 1, 65535)


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
        _check(isinstance(self.app, str) and bool(_APP.fullmatch(self.app)), "backends[].app",
               f"{self.app!r} must be lowercase letters, digits and '-'", "ecom-platform")
        _check(len(self.hostnames) > 0, f"{key}.hostnames", "needs at least one hostname",
               "shop.example.com")
        for i, host in enumerate(self.hostnames):
            _check(isinstance(host, str) and bool(_HOSTNAME.fullmatch(host)), f"{key}.hostnames[{i}]",
                   f"{host!r} is not a lowercase DNS name", "shop.example.com")
        _check(len(set(self.hostnames)) == len(self.hostnames), f"{key}.hostnames",
               "lists a hostname twice")
        _check(isinstance(self.health_path, str) and bool(_HEALTH_PATH.fullmatch(self.health_path)),
               f"{key}.health_path", f"{self.health_path!r} must start with '/' and hold no "
               "spaces or '#'", "/up")
        _check(len(self.servers) > 0, f"{key}.servers", "needs at least one app server")
        for server in self.servers:
            server.validate(f"{key}.servers[{server.name}]")
        names = [s.name for s in self.servers]
        _check(len(set(names)) == len(names), f"{key}.servers", "lists a server name twice")

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
class ServiceControl:
    """How a script asks about, reloads and starts a service: argv tuples, each word quoted."""
    is_active: tuple[str, ...]
    reload: tuple[str, ...]
    start: tuple[str, ...]
    enable: tuple[str, ...] = ()
    """Makes the service start at boot; run on every install, running or not (empty: no boot to speak of)."""

    @classmethod
    def systemd(cls, unit: str) -> "ServiceControl":
        return cls(is_active=("systemctl", "is-active", "--quiet", unit),
                   reload=("systemctl", "reload", unit),
                   start=("systemctl", "enable", "--now", unit),
                   enable=("systemctl", "enable", "--quiet", unit))


@dataclass(frozen=True)
class HaproxyLayout:
    """Where HAProxy's files live on a node and how it is driven (Debian defaults)."""
    config_path: str = "/etc/haproxy/haproxy.cfg"
    admin_socket: str = "/run/haproxy/admin.sock"
    cert_path: str = "/etc/haproxy/certs/site.pem"
    haproxy_bin: str = "/usr/sbin/haproxy"
    python: str = "/usr/bin/python3"
    service: ServiceControl = field(default_factory=lambda: ServiceControl.systemd("haproxy"))
    # Debian's unit bind-mounts /dev/log into this chroot, so `log /dev/log` keeps working.
    chroot: str | None = "/var/lib/haproxy"
    user: str | None = "haproxy"
    group: str | None = "haproxy"
    log_target: str = "/dev/log local0"
    http_bind: str = ":80"
    https_bind: str = ":443"

    def validate(self) -> None:
        for name in ("config_path", "admin_socket", "cert_path", "haproxy_bin", "python"):
            _check_path(getattr(self, name), f"haproxy_layout.{name}")
        if self.chroot is not None:
            _check_path(self.chroot, "haproxy_layout.chroot")
        for name in ("http_bind", "https_bind"):
            value = getattr(self, name)
            _check(bool(_BIND.fullmatch(value)), f"haproxy_layout.{name}",
                   f"{value!r} must be [IPv4]:port", ":80")


@dataclass(frozen=True)
class KeepalivedLayout:
    """Where keepalived's files live on a node and how it is driven (Debian defaults)."""
    config_path: str = "/etc/keepalived/keepalived.conf"
    notify_path: str = "/etc/keepalived/notify-master-eip.py"
    keepalived_bin: str = "/usr/sbin/keepalived"
    pgrep: str = "/usr/bin/pgrep"
    python: str = "/usr/bin/python3"
    service: ServiceControl = field(default_factory=lambda: ServiceControl.systemd("keepalived"))
    haproxy_stopped_file: str = "/run/ecom-haproxy-stopped"
    """keepalived's track_file: 1 while haproxy's unit is stopped, 0 once it has started."""
    haproxy_dropin: str | None = "/etc/systemd/system/haproxy.service.d/ecom-keepalived.conf"
    """The haproxy unit drop-in that writes `haproxy_stopped_file`; None where systemd does not run haproxy."""
    daemon_reload: tuple[str, ...] = ("systemctl", "daemon-reload")

    def validate(self) -> None:
        for name in ("config_path", "notify_path", "keepalived_bin", "pgrep", "python", "haproxy_stopped_file"):
            _check_path(getattr(self, name), f"keepalived_layout.{name}")
        if self.haproxy_dropin is not None:
            _check_path(self.haproxy_dropin, "keepalived_layout.haproxy_dropin")


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
    check_interval_s: int = 1
    check_fall: int = 2
    check_rise: int = 2
    advert_int_s: int = 1
    notify_attempts: int = 8
    notify_retry_delay_s: float = 0.5

    def validate(self) -> None:
        key = f"haproxy_nodes[{self.name}]"
        _check(isinstance(self.name, str) and bool(_APP.fullmatch(self.name)), "haproxy_nodes[].name",
               f"{self.name!r} must be lowercase letters, digits and '-'", "haproxy-a")
        _check_ipv4(self.private_ip, f"{key}.private_ip")
        _check_ipv4(self.peer_private_ip, f"{key}.peer_private_ip")
        _check(self.private_ip != self.peer_private_ip, f"{key}.peer_private_ip",
               "must differ from private_ip (it is the other node)")
        _check(isinstance(self.instance_id, str) and bool(_INSTANCE_ID.fullmatch(self.instance_id)),
               f"{key}.instance_id", f"{self.instance_id!r} is not an EC2 instance id",
               "i-0123456789abcdef0")
        _check_count(self.vrrp_router_id, f"{key}.vrrp_router_id", 1, 255)
        _check(isinstance(self.eip_allocation_id, str)
               and bool(_ALLOCATION_ID.fullmatch(self.eip_allocation_id)),
               f"{key}.eip_allocation_id", f"{self.eip_allocation_id!r} is not an allocation id",
               "eipalloc-0123456789abcdef0")
        _check(isinstance(self.region, str) and bool(_REGION.fullmatch(self.region)), f"{key}.region",
               f"{self.region!r} is not an AWS region", "us-east-1")
        if self.aws_endpoint_url is not None:
            _check(bool(_ENDPOINT.fullmatch(self.aws_endpoint_url)), f"{key}.aws_endpoint_url",
                   f"{self.aws_endpoint_url!r} must be http(s)://host[:port]",
                   "http://10.213.77.1:5000")
        if self.vrrp_interface is not None:
            _check(bool(_INTERFACE.fullmatch(self.vrrp_interface)), f"{key}.vrrp_interface",
                   f"{self.vrrp_interface!r} is not an interface name", "ens5")
        _check_count(self.check_interval_s, f"{key}.check_interval_s", 1, 60)
        _check_count(self.check_fall, f"{key}.check_fall", 1, 20)
        _check_count(self.check_rise, f"{key}.check_rise", 1, 20)
        _check_count(self.advert_int_s, f"{key}.advert_int_s", 1, 60)
        _check_count(self.notify_attempts, f"{key}.notify_attempts", 1, 20)
        _check(isinstance(self.notify_retry_delay_s, (int, float))
               and 0 <= self.notify_retry_delay_s <= 30,
               f"{key}.notify_retry_delay_s", "must be from 0 to 30 seconds")

    @property
    def priority(self) -> int:
        return MASTER_PRIORITY if self.is_master else BACKUP_PRIORITY


# --------------------------------------------------------------------------- haproxy.cfg

def _validate_backends(backends: tuple[Backend, ...] | list[Backend]) -> tuple[Backend, ...]:
    backends = tuple(backends)
    _check(len(backends) > 0, "backends", "needs at least one app")
    seen_apps: set[str] = set()
    seen_hosts: dict[str, str] = {}
    for backend in backends:
        backend.validate()
        _check(backend.app not in seen_apps, "backends", f"app {backend.app!r} is listed twice")
        seen_apps.add(backend.app)
        for host in backend.hostnames:
            # One Host header must route to exactly one app.
            _check(host not in seen_hosts, f"backends[{backend.app}].hostnames",
                   f"{host!r} is already routed to {seen_hosts.get(host)!r}")
            seen_hosts[host] = backend.app
    return backends


def render_haproxy_cfg(backends: tuple[Backend, ...] | list[Backend], *, tls: bool = False,
                       default_app: str | None = None, health: HealthCheck = HealthCheck(),
                       layout: HaproxyLayout = HaproxyLayout(), agent: AgentLayout | None = None) -> str:
    """haproxy.cfg for both nodes: Host routing to one backend per app, checks, admin socket.

    Requests whose Host matches no app go to `default_app` (the first app when None, the
    legacy default). With `tls`, :443 serves `layout.cert_path` and :80 redirects to https.
    """
    backends = _validate_backends(backends)
    health.validate()
    layout.validate()
    default_app = backends[0].app if default_app is None else default_app
    _check(default_app in {b.app for b in backends}, "default_app",
           f"{default_app!r} is not one of the apps", backends[0].app)
    agent = agent or AgentLayout()
    agent.validate()
    return render("haproxy/haproxy.cfg.j2", backends=backends, tls=tls, default_app=default_app,
                  health=health, layout=layout, agent=agent, check_timeout_s=CHECK_TIMEOUT_S)


# --------------------------------------------------------------------------- keepalived

def render_keepalived_conf(node: HaproxyNodeSpec,
                           layout: KeepalivedLayout = KeepalivedLayout()) -> str:
    """keepalived.conf for one node, with the interface / password placeholders unfilled."""
    node.validate()
    layout.validate()
    return render("haproxy/keepalived.conf.j2", node=node, layout=layout,
                  interface=node.vrrp_interface or INTERFACE_PLACEHOLDER,
                  password_placeholder=PASSWORD_PLACEHOLDER)


def fill_keepalived_conf(text: str, interface: str, password: str | None = None) -> str:
    """What the install script writes: `text` with the placeholders filled (used by tests)."""
    text = text.replace(INTERFACE_PLACEHOLDER, interface)
    if password is not None:
        text = text.replace(PASSWORD_PLACEHOLDER, password)
    return text


def render_notify_master(node: HaproxyNodeSpec) -> str:
    """Python run by keepalived on becoming master: associate the EIP with this instance."""
    node.validate()
    # Values are rendered as Python literals (repr), never spliced in as code.
    literals = {
        "instance_id": repr(node.instance_id),
        "allocation_id": repr(node.eip_allocation_id),
        "region": repr(node.region),
        "endpoint_url": repr(node.aws_endpoint_url),
        "attempts": repr(node.notify_attempts),
        "retry_delay_s": repr(float(node.notify_retry_delay_s)),
    }
    return render("haproxy/notify_master.py.j2", node=node, py=literals)


# --------------------------------------------------------------------------- install scripts

_HEREDOC_CFG = "ECOM_HAPROXY_CFG"
_HEREDOC_KEEPALIVED = "ECOM_KEEPALIVED_CONF"
_HEREDOC_NOTIFY = "ECOM_NOTIFY_MASTER_PY"
_HEREDOC_AGENT = "ECOM_HAPROXY_AGENT"
_HEREDOC_DRAINED = "ECOM_DRAINED_STEP"


def _heredoc_safe(text: str, delimiter: str) -> str:
    """A file shipped in a quoted heredoc: it must end with a newline and never hold the
    delimiter on a line of its own (that would end the heredoc early)."""
    if not text.endswith("\n"):
        text += "\n"
    if delimiter in text.splitlines():
        raise ValueError(f"rendered text contains the heredoc delimiter {delimiter}")
    return text


def render_packages_script() -> str:
    return render("haproxy/packages.sh.j2")


def render_tls_cert_script(layout: HaproxyLayout = HaproxyLayout()) -> str:
    layout.validate()
    return render("haproxy/tls_cert.sh.j2", layout=layout, secret=TLS_PEM_SECRET)


def render_haproxy_install(cfg: str, layout: HaproxyLayout = HaproxyLayout()) -> str:
    """Script that installs `cfg` (validate beside the live file, swap, reload on change)."""
    layout.validate()
    return render("haproxy/haproxy_install.sh.j2", cfg=_heredoc_safe(cfg, _HEREDOC_CFG),
                  delimiter=_HEREDOC_CFG, layout=layout)


def render_notify_install(node: HaproxyNodeSpec,
                          layout: KeepalivedLayout = KeepalivedLayout()) -> str:
    layout.validate()
    script = _heredoc_safe(render_notify_master(node), _HEREDOC_NOTIFY)
    return render("haproxy/notify_install.sh.j2", script=script, delimiter=_HEREDOC_NOTIFY,
                  layout=layout)


def render_keepalived_install(node: HaproxyNodeSpec,
                              layout: KeepalivedLayout = KeepalivedLayout()) -> str:
    """Script that installs keepalived.conf: fill placeholders, `keepalived -t`, swap, reload."""
    conf = _heredoc_safe(render_keepalived_conf(node, layout), _HEREDOC_KEEPALIVED)
    return render("haproxy/keepalived_install.sh.j2", conf=conf, delimiter=_HEREDOC_KEEPALIVED,
                  node=node, layout=layout, secret=VRRP_PASSWORD_SECRET,
                  interface_placeholder=INTERFACE_PLACEHOLDER,
                  password_placeholder=PASSWORD_PLACEHOLDER)


def render_eip_held_script(layout: KeepalivedLayout = KeepalivedLayout(), timeout_s: int = 60) -> str:
    """Script that waits (bounded) until keepalived's notify_master has associated the EIP."""
    layout.validate()
    _check_count(timeout_s, "timeout_s", 1, 3600)
    return render("haproxy/eip_held.sh.j2", layout=layout, timeout_s=timeout_s)


# --------------------------------------------------------------------------- steps

def haproxy_node_steps(node: HaproxyNodeSpec, backends: tuple[Backend, ...] | list[Backend], *,
                       default_app: str | None = None, health: HealthCheck = HealthCheck(),
                       layout: HaproxyLayout = HaproxyLayout(),
                       keepalived: KeepalivedLayout = KeepalivedLayout()) -> list[Step]:
    """Every step that makes one node of the pair, in the order they must run.

    Triggers hold the hash of what the step installs, so a step re-runs exactly when its
    file changes; the component adds the instance id.
    """
    node.validate()
    cfg = render_haproxy_cfg(backends, tls=node.tls_cert, default_app=default_app,
                             health=health, layout=layout)
    packages = render_packages_script()
    steps = [Step(name="haproxy-packages", create=packages, triggers=(content_hash(packages),))]
    if node.tls_cert:
        steps.append(Step(name="haproxy-tls-cert", create=render_tls_cert_script(layout),
                          stdin=TLS_PEM_SECRET, secret_output=True))
    steps.append(Step(name="haproxy-config", create=render_haproxy_install(cfg, layout),
                      triggers=(content_hash(cfg),)))
    notify = render_notify_master(node)
    steps.append(Step(name="keepalived-notify-master",
                      create=render_notify_install(node, keepalived),
                      triggers=(content_hash(notify),)))
    conf = render_keepalived_conf(node, keepalived)
    steps.append(Step(name="keepalived-config", create=render_keepalived_install(node, keepalived),
                      triggers=(content_hash(conf),),
                      stdin=VRRP_PASSWORD_SECRET if node.vrrp_auth else None,
                      secret_output=node.vrrp_auth))
    if node.is_master:
        # Runs again whenever keepalived's config or the takeover script changes.
        steps.append(Step(name="keepalived-eip-held", create=render_eip_held_script(keepalived),
                          triggers=(content_hash(conf), content_hash(notify))))
    return steps


# --------------------------------------------------------------------------- HAProxy agent

@dataclass(frozen=True)
class AgentLayout:
    """The agent HAProxy's agent-check asks on each app server (drain while a publish runs)."""
    port: int = AGENT_PORT
    inter_ms: int = 1000
    state_dir: str = "/run/ecom-haproxy-agent"
    script_path: str = "/usr/local/lib/ecom-haproxy-agent/agent.py"
    unit_path: str = "/etc/systemd/system/ecom-haproxy-agent.service"
    python: str = "/usr/bin/python3"

    def validate(self) -> None:
        _check_count(self.port, "agent.port", 1, 65535)
        _check_count(self.inter_ms, "agent.inter_ms", 100, 60000)
        for name in ("state_dir", "script_path", "unit_path", "python"):
            _check_path(getattr(self, name), f"agent.{name}")


def render_agent(agent: AgentLayout = AgentLayout()) -> str:
    """The agent itself (Python, run by systemd)."""
    agent.validate()
    return render("haproxy/haproxy_agent.py.j2", agent=agent,
                  py={"state_dir": repr(agent.state_dir), "port": repr(agent.port)})


def agent_step(agent: AgentLayout = AgentLayout()) -> Step:
    """Install and start the agent on an app server; re-run when what it installs changes."""
    agent.validate()
    script = _heredoc_safe(render_agent(agent), _HEREDOC_AGENT)
    unit = _heredoc_safe(render("haproxy/haproxy_agent.service.j2", agent=agent), _HEREDOC_AGENT)
    return Step(name=AGENT_STEP, create=render("haproxy/agent_install.sh.j2", agent=agent, agent_script=script,
                                               unit_text=unit, delimiter=_HEREDOC_AGENT),
                triggers=(content_hash(script + unit),))


def drained(step: Step, health: HealthCheck = HealthCheck(), agent: AgentLayout = AgentLayout(),
            socket_flag: str | None = None, drain_always: bool = True) -> Step:
    """`step` (a release-publish) run while this app server's agent answers "drain".

    The lock that makes the agent say "drain" is held by the wrapping shell only, so the server
    is ready again however the step ends (see templates/haproxy/drained.sh.j2).
    `socket_flag`: where systemd holds puma's socket, the file that says the step re-creates it; while
    it is absent, the wait for HAProxy's checks after a quick restart is skipped and, with
    `drain_always` False, so is the drain (requests wait in the socket for the new puma)."""
    health.validate()
    agent.validate()
    if socket_flag is not None:
        _check_path(socket_flag, "socket_flag")
    _check(bool(_APP.fullmatch(step.name)), "step.name", f"{step.name!r} must be kebab-case")
    script = _heredoc_safe(step.create, _HEREDOC_DRAINED)
    heard_wait_ms = 2 * agent.inter_ms + 200
    return dataclasses.replace(step, create=render(
        "haproxy/drained.sh.j2", step=step.name, script=script, delimiter=_HEREDOC_DRAINED, agent=agent,
        health=health, heard_wait_s=f"{heard_wait_ms // 1000}.{heard_wait_ms % 1000:03d}",
        settle_s=(health.rise + 1) * health.interval_s, socket_flag=socket_flag, drain_always=drain_always,
        check_timeout_s=CHECK_TIMEOUT_S))
