"""Every rendered file checked by its own program: shellcheck, haproxy -c, keepalived -t,
python3 -m py_compile."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from renderers.haproxy.agent import agent_step, drained, render_agent
from renderers.haproxy.haproxy_cfg import render_haproxy_cfg
from renderers.haproxy.keepalived import fill_keepalived_conf, render_keepalived_conf, render_notify_master
from renderers.haproxy.layout import HaproxyLayout, KeepalivedLayout
from renderers.haproxy.node import haproxy_node_steps
from renderers.haproxy.spec import Backend, BackendServer, HaproxyNodeSpec
from renderers.steps import Step
from tests.haproxy.helpers import SYSTEM_PYTHON, need, run_in_netns, self_signed_pem

pytestmark = pytest.mark.tools

BACKENDS = [
    Backend("ecom-platform", ("shop.example.com", "www.example.com"), "/up",
            (BackendServer("app-1", "10.0.1.10", agent_port=8099), BackendServer("app-2", "10.0.1.11", agent_port=8099))),
    Backend("ecom-docs", ("docs.example.com",), "/health",
            (BackendServer("docs-1", "10.0.1.20", 8080),)),
]
NODE = HaproxyNodeSpec(name="haproxy-a", private_ip="10.213.77.11",
                       peer_private_ip="10.213.77.12", instance_id="i-0123456789abcdef0",
                       is_master=True, vrrp_router_id=51,
                       eip_allocation_id="eipalloc-0123456789abcdef0", region="us-east-1")

NODE_VARIANTS = {
    "plain": NODE,
    "tls+auth": dataclasses.replace(NODE, tls_cert=True, vrrp_auth=True),
    "backup+interface+endpoint": dataclasses.replace(
        NODE, is_master=False, vrrp_interface="ens5", aws_endpoint_url="http://10.213.77.1:5000"),
}


def all_scripts() -> dict[str, str]:
    scripts = {}
    for variant, node in NODE_VARIANTS.items():
        for step in haproxy_node_steps(node, BACKENDS):
            scripts[f"{variant}/{step.name}"] = step.create
    scripts["haproxy-agent"] = agent_step().create
    publish = Step("release-publish", "#!/bin/bash\necho publish\n")
    scripts["drained-publish"] = drained(publish).create
    scripts["drained-publish/socket"] = drained(publish, socket_flag="/srv/www/app/.socket-changed").create
    scripts["drained-publish/socket, no drain"] = drained(publish, socket_flag="/srv/www/app/.socket-changed",
                                                          drain_always=False).create
    return scripts


@pytest.mark.parametrize("name", sorted(all_scripts()))
def test_every_script_passes_shellcheck(name):
    need("shellcheck")
    result = subprocess.run(["shellcheck", "--shell=bash", "--severity=style", "-"],
                            input=all_scripts()[name], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_production_haproxy_cfg_passes_haproxy_check(tmp_path, tls):
    need("haproxy", "openssl")
    layout = HaproxyLayout()
    if tls:  # the production path holds no cert on this machine: point at a test cert
        cert = tmp_path / "site.pem"
        cert.write_text(self_signed_pem("shop.example.com"))
        layout = dataclasses.replace(layout, cert_path=str(cert))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_haproxy_cfg(BACKENDS, tls=tls, layout=layout))
    result = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout


def test_haproxy_check_really_rejects_a_broken_cfg(tmp_path):
    """The check above can fail: the same render with one bad server line is refused."""
    need("haproxy")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_haproxy_cfg(BACKENDS) + "    server bad 10.0.1.99:80 chek\n")
    result = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "chek" in result.stdout + result.stderr


@pytest.mark.root  # keepalived -t runs in a network namespace of its own
@pytest.mark.parametrize("variant", sorted(NODE_VARIANTS))
def test_keepalived_conf_passes_keepalived_check(tmp_path, variant):
    """keepalived -t, in a private network namespace whose veth holds the node's address,
    with the placeholders filled as the install script fills them."""
    need("keepalived", "unshare")
    node = NODE_VARIANTS[variant]
    notify = tmp_path / "notify-master-eip.py"
    notify.write_text(render_notify_master(node))
    notify.chmod(0o755)
    layout = KeepalivedLayout(notify_path=str(notify))
    interface = node.vrrp_interface or "eth0"
    conf = tmp_path / "keepalived.conf"
    conf.write_text(fill_keepalived_conf(render_keepalived_conf(node, layout), interface,
                                         "pa55word" if node.vrrp_auth else None))
    result = run_in_netns(["keepalived", "-t", "-f", str(conf)], interface=interface,
                          address=node.private_ip)
    messages = [line for line in result.stderr.splitlines() if line.strip()]
    # 5 = warnings; the only one expected is the missing VIP (the EIP is not a local address).
    assert result.returncode in (0, 5), result.stderr
    assert all("No VIP specified" in line for line in messages), messages


@pytest.mark.root  # keepalived -t runs in a network namespace of its own
def test_keepalived_check_really_reports_mistakes(tmp_path):
    """keepalived -t on a real mistake (unknown interface) says more than "No VIP"."""
    need("keepalived", "unshare")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(fill_keepalived_conf(render_keepalived_conf(NODE), "nosuch0"))
    result = run_in_netns(["keepalived", "-t", "-f", str(conf)], interface="eth0",
                          address=NODE.private_ip)
    assert any("nosuch0" in line for line in result.stderr.splitlines()), result.stderr


@pytest.mark.parametrize("python", [SYSTEM_PYTHON, sys.executable], ids=["debian", "venv"])
@pytest.mark.parametrize("which", ["notify_master", "agent"])
def test_python_files_compile(tmp_path, python, which):
    """Debian's python3 is what the nodes run; the venv's is what the tests use."""
    need(python)
    text = {"notify_master": lambda: render_notify_master(NODE), "agent": render_agent}[which]()
    source = tmp_path / f"{which}.py"
    source.write_text(text)
    result = subprocess.run([python, "-m", "py_compile", str(source)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
