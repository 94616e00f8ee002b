"""The real haproxy (this test's own process, loopback ports, temp socket) in front of real
HTTP servers: Host routing, health checks, and the install scripts (validate, swap, reload
only on change, refuse a bad config)."""
from __future__ import annotations

import dataclasses
import hashlib
import socket
import ssl
import stat
import subprocess
import time
from pathlib import Path

import pytest

from renderers.haproxy.haproxy_cfg import (
    render_haproxy_cfg,
    render_haproxy_install,
    render_packages_script,
    render_tls_cert_script,
)
from renderers.haproxy.layout import HaproxyLayout, ServiceControl
from renderers.haproxy.spec import Backend
from tests.haproxy.helpers import (
    FAST_CHECKS,
    AppServer,
    HaproxyProcess,
    http_get,
    http_post,
    local_layout,
    need,
    port_of,
    run_script,
    self_signed_pem,
    two_apps,
    wait_until,
)

pytestmark = [pytest.mark.tools, pytest.mark.root]


@dataclasses.dataclass
class Site:
    proxy: HaproxyProcess
    layout: HaproxyLayout
    servers: dict[str, AppServer]
    backends: list[Backend]
    port: int


@pytest.fixture
def site(short_dir, app_servers, haproxy_factory):
    """haproxy routing shop.test / www.shop.test to app-1 + app-2 and docs.test to docs-1."""
    servers = {s.name: s for s in app_servers("app-1", "app-2", "docs-1")}
    layout = local_layout(short_dir)
    backends = two_apps(list(servers.values()))
    Path(layout.config_path).write_text(render_haproxy_cfg(backends, health=FAST_CHECKS,
                                                           layout=layout))
    proxy = haproxy_factory(layout)
    layout = dataclasses.replace(layout, service=proxy.service())
    return Site(proxy, layout, servers, backends, port_of(layout.http_bind))


def served_by(site, host: str, count: int = 6, path: str = "/") -> set[str]:
    names = set()
    for _ in range(count):
        status, body, _ = http_get(site.port, host, path)
        assert status == 200, (host, status, body)
        names.add(body.split()[0])
    return names


# --------------------------------------------------------------------------- routing

def test_routes_by_host_header(site):
    assert served_by(site, "shop.test") == {"app-1", "app-2"}
    assert served_by(site, "www.shop.test:8080") == {"app-1", "app-2"}  # port ignored
    assert served_by(site, "docs.test") == {"docs-1"}
    assert served_by(site, "DOCS.test:80") == {"docs-1"}  # case-insensitive


def test_unknown_host_goes_to_the_default_backend_and_is_logged(site):
    assert served_by(site, "unknown.test") <= {"app-1", "app-2"}
    wait_until(lambda: "fe_http ecom-platform/" in site.proxy.log(), 5, "a request log line")
    assert "ecom-docs/docs-1" not in site.proxy.log()


def test_default_backend_can_be_another_app(site):
    cfg = render_haproxy_cfg(site.backends, default_app="ecom-docs", health=FAST_CHECKS,
                             layout=site.layout)
    result = run_script(render_haproxy_install(cfg, site.layout))
    assert result.returncode == 0, result.stderr
    wait_until(lambda: served_by(site, "unknown.test", 2) == {"docs-1"}, 10,
               "the default backend switch")


def test_a_restarting_server_costs_no_get_and_a_post_is_not_replayed(site):
    # app-1 still passes its health check but answers 502 (its puma restarts), or refuses.
    app1, app2 = site.servers["app-1"], site.servers["app-2"]
    app1.restarting = True
    for _ in range(10):
        status, body, _ = http_get(site.port, "shop.test")
        assert (status, body.split()[0]) == (200, "app-2")
    assert app1.hits >= 1                                   # it was tried, and retried elsewhere
    results = [http_post(site.port, "shop.test") for _ in range(6)]
    failed = [r for r in results if r[0] == 502]
    assert failed and all(body.startswith("app-1") for _, body in failed)
    assert app1.posts == len(failed) and app2.posts == len(results) - len(failed)   # none sent twice
    # A refused connection sent nothing: then a POST is retried elsewhere too.
    app1.close()
    assert {http_post(site.port, "shop.test")[0] for _ in range(4)} == {200}


def test_a_server_failing_its_health_check_gets_no_traffic(site):
    site.servers["app-1"].healthy = False
    wait_until(lambda: site.proxy.server_status("ecom-platform", "app-1")["status"]
               .startswith("DOWN"), 10, "app-1 DOWN")
    assert served_by(site, "shop.test", 8) == {"app-2"}
    site.servers["app-1"].healthy = True
    wait_until(lambda: site.proxy.server_status("ecom-platform", "app-1")["status"] == "UP",
               10, "app-1 UP again")
    assert served_by(site, "shop.test", 8) == {"app-1", "app-2"}


# --------------------------------------------------------------------------- install script

def with_extra_docs_host(site) -> str:
    docs = dataclasses.replace(site.backends[1], hostnames=("docs.test", "docs2.test"))
    return render_haproxy_cfg([site.backends[0], docs], health=FAST_CHECKS, layout=site.layout)


def test_install_validates_swaps_and_reloads_once(site):
    live = Path(site.layout.config_path)
    assert served_by(site, "docs2.test", 2) <= {"app-1", "app-2"}  # not routed yet
    worker = site.proxy.worker_pid()
    new_cfg = with_extra_docs_host(site)

    result = run_script(render_haproxy_install(new_cfg, site.layout))
    assert result.returncode == 0, result.stderr
    assert "reloaded haproxy" in result.stdout
    assert live.read_text() == new_cfg
    assert Path(f"{live}.applied").read_text().strip() == hashlib.sha256(
        new_cfg.encode()).hexdigest()
    assert not Path(f"{live}.new").exists()
    site.proxy.wait_new_worker(worker)
    wait_until(lambda: served_by(site, "docs2.test", 2) == {"docs-1"}, 10, "docs2.test routed")

    # Same text again: nothing to do, no reload.
    worker = site.proxy.worker_pid()
    result = run_script(render_haproxy_install(new_cfg, site.layout))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "haproxy-config: unchanged"
    time.sleep(0.3)
    assert site.proxy.worker_pid() == worker


def test_bad_config_is_refused_and_the_live_one_stays(site):
    live = Path(site.layout.config_path)
    before = live.read_text()
    worker = site.proxy.worker_pid()
    bad = with_extra_docs_host(site) + "    server broken 127.0.0.1:1 chek\n"
    result = run_script(render_haproxy_install(bad, site.layout))
    assert result.returncode == 1
    assert "haproxy -c rejected the new configuration" in result.stderr
    assert "chek" in result.stderr  # haproxy's own message
    assert live.read_text() == before
    assert not Path(f"{live}.new").exists()
    assert site.proxy.worker_pid() == worker
    assert served_by(site, "docs.test", 2) == {"docs-1"}


def test_install_interrupted_before_the_reload_reloads_on_the_next_run(site):
    live = Path(site.layout.config_path)
    new_cfg = with_extra_docs_host(site)
    live.write_text(new_cfg)  # swapped, then killed before the reload and the stamp
    worker = site.proxy.worker_pid()
    result = run_script(render_haproxy_install(new_cfg, site.layout))
    assert result.returncode == 0, result.stderr
    assert "reloaded haproxy" in result.stdout
    site.proxy.wait_new_worker(worker)
    wait_until(lambda: served_by(site, "docs2.test", 2) == {"docs-1"}, 10, "docs2.test routed")


def test_install_starts_haproxy_when_it_is_not_running(short_dir, app_servers):
    need("haproxy")
    started = short_dir / "started"
    layout = local_layout(short_dir, service=ServiceControl(
        is_active=("false",), reload=("false",), start=("touch", str(started))))
    cfg = render_haproxy_cfg(two_apps(app_servers("app-1", "app-2", "docs-1")), layout=layout)
    result = run_script(render_haproxy_install(cfg, layout))
    assert result.returncode == 0, result.stderr
    assert "started haproxy" in result.stdout
    assert started.exists()
    assert Path(layout.config_path).read_text() == cfg


def test_install_enables_haproxy_for_boot_on_every_run(short_dir, app_servers):
    need("haproxy")
    enabled = short_dir / "enabled"
    layout = local_layout(short_dir, service=ServiceControl(
        is_active=("true",), reload=("true",), start=("false",), enable=("touch", str(enabled))))
    cfg = render_haproxy_cfg(two_apps(app_servers("app-1", "app-2", "docs-1")), layout=layout)
    assert run_script(render_haproxy_install(cfg, layout)).returncode == 0
    assert enabled.exists()
    enabled.unlink()                                    # disabled by hand; the file is unchanged
    result = run_script(render_haproxy_install(cfg, layout))
    assert result.stdout.strip() == "haproxy-config: unchanged" and enabled.exists()


def test_install_refuses_to_run_as_a_normal_user(short_dir, app_servers):
    need("haproxy", "setpriv")
    layout = local_layout(short_dir)
    cfg = render_haproxy_cfg(two_apps(app_servers("app-1", "app-2", "docs-1")), layout=layout)
    result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                             "bash", "-c", render_haproxy_install(cfg, layout)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "haproxy-config: must run as root" in result.stderr
    assert not Path(layout.config_path).exists()


# --------------------------------------------------------------------------- TLS

@pytest.fixture
def pems():
    need("openssl")
    return self_signed_pem("shop.test"), self_signed_pem("shop.test")


def test_tls_cert_comes_on_stdin_and_is_written_mode_600(short_dir, pems):
    layout = local_layout(short_dir, service=ServiceControl(
        is_active=("false",), reload=("false",), start=("false",)))
    script = render_tls_cert_script(layout)
    assert "PRIVATE KEY" not in script
    cert = Path(layout.cert_path)

    result = run_script(script, stdin=pems[0])
    assert result.returncode == 0, result.stderr
    assert cert.read_text() == pems[0]
    assert stat.S_IMODE(cert.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in result.stdout + result.stderr

    result = run_script(script, stdin=pems[0])
    assert result.stdout.strip() == "haproxy-tls-cert: unchanged"

    for bad, message in [("not a pem\n", "haproxy_tls_pem: stdin holds no PEM certificate"),
                         (pems[0].split("-----BEGIN PRIVATE KEY")[0],
                          "haproxy_tls_pem: stdin holds no PEM private key"),
                         (pems[0].split("-----BEGIN PRIVATE KEY")[0]
                          + "-----BEGIN PRIVATE KEY" + pems[1].split("-----BEGIN PRIVATE KEY")[1],
                          "the private key does not belong to the certificate")]:
        result = run_script(script, stdin=bad)
        assert result.returncode == 1
        assert message in result.stderr
        assert cert.read_text() == pems[0]
    assert sorted(p.name for p in cert.parent.iterdir()) == ["site.pem", "site.pem.applied"]  # no temp left


def test_tls_cert_step_killed_before_its_reload_reloads_on_the_next_run(short_dir, pems):
    reloaded = Path(short_dir) / "reloaded"
    layout = local_layout(short_dir, service=ServiceControl(
        is_active=("true",), reload=("touch", str(reloaded)), start=("false",)))
    script = render_tls_cert_script(layout)
    assert run_script(script, stdin=pems[0]).returncode == 0 and reloaded.exists()
    reloaded.unlink()
    Path(layout.cert_path + ".applied").unlink()        # as if killed between the swap and the reload
    result = run_script(script, stdin=pems[0])
    assert result.returncode == 0, result.stderr
    assert reloaded.exists() and "unchanged" not in result.stdout
    assert run_script(script, stdin=pems[0]).stdout.strip() == "haproxy-tls-cert: unchanged"


def https_get(port: int, host: str) -> tuple[int, str, bytes]:
    """GET over TLS with SNI and Host = `host`; also returns the served certificate (DER)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            served = tls.getpeercert(binary_form=True)
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body, served


def pem_der(pem: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.split("-----BEGIN PRIVATE KEY")[0])


def test_https_routes_by_host_and_http_redirects(short_dir, app_servers, haproxy_factory, pems):
    layout = local_layout(short_dir)
    assert run_script(render_tls_cert_script(layout), stdin=pems[0]).returncode == 0
    backends = two_apps(app_servers("app-1", "app-2", "docs-1"))
    Path(layout.config_path).write_text(render_haproxy_cfg(backends, tls=True, layout=layout))
    proxy = haproxy_factory(layout)
    https_port = port_of(layout.https_bind)

    status, body, headers = http_get(port_of(layout.http_bind), "shop.test", "/cart?x=1")
    assert status == 301
    assert headers["location"].startswith("https://shop.test")
    assert headers["location"].endswith("/cart?x=1")

    status, body, served = https_get(https_port, "docs.test")
    assert (status, body.split()) == (200, ["docs-1", "https"])
    assert served == pem_der(pems[0])
    status, body, _ = https_get(https_port, "shop.test")
    assert status == 200 and body.split()[0] in {"app-1", "app-2"}

    # A new certificate reloads the running haproxy, which then serves it.
    layout = dataclasses.replace(layout, service=proxy.service())
    worker = proxy.worker_pid()
    result = run_script(render_tls_cert_script(layout), stdin=pems[1])
    assert result.returncode == 0, result.stderr
    assert "haproxy reloaded" in result.stdout
    proxy.wait_new_worker(worker)
    wait_until(lambda: https_get(https_port, "docs.test")[2] == pem_der(pems[1]), 10,
               "the new certificate to be served")


# --------------------------------------------------------------------------- packages

def test_packages_step_changes_nothing_when_all_is_installed():
    need("dpkg-query", "haproxy", "keepalived")
    for package in ("haproxy", "keepalived", "python3", "python3-boto3"):
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                                capture_output=True, text=True).stdout
        if status != "install ok installed":
            pytest.skip(f"{package} is not installed here (the step would run apt-get)")
    passwd = Path("/etc/passwd").read_bytes()
    result = run_script(render_packages_script())
    assert result.returncode == 0, result.stderr
    assert "haproxy-packages: already installed" in result.stdout
    assert "apt-get" not in result.stdout + result.stderr
    assert Path("/etc/passwd").read_bytes() == passwd
