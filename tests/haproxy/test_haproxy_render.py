"""Pure renderer facts: what haproxy.cfg, keepalived.conf and the steps say, and bad input."""
from __future__ import annotations

import dataclasses

import pytest

from ecom_infra.errors import ConfigError
from renderers import content_hash
from renderers.haproxy.haproxy_cfg import render_haproxy_cfg, render_haproxy_install
from renderers.haproxy.keepalived import (
    INTERFACE_PLACEHOLDER,
    PASSWORD_PLACEHOLDER,
    fill_keepalived_conf,
    render_keepalived_conf,
    render_notify_master,
)
from renderers.haproxy.node import haproxy_node_steps
from renderers.haproxy.spec import (
    TLS_PEM_SECRET,
    VRRP_PASSWORD_SECRET,
    Backend,
    BackendServer,
    HaproxyNodeSpec,
    HealthCheck,
)

PLATFORM = Backend("ecom-platform", ("shop.example.com", "www.example.com"), "/up",
                   (BackendServer("app-1", "10.0.1.10"), BackendServer("app-2", "10.0.1.11")))
DOCS = Backend("ecom-docs", ("docs.example.com",), "/health",
               (BackendServer("docs-1", "10.0.1.20", 8080),))
NODE = HaproxyNodeSpec(name="haproxy-a", private_ip="10.0.0.5", peer_private_ip="10.0.0.6",
                       instance_id="i-0123456789abcdef0", is_master=True, vrrp_router_id=51,
                       eip_allocation_id="eipalloc-0123456789abcdef0", region="eu-west-1")


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


# --------------------------------------------------------------------------- haproxy.cfg

def test_cfg_routes_each_app_by_host_without_port_and_has_a_default():
    cfg = lines(render_haproxy_cfg([PLATFORM, DOCS]))
    assert ("acl host_ecom-platform hdr(host),field(1,:) -i shop.example.com www.example.com"
            in cfg)
    assert "acl host_ecom-docs hdr(host),field(1,:) -i docs.example.com" in cfg
    assert "use_backend ecom-platform if host_ecom-platform" in cfg
    assert "use_backend ecom-docs if host_ecom-docs" in cfg
    assert "default_backend ecom-platform" in cfg  # the first app is the legacy default


def test_cfg_default_app_can_be_chosen():
    cfg = lines(render_haproxy_cfg([PLATFORM, DOCS], default_app="ecom-docs"))
    assert "default_backend ecom-docs" in cfg


def test_cfg_backends_list_every_server_with_http_checks():
    cfg = render_haproxy_cfg([PLATFORM, DOCS], health=HealthCheck(interval_s=3, fall=4, rise=5))
    platform = cfg.split("\nbackend ecom-platform\n", 1)[1].split("\nbackend ", 1)[0]
    assert lines(platform)[:4] == [
        "balance roundrobin",
        "option httpchk",
        "http-check send meth GET uri /up ver HTTP/1.1 hdr Host shop.example.com",
        "http-check expect status 200",
    ]
    assert "server app-1 10.0.1.10:80 check" in lines(platform)
    assert "server app-2 10.0.1.11:80 check" in lines(platform)
    docs = cfg.split("\nbackend ecom-docs\n", 1)[1]
    assert "http-check send meth GET uri /health ver HTTP/1.1 hdr Host docs.example.com" in docs
    assert "server docs-1 10.0.1.20:8080 check" in lines(docs)
    assert "default-server inter 3s fall 4 rise 5" in lines(cfg)


def test_cfg_has_admin_socket_timeouts_and_logging():
    cfg = lines(render_haproxy_cfg([PLATFORM]))
    assert ("stats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners"
            in cfg)
    for directive in ("log /dev/log local0", "log global", "option httplog",
                      "timeout connect 5s", "timeout client 30s", "timeout server 60s",
                      "timeout http-request 10s", "chroot /var/lib/haproxy", "user haproxy"):
        assert directive in cfg
    assert "daemon" not in cfg  # systemd's -Ws keeps it in the foreground


def test_cfg_without_tls_binds_only_port_80():
    cfg = lines(render_haproxy_cfg([PLATFORM]))
    assert [line for line in cfg if line.startswith("bind ")] == ["bind :80"]
    assert not any("redirect" in line for line in cfg)


def test_cfg_with_tls_binds_443_with_the_cert_and_redirects_http():
    cfg = lines(render_haproxy_cfg([PLATFORM], tls=True))
    assert "bind :443 ssl crt /etc/haproxy/certs/site.pem alpn h2,http/1.1" in cfg
    assert "http-request redirect scheme https code 301 unless { ssl_fc }" in cfg
    assert "ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets" in cfg


def test_cfg_is_deterministic():
    assert render_haproxy_cfg([PLATFORM, DOCS]) == render_haproxy_cfg([PLATFORM, DOCS])


@pytest.mark.parametrize("backends, key", [
    ([], "backends"),
    ([dataclasses.replace(PLATFORM, app="Ecom")], "backends[].app"),
    ([dataclasses.replace(PLATFORM, hostnames=())], "backends[ecom-platform].hostnames"),
    ([dataclasses.replace(PLATFORM, hostnames=("shop example.com",))],
     "backends[ecom-platform].hostnames[0]"),
    ([dataclasses.replace(PLATFORM, health_path="up")], "backends[ecom-platform].health_path"),
    ([dataclasses.replace(PLATFORM, health_path="/up #x")],
     "backends[ecom-platform].health_path"),
    ([dataclasses.replace(PLATFORM, servers=())], "backends[ecom-platform].servers"),
    ([dataclasses.replace(PLATFORM, servers=(BackendServer("app-1", "10.0.1.300"),))],
     "backends[ecom-platform].servers[app-1].address"),
    ([dataclasses.replace(PLATFORM, servers=(BackendServer("app-1", "10.0.1.3", 0),))],
     "backends[ecom-platform].servers[app-1].port"),
    ([dataclasses.replace(PLATFORM, servers=(BackendServer("app 1", "10.0.1.3"),))],
     "backends[ecom-platform].servers[app 1].name"),
    ([PLATFORM, PLATFORM], "backends"),
    ([PLATFORM, dataclasses.replace(DOCS, hostnames=("shop.example.com",))],
     "backends[ecom-docs].hostnames"),
])
def test_bad_backends_name_the_key(backends, key):
    with pytest.raises(ConfigError) as caught:
        render_haproxy_cfg(backends)
    assert caught.value.key == key
    assert "\n" not in str(caught.value)


def test_unknown_default_app_is_refused():
    with pytest.raises(ConfigError, match=r"^default_app: 'shop' is not one of the apps"):
        render_haproxy_cfg([PLATFORM], default_app="shop")


# --------------------------------------------------------------------------- keepalived

def test_keepalived_conf_is_unicast_with_a_pgrep_check_and_nopreempt():
    conf = lines(render_keepalived_conf(NODE))
    assert "unicast_src_ip 10.0.0.5" in conf
    assert conf[conf.index("unicast_peer {") + 1] == "10.0.0.6"
    assert 'script "/usr/bin/pgrep -x haproxy"' in conf
    assert "weight 0" in conf
    assert "enable_script_security" in conf and "script_user root" in conf
    # nopreempt only works from the BACKUP state: both nodes start there.
    assert "nopreempt" in conf and "state BACKUP" in conf and "state MASTER" not in conf
    assert "virtual_router_id 51" in conf
    assert 'notify_master "/etc/keepalived/notify-master-eip.py"' in conf
    assert "virtual_ipaddress {" not in conf


def test_master_has_the_higher_priority():
    master = lines(render_keepalived_conf(NODE))
    backup = lines(render_keepalived_conf(dataclasses.replace(NODE, is_master=False)))
    assert "priority 250" in master and "priority 240" in backup


def test_keepalived_interface_is_found_on_the_node_unless_given():
    assert f"interface {INTERFACE_PLACEHOLDER}" in lines(render_keepalived_conf(NODE))
    given = render_keepalived_conf(dataclasses.replace(NODE, vrrp_interface="ens5"))
    assert "interface ens5" in lines(given) and INTERFACE_PLACEHOLDER not in given


def test_vrrp_password_is_a_placeholder_filled_on_the_node():
    conf = render_keepalived_conf(dataclasses.replace(NODE, vrrp_auth=True))
    assert f"auth_pass {PASSWORD_PLACEHOLDER}" in lines(conf)
    filled = fill_keepalived_conf(conf, "ens5", "s3cret")
    assert "auth_pass s3cret" in lines(filled) and "interface ens5" in lines(filled)
    assert "authentication {" not in render_keepalived_conf(NODE)


def test_notify_master_has_the_ids_rendered_as_python_literals():
    script = render_notify_master(dataclasses.replace(NODE, aws_endpoint_url="http://10.0.0.9:5000"))
    assert script.startswith("#!/usr/bin/python3\n")
    assert "INSTANCE_ID = 'i-0123456789abcdef0'" in script
    assert "ALLOCATION_ID = 'eipalloc-0123456789abcdef0'" in script
    assert "REGION = 'eu-west-1'" in script
    assert "ENDPOINT_URL = 'http://10.0.0.9:5000'" in script
    assert "AllowReassociation=True" in script
    assert "ENDPOINT_URL = None" in render_notify_master(NODE)
    compile(script, "notify-master-eip.py", "exec")  # valid Python


@pytest.mark.parametrize("change, key", [
    (dict(private_ip="10.0.0"), "haproxy_nodes[haproxy-a].private_ip"),
    (dict(peer_private_ip="10.0.0.5"), "haproxy_nodes[haproxy-a].peer_private_ip"),
    (dict(instance_id="i-xyz"), "haproxy_nodes[haproxy-a].instance_id"),
    (dict(vrrp_router_id=256), "haproxy_nodes[haproxy-a].vrrp_router_id"),
    (dict(eip_allocation_id="eip-1"), "haproxy_nodes[haproxy-a].eip_allocation_id"),
    (dict(region="Europe"), "haproxy_nodes[haproxy-a].region"),
    (dict(aws_endpoint_url="ftp://x"), "haproxy_nodes[haproxy-a].aws_endpoint_url"),
    (dict(vrrp_interface="eth0; reboot"), "haproxy_nodes[haproxy-a].vrrp_interface"),
    (dict(check_fall=0), "haproxy_nodes[haproxy-a].check_fall"),
    (dict(name="A"), "haproxy_nodes[].name"),
])
def test_bad_node_spec_names_the_key(change, key):
    with pytest.raises(ConfigError) as caught:
        render_keepalived_conf(dataclasses.replace(NODE, **change))
    assert caught.value.key == key


# --------------------------------------------------------------------------- steps

def test_node_steps_in_order_with_triggers_on_what_they_install():
    steps = haproxy_node_steps(NODE, [PLATFORM, DOCS])
    assert [s.name for s in steps] == ["haproxy-packages", "haproxy-config",
                                       "keepalived-notify-master", "keepalived-config", "keepalived-eip-held"]
    assert "keepalived-eip-held" not in [s.name for s in haproxy_node_steps(
        dataclasses.replace(NODE, is_master=False), [PLATFORM, DOCS])]
    by_name = {s.name: s for s in steps}
    cfg = render_haproxy_cfg([PLATFORM, DOCS])
    assert by_name["haproxy-config"].triggers == (content_hash(cfg),)
    assert by_name["keepalived-config"].triggers == (content_hash(render_keepalived_conf(NODE)),)
    assert by_name["keepalived-notify-master"].triggers == (
        content_hash(render_notify_master(NODE)),)
    assert all(s.stdin is None and not s.secret_output for s in steps)


def test_tls_and_vrrp_auth_take_their_secrets_on_stdin():
    node = dataclasses.replace(NODE, tls_cert=True, vrrp_auth=True)
    steps = {s.name: s for s in haproxy_node_steps(node, [PLATFORM])}
    assert list(steps)[:3] == ["haproxy-packages", "haproxy-tls-cert", "haproxy-config"]
    assert steps["haproxy-tls-cert"].stdin == TLS_PEM_SECRET
    assert steps["haproxy-tls-cert"].secret_output
    assert steps["keepalived-config"].stdin == VRRP_PASSWORD_SECRET
    assert steps["keepalived-config"].secret_output
    assert "bind :443 ssl crt" in steps["haproxy-config"].create


def test_config_trigger_changes_exactly_when_the_config_does():
    before = {s.name: s.triggers for s in haproxy_node_steps(NODE, [PLATFORM])}
    more = dataclasses.replace(PLATFORM, servers=PLATFORM.servers + (
        BackendServer("app-3", "10.0.1.12"),))
    after = {s.name: s.triggers for s in haproxy_node_steps(NODE, [more])}
    assert before["haproxy-config"] != after["haproxy-config"]
    for name in ("haproxy-packages", "keepalived-notify-master", "keepalived-config"):
        assert before[name] == after[name]


def test_steps_are_deterministic():
    assert haproxy_node_steps(NODE, [PLATFORM, DOCS]) == haproxy_node_steps(NODE, [PLATFORM, DOCS])


def test_a_file_holding_the_heredoc_delimiter_is_refused():
    with pytest.raises(ValueError, match="delimiter"):
        render_haproxy_install("global\nECOM_HAPROXY_CFG\n")


def test_a_trailing_newline_in_a_hostname_is_refused():
    """`$` matches before a final newline: every pattern must match the whole value."""
    from ecom_infra.errors import ConfigError  # noqa: PLC0415
    from renderers.haproxy.spec import Backend, BackendServer  # noqa: PLC0415

    with pytest.raises(ConfigError, match="hostnames"):
        Backend(app="ecom-platform", hostnames=("shop.example.com\n",), health_path="/health",
                servers=(BackendServer(name="ecom-platform-1", address="10.0.1.20"),)).validate()


def test_node_services_are_enabled_for_boot_by_default():
    from renderers.haproxy.layout import HaproxyLayout, KeepalivedLayout  # noqa: PLC0415
    assert HaproxyLayout().service.enable == ("systemctl", "enable", "--quiet", "haproxy")
    assert KeepalivedLayout().service.enable == ("systemctl", "enable", "--quiet", "keepalived")
