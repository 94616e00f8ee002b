"""Every step of one HAProxy node, in the order they must run (see the package docstring)."""
from __future__ import annotations

from .. import content_hash
from ..steps import Step
from .haproxy_cfg import render_haproxy_cfg, render_haproxy_install, render_packages_script, render_tls_cert_script
from .keepalived import (
    render_eip_held_script,
    render_keepalived_conf,
    render_keepalived_install,
    render_notify_install,
    render_notify_master,
)
from .layout import HaproxyLayout, KeepalivedLayout
from .spec import TLS_PEM_SECRET, VRRP_PASSWORD_SECRET, Backend, HaproxyNodeSpec, HealthCheck


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
