"""keepalived.conf for each node, the takeover script that moves the Elastic IP, their install scripts and the
wait until an instance holds the address."""
from __future__ import annotations

from .. import render
from .layout import KeepalivedLayout
from .spec import VRRP_PASSWORD_SECRET, HaproxyNodeSpec, _check_count, _heredoc_safe

# keepalived.conf is rendered with these placeholders; the install script fills them on the node
# (the interface owning the private IP is only known there, the password arrives on stdin).
INTERFACE_PLACEHOLDER = "@@VRRP_INTERFACE@@"
PASSWORD_PLACEHOLDER = "@@VRRP_PASSWORD@@"

_HEREDOC_KEEPALIVED = "ECOM_KEEPALIVED_CONF"
_HEREDOC_NOTIFY = "ECOM_NOTIFY_MASTER_PY"


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
