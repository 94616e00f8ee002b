"""Where the pair's files live on a host and how its services are driven (Debian defaults; tests point them
at temp files and at processes they started)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ecom_infra.rules import BIND, PORT, check

from .spec import _check_count, _check_path

# HAProxy's agent-check asks this port on each app server whether to drain it (AgentLayout).
AGENT_PORT = 8099


@dataclass(frozen=True)
class ServiceControl:
    """How a script asks about, reloads and starts a service: argv tuples, each word quoted."""
    is_active: tuple[str, ...]
    reload: tuple[str, ...]
    start: tuple[str, ...]
    enable: tuple[str, ...] = ()
    """Makes the service start at boot; run on every install, running or not (empty: no boot to speak of)."""

    @classmethod
    def systemd(cls, unit: str) -> ServiceControl:
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
            check(bool(BIND.fullmatch(value)), f"haproxy_layout.{name}",
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
class AgentLayout:
    """The agent HAProxy's agent-check asks on each app server (drain while a publish runs)."""
    port: int = AGENT_PORT
    inter_ms: int = 1000
    state_dir: str = "/run/ecom-haproxy-agent"
    script_path: str = "/usr/local/lib/ecom-haproxy-agent/agent.py"
    unit_path: str = "/etc/systemd/system/ecom-haproxy-agent.service"
    python: str = "/usr/bin/python3"

    def validate(self) -> None:
        _check_count(self.port, "agent.port", *PORT)
        _check_count(self.inter_ms, "agent.inter_ms", 100, 60000)
        for name in ("state_dir", "script_path", "unit_path", "python"):
            _check_path(getattr(self, name), f"agent.{name}")
