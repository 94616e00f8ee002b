"""Provisioning steps for real: user, layout, packages, config files; idempotent and careful."""
from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from renderers.app_server.files import FILE_EOF
from renderers.app_server.steps import app_server_steps

from .helpers import destroy_host, make_host

pytestmark = [pytest.mark.tools, pytest.mark.root]

PROVISION = ("deploy-user", "layout", "app-env", "ruby", "puma-config", "puma-unit", "nginx-site", "datadog")


@pytest.fixture
def bare_host(deploy_account, origin):
    """A host on which no step has run yet."""
    made = make_host(deploy_account, origin, datadog_enabled=True)
    try:
        yield made
    finally:
        destroy_host(made)


def mode_owner(path: Path) -> tuple[str, str, str]:
    info = path.lstat()
    return oct(stat.S_IMODE(info.st_mode)), pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its inode and mtime: a rewrite changes one of them."""
    return {str(p): (p.lstat().st_ino, p.lstat().st_mtime_ns) for p in root.rglob("*") if not p.is_dir()}


def run_ok(host, name: str, **kwargs) -> str:
    if name == "app-env":
        kwargs.setdefault("stdin", host.env_file())   # what the component feeds it
    result = host.run(name, **kwargs)
    assert result.returncode == 0, f"{name}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_provisioning_converges_and_a_second_run_changes_nothing(bare_host):
    host, user = bare_host, bare_host.account.user
    default_site = Path(host.spec.nginx_dir) / "sites-enabled" / "default"
    default_site.symlink_to("/etc/nginx/sites-available/default")   # Debian's, as on a fresh host

    first = {name: run_ok(host, name) for name in PROVISION}
    assert "ruby: all packages present, nothing installed" in first["ruby"]
    assert "default site disabled" in first["nginx-site"] and "nginx started" in first["nginx-site"]
    assert not default_site.is_symlink()

    entry = pwd.getpwnam(user)
    assert entry.pw_shell == "/bin/bash" and Path(entry.pw_dir).is_dir()
    assert user in grp.getgrnam(user).gr_mem or grp.getgrgid(entry.pw_gid).gr_name == user
    assert "www-data" in grp.getgrnam(user).gr_mem                    # nginx reaches the socket
    app_dir = host.app_dir
    assert mode_owner(app_dir) == ("0o755", "root", "root")
    assert mode_owner(app_dir / "releases") == ("0o755", "root", "root")
    for sub in ("assets", "bundle", "log", "config", "tmp/pids", "tmp/cache"):
        assert mode_owner(app_dir / "shared" / sub) == ("0o755", user, user), sub
    assert mode_owner(app_dir / "shared" / "tmp" / "sockets") == ("0o750", user, user)
    assert mode_owner(Path(host.spec.puma_config_path)) == ("0o644", "root", "root")
    assert mode_owner(Path(host.spec.puma_launcher_path)) == ("0o644", "root", "root")
    assert mode_owner(Path(host.spec.environment_file)) == ("0o600", "root", "root")
    assert Path(host.spec.unit_path).read_text().startswith("# puma for ecom-platform")
    assert os.readlink(host.spec.nginx_enabled_path) == host.spec.nginx_site_path
    conf = yaml.safe_load(Path(host.spec.datadog_conf_path).read_text())
    assert conf["instances"][0]["pid_file"] == host.spec.live_pid_file
    # Root's slots folder; nginx's link names slot a until a publish switches it.
    assert mode_owner(app_dir / "slots") == ("0o755", "root", "root")
    assert os.readlink(host.spec.live_socket) == host.spec.slot_socket("a")
    assert Path(host.spec.restart_flag).exists()                     # new puma config: restart pending

    before = snapshot(host.base / "srv") | snapshot(host.base / "nginx") | snapshot(host.base / "systemd") \
        | snapshot(host.base / "datadog")
    second = {name: run_ok(host, name) for name in PROVISION}
    after = snapshot(host.base / "srv") | snapshot(host.base / "nginx") | snapshot(host.base / "systemd") \
        | snapshot(host.base / "datadog")
    assert after == before
    assert "created" not in second["deploy-user"]
    for name in ("app-env", "puma-config", "puma-unit", "nginx-site", "datadog"):
        assert "unchanged" in second[name], second[name]
    assert "reloaded" not in second["nginx-site"]


def test_a_site_nginx_rejects_is_rolled_back(bare_host):
    host = bare_host
    run_ok(host, "deploy-user")
    run_ok(host, "layout")
    # Another site already declares the same upstream: the site alone is fine, nginx as a whole is not.
    clash = Path(host.spec.nginx_dir) / "sites-enabled" / "clash.conf"
    clash.write_text("upstream puma-ecom-platform { server 127.0.0.1:9; }\n")
    result = host.run("nginx-site")
    assert result.returncode == 1
    assert "nginx -t fails with the new site, previous configuration restored" in result.stderr
    assert "duplicate upstream" in result.stderr
    assert not Path(host.spec.nginx_site_path).exists() and not os.path.lexists(host.spec.nginx_enabled_path)

    # With a working site in place, a rejected change leaves the old one.
    clash.unlink()
    run_ok(host, "nginx-site")
    old = Path(host.spec.nginx_site_path).read_text()
    clash.write_text("upstream puma-ecom-platform { server 127.0.0.1:9; }\n")
    host.spec = replace(host.spec, hostnames=("changed.test",))
    assert host.run("nginx-site").returncode == 1
    assert Path(host.spec.nginx_site_path).read_text() == old
    assert os.readlink(host.spec.nginx_enabled_path) == host.spec.nginx_site_path


def test_a_config_that_fails_its_check_is_not_installed(bare_host):
    host = bare_host
    run_ok(host, "deploy-user")
    run_ok(host, "layout")
    run_ok(host, "puma-config")
    target = Path(host.spec.puma_config_path)
    before = target.read_text()
    # Damage the file inside the script (the spec cannot produce bad Ruby): the check must stop it.
    script = host.steps()["puma-config"].create.replace(f"\n{FILE_EOF}\n", "\nworkers(\n" + FILE_EOF + "\n", 1)
    result = host.run("puma-config", script=script)
    assert result.returncode == 1
    assert "does not parse (ruby -c)" in result.stderr
    assert target.read_text() == before


def test_steps_refuse_to_run_out_of_order_or_unprivileged(bare_host):
    host = bare_host
    host.spec = replace(host.spec, deploy_user="ecom-no-such-user")   # deploy-user has not run for it
    result = host.run("layout")
    assert result.returncode == 1 and "the deploy-user step runs first" in result.stderr
    assert not host.app_dir.exists()
    unprivileged = subprocess.run(["runuser", "-u", "nobody", "--", "bash", "-c", host.steps()["layout"].create],
                                  capture_output=True, text=True)
    assert unprivileged.returncode == 1 and "must run as root" in unprivileged.stderr


def test_every_step_script_is_what_the_component_gets(bare_host):
    steps = app_server_steps(replace(bare_host.spec, sha="a" * 40))
    assert [s.name for s in steps] == [*PROVISION, "release-build", "release-publish"]


def test_a_site_change_interrupted_before_the_reload_is_reloaded_next_time(host):
    """`host` is provisioned: nginx runs with the site. A change dies right after the file moved."""
    host.spec = replace(host.spec, hostnames=("again.test",))
    script = host.steps()["nginx-site"].create
    killed = script.replace('  changed="site"\n', "  kill -KILL $$\n", 1)
    assert killed != script
    assert host.run("nginx-site", script=killed).returncode == -9      # died between move and reload
    assert "server_name again.test;" in Path(host.spec.nginx_site_path).read_text()
    assert Path(host.spec.nginx_site_path + ".reload-pending").exists()
    out = run_ok(host, "nginx-site")
    assert "a change left by an interrupted run; nginx reloaded" in out
    assert not Path(host.spec.nginx_site_path + ".reload-pending").exists()
    assert "unchanged" in run_ok(host, "nginx-site")


def test_the_deploy_user_step_creates_a_missing_account(bare_host):
    name = f"{bare_host.account.user}n"        # a second account, removed below
    bare_host.spec = replace(bare_host.spec, deploy_user=name, deploy_group=name)
    try:
        out = run_ok(bare_host, "deploy-user")
        assert f"created group {name}" in out and f"created user {name}" in out
        entry = pwd.getpwnam(name)
        assert entry.pw_shell == "/bin/bash" and entry.pw_dir == f"/home/{name}" and Path(entry.pw_dir).is_dir()
        assert entry.pw_uid < 1000                                   # a system account
        assert "www-data" in grp.getgrnam(name).gr_mem
        assert "created" not in run_ok(bare_host, "deploy-user")
    finally:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


def test_a_link_the_app_plants_never_makes_root_touch_another_folder(bare_host):
    """The app (deploy user) owns shared/: a link it plants there must not let a root step chown elsewhere."""
    host, user = bare_host, bare_host.account.user
    run_ok(host, "deploy-user")
    run_ok(host, "layout")
    victim = Path(host.spec.deploy_root) / "victim"        # root's, reachable by the deploy user
    victim.mkdir(mode=0o755)
    log_dir = host.app_dir / "shared" / "log"
    subprocess.run(["runuser", "-u", user, "--", "sh", "-c", f"rmdir '{log_dir}' && ln -s '{victim}' '{log_dir}'"],
                   check=True)
    host.run("layout")                                    # whatever it says, as the deploy user it cannot chown
    assert mode_owner(victim) == ("0o755", "root", "root")
