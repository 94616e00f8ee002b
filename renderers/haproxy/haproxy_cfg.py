"""haproxy.cfg (the same on both nodes) and the scripts that install HAProxy, its certificate and its config."""
from __future__ import annotations

from ecom_infra.rules import check

from .. import render
from .layout import AgentLayout, HaproxyLayout
from .spec import CHECK_TIMEOUT_S, TLS_PEM_SECRET, Backend, HealthCheck, _heredoc_safe

_HEREDOC_CFG = "ECOM_HAPROXY_CFG"


def _validate_backends(backends: tuple[Backend, ...] | list[Backend]) -> tuple[Backend, ...]:
    backends = tuple(backends)
    check(len(backends) > 0, "backends", "needs at least one app")
    seen_apps: set[str] = set()
    seen_hosts: dict[str, str] = {}
    for backend in backends:
        backend.validate()
        check(backend.app not in seen_apps, "backends", f"app {backend.app!r} is listed twice")
        seen_apps.add(backend.app)
        for host in backend.hostnames:
            # One Host header must route to exactly one app.
            check(host not in seen_hosts, f"backends[{backend.app}].hostnames",
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
    check(default_app in {b.app for b in backends}, "default_app",
          f"{default_app!r} is not one of the apps", backends[0].app)
    agent = agent or AgentLayout()
    agent.validate()
    return render("haproxy/haproxy.cfg.j2", backends=backends, tls=tls, default_app=default_app,
                  health=health, layout=layout, agent=agent, check_timeout_s=CHECK_TIMEOUT_S)


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
