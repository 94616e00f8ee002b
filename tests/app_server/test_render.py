"""Rendering: the step list, triggers, validation, and every rendered file checked by its own program."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from ecom_infra.errors import ConfigError
from renderers.app_server.files import (
    render_bundle_config,
    render_datadog_conf,
    render_environment_file,
    render_nginx_site,
    render_puma_config,
    render_puma_launcher,
    render_puma_socket,
    render_puma_unit,
    render_ssh_config,
)
from renderers.app_server.spec import AppServerSpec
from renderers.app_server.steps import PUBLISH_STEP, STEP_ORDER, app_server_steps

from .helpers import require_tools

SHA = "3f1c0d5e9a7b2c4d6e8f0a1b3c5d7e9f1a2b4c6d"
KNOWN_HOST = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

BASE = AppServerSpec(app="ecom-platform", repo_url="git@github.com:emami/ecom-platform.git",
                     hostnames=("shop.example.com", "www.shop.example.com"), sha=SHA, git_host="github.com",
                     known_hosts=(KNOWN_HOST,), datadog_enabled=True, puma_workers=3, puma_threads_min=2,
                     puma_threads_max=8)

VARIANTS = {
    "systemd-ssh-datadog": BASE,
    "systemd-local-gems": replace(BASE, bundle_local=True, datadog_enabled=False),
    "direct-local-repo": replace(BASE, repo_url="/srv/git/ecom-docs.git", git_host=None, known_hosts=(),
                                 app="ecom-docs", service_manager="direct", default_server=False,
                                 http_bind="127.0.0.1", http_port=8080, puma_workers=0),
    "no-release": replace(BASE, sha=None),
}


def names(spec: AppServerSpec) -> list[str]:
    return [step.name for step in app_server_steps(spec)]


def test_steps_come_in_the_documented_order():
    assert names(BASE) == list(STEP_ORDER)
    assert names(replace(BASE, datadog_enabled=False)) == [n for n in STEP_ORDER if n != "datadog"]
    assert names(replace(BASE, sha=None)) == [n for n in STEP_ORDER if not n.startswith("release-")]
    # A local repository needs no key: no step asks for the secret.
    local = VARIANTS["direct-local-repo"]
    assert "git-ssh" not in names(local)
    assert all(step.stdin != "deploy_key" for step in app_server_steps(local))
    assert PUBLISH_STEP == names(BASE)[-1]


def test_deploy_key_travels_on_stdin_only():
    step = next(s for s in app_server_steps(BASE) if s.name == "git-ssh")
    assert step.stdin == "deploy_key"
    assert step.secret_output is True
    assert [s.name for s in app_server_steps(BASE) if s.stdin == "deploy_key"] == ["git-ssh"]


def test_triggers_are_what_should_rerun_each_step():
    steps = {s.name: s for s in app_server_steps(BASE)}
    assert steps["release-build"].triggers == (SHA,)
    assert steps["release-publish"].triggers[0] == SHA
    assert steps["deploy-user"].triggers == ()

    more_threads = {s.name: s for s in app_server_steps(replace(BASE, puma_threads_max=16))}
    assert more_threads["puma-config"].triggers != steps["puma-config"].triggers
    assert more_threads["release-publish"].triggers != steps["release-publish"].triggers  # puma must restart
    assert more_threads["release-build"].triggers == steps["release-build"].triggers      # nothing to rebuild
    assert more_threads["nginx-site"].triggers == steps["nginx-site"].triggers

    other_sha = {s.name: s for s in app_server_steps(replace(BASE, sha="a" * 40))}
    assert other_sha["release-build"].triggers == ("a" * 40,)
    assert other_sha["puma-config"].triggers == steps["puma-config"].triggers


def test_rendering_is_deterministic():
    first = [(s.name, s.create, s.triggers) for s in app_server_steps(BASE)]
    second = [(s.name, s.create, s.triggers) for s in app_server_steps(replace(BASE))]
    assert first == second


@pytest.mark.parametrize(("changes", "key"), [
    ({"app": "Ecom_Platform"}, "app_server.app"),
    ({"sha": "3f1c0d5"}, "app_server.sha"),
    ({"sha": "'; rm -rf / #" + "a" * 28}, "app_server.sha"),
    ({"keep_releases": 1}, "app_server.keep_releases"),
    ({"deploy_user": "root"}, "app_server.deploy_user"),
    ({"deploy_root": "srv/www"}, "app_server.deploy_root"),
    ({"deploy_root": "/srv/../etc"}, "app_server.deploy_root"),
    ({"known_hosts": ()}, "app_server.known_hosts"),
    ({"health_path": "health"}, "app_server.health_path"),
    ({"hostnames": ()}, "app_server.hostnames"),
    ({"hostnames": ("shop.example.com; evil",)}, "app_server.hostnames"),
    ({"repo_url": "https://github.com/x/y.git"}, "app_server.repo_url"),
    ({"puma_threads_min": 9}, "app_server.puma_threads_min"),
    ({"ruby_source": "rbenv"}, "app_server.ruby_source"),
    ({"service_manager": "upstart"}, "app_server.service_manager"),
    ({"linked_dirs": ("/etc",)}, "app_server.linked_dirs"),
    ({"linked_files": ("a/../../x",)}, "app_server.linked_files"),
    ({"linked_files": ("public/assets/x",)}, "app_server.linked_dirs"),
])
def test_bad_values_are_refused_with_the_key_named(changes, key):
    with pytest.raises(ConfigError) as caught:
        replace(BASE, **changes)
    message = str(caught.value)
    assert message.startswith(f"{key}: ")
    assert "\n" not in message


def test_puma_config_states_the_layout_and_sizes():
    """Per slot (ECOM_PUMA_SLOT): its own release link, socket, pid and state files."""
    text = render_puma_config(BASE)
    assert 'directory "/srv/www/ecom-platform/slots/#{slot}"' in text
    assert 'bind "unix:///srv/www/ecom-platform/shared/tmp/sockets/puma-#{slot}.sock?umask=0007"' in text
    assert 'pidfile "/srv/www/ecom-platform/shared/tmp/pids/puma-#{slot}.pid"' in text
    assert 'state_path "/srv/www/ecom-platform/shared/tmp/pids/puma-#{slot}.state"' in text
    assert "workers 3" in text and "threads 2, 8" in text and "tag 'ecom-platform'" in text
    # The master loads the app once (the asset manifest read at boot), so forked workers never read it again.
    assert "preload_app!" in text and "drain_on_shutdown" in text
    assert "preload_app!" not in render_puma_config(replace(BASE, puma_workers=0))


@pytest.mark.tools
def test_puma_config_passes_ruby_c_and_loads_in_puma(tmp_path):
    require_tools("ruby", "puma")
    path = tmp_path / "puma.rb"
    path.write_text(render_puma_config(BASE))
    check = subprocess.run(["ruby", "-c", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "Syntax OK"
    launcher = tmp_path / "puma-start.rb"
    launcher.write_text(render_puma_launcher(BASE))
    check = subprocess.run(["ruby", "-c", str(launcher)], capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip() == "Syntax OK", check.stderr
    # Puma's own DSL reads it and sees the values we meant.
    probe = ("require 'puma'; require 'puma/configuration'; c = Puma::Configuration.new({}, config_files: [ARGV[0]]);"
             " c.load; o = c.options; puts [o[:workers], o[:min_threads], o[:max_threads], o[:directory],"
             " o[:binds].first, o[:pidfile], o[:tag], o[:preload_app]].join('|')")
    env = {"PATH": os.environ["PATH"], "ECOM_PUMA_SLOT": "b"}
    loaded = subprocess.run(["ruby", "-e", probe, str(path)], capture_output=True, text=True, env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == ("3|2|8|/srv/www/ecom-platform/slots/b|"
                                     "unix:///srv/www/ecom-platform/shared/tmp/sockets/puma-b.sock?umask=0007|"
                                     "/srv/www/ecom-platform/shared/tmp/pids/puma-b.pid|ecom-platform|true")
    # Started outside a slot, it refuses at once, naming the variable.
    for slot in ("", "c", "a/../b"):
        refused = subprocess.run(["ruby", "-e", probe, str(path)], capture_output=True, text=True,
                                 env={**env, "ECOM_PUMA_SLOT": slot})
        assert refused.returncode != 0 and "ECOM_PUMA_SLOT must be one of a, b" in refused.stderr


def test_unit_runs_puma_from_its_slot():
    """A template: each instance (slot) runs the release its own link names; none starts at boot by itself (the
    live slot's socket starts it)."""
    text = render_puma_unit(BASE)
    assert BASE.unit_name == "puma-ecom-platform@.service" and BASE.unit("b") == "puma-ecom-platform@b.service"
    assert "Type=simple\n" in text
    assert "WorkingDirectory=/srv/www/ecom-platform/slots/%i\n" in text
    assert "ConditionPathExists=/srv/www/ecom-platform/slots/%i\n" in text
    assert "Environment=ECOM_PUMA_SLOT=%i\n" in text
    assert ("ExecStart=/usr/bin/ruby /srv/www/ecom-platform/config/puma-start.rb -C "
            "/srv/www/ecom-platform/config/puma.rb\n") in text
    assert "User=deploy\n" in text and "Environment=RAILS_ENV=production\n" in text
    assert "[Install]" not in text


@pytest.mark.tools
def test_unit_passes_systemd_analyze_verify(tmp_path):
    """`systemd-analyze verify` loads the unit in a test manager: it needs no systemd as PID 1."""
    require_tools("systemd-analyze", "bundle")
    unit = tmp_path / BASE.unit("a")
    unit.write_text(render_puma_unit(replace(BASE, deploy_user="nobody", deploy_group="nogroup")))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no", str(unit)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # Warnings about our file would show here (unknown keys, bad values); only the
    # user name warning for "nobody" is expected.
    ours = [line for line in result.stderr.splitlines() if str(unit) in line and "nobody" not in line]
    assert ours == []


def test_systemd_holds_each_slots_socket_across_restarts():
    """Each slot's socket unit listens on the path puma.rb binds for that slot (puma 5.6 takes it over by path),
    with the mode puma's umask gave; the service needs its own slot's, so starting puma starts the socket."""
    socket = render_puma_socket(BASE)
    assert "ListenStream=/srv/www/ecom-platform/shared/tmp/sockets/puma-%i.sock\n" in socket
    assert "SocketUser=deploy\n" in socket and "SocketGroup=deploy\n" in socket and "SocketMode=0660\n" in socket
    assert "WantedBy=sockets.target\n" in socket
    assert f'bind "unix://{BASE.socket_dir}/puma-#{{slot}}.sock?umask=0007"' in render_puma_config(BASE)
    unit = render_puma_unit(BASE)
    assert "Requires=puma-ecom-platform@%i.socket\n" in unit and "After=puma-ecom-platform@%i.socket\n" in unit
    assert ".socket" not in render_puma_unit(replace(BASE, service_manager="direct"))


@pytest.mark.tools
def test_socket_unit_passes_systemd_analyze_verify(tmp_path):
    require_tools("systemd-analyze", "bundle")
    spec = replace(BASE, deploy_user="nobody", deploy_group="nogroup")
    socket = tmp_path / spec.socket_unit("a")
    socket.write_text(render_puma_socket(spec))
    unit = tmp_path / spec.unit("a")
    unit.write_text(render_puma_unit(spec))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no", str(unit), str(socket)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    ours = [line for line in result.stderr.splitlines() if str(tmp_path) in line and "nobody" not in line]
    assert ours == []
    socket.write_text(render_puma_socket(spec).replace("SocketMode=0660", "SocketMode=rw"))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no", str(unit), str(socket)],
                            capture_output=True, text=True)
    assert "Failed to parse mode value" in result.stderr      # the check can fail


@pytest.mark.tools
def test_unit_with_a_bad_line_fails_verify(tmp_path):
    """The check above can fail: a broken ExecStart is refused."""
    require_tools("systemd-analyze")
    unit = tmp_path / BASE.unit("a")
    unit.write_text(render_puma_unit(BASE).replace("ExecStart=/usr/bin/ruby", "ExecStart=ruby-not-absolute"))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no", str(unit)],
                            capture_output=True, text=True)
    assert result.returncode != 0


def test_nginx_site_proxies_to_the_live_slot_and_caches_assets():
    text = render_nginx_site(BASE)
    assert "server unix:/srv/www/ecom-platform/slots/puma.sock fail_timeout=0;" in text
    assert "server_name shop.example.com www.shop.example.com;" in text
    assert re.search(r"location \^~ /assets/ \{[^}]*gzip_static on;[^}]*expires max;", text)
    assert "location = /health {" in text
    assert "listen 80 default_server;" in text
    assert "root /srv/www/ecom-platform/current/public;" in text


@pytest.mark.root  # nginx -t binds the site's ports (80)
@pytest.mark.tools
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_nginx_site_passes_nginx_t(tmp_path, variant):
    require_tools("nginx")
    site = tmp_path / "site.conf"
    site.write_text(render_nginx_site(VARIANTS[variant]))
    wrapper = tmp_path / "nginx.conf"
    wrapper.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
                       f"http {{\n  client_body_temp_path {tmp_path}/body;\n  proxy_temp_path {tmp_path}/proxy;\n"
                       f"  include {site};\n}}\n")
    result = subprocess.run(["nginx", "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(wrapper)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # ...and a broken site fails the same check.
    site.write_text(render_nginx_site(VARIANTS[variant]).replace("proxy_pass", "proxy_pass_typo", 1))
    broken = subprocess.run(["nginx", "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(wrapper)],
                            capture_output=True, text=True)
    assert broken.returncode != 0


def test_datadog_process_check_follows_the_schema():
    doc = yaml.safe_load(render_datadog_conf(BASE))
    assert "init_config" in doc
    instances = doc["instances"]
    assert [i["name"] for i in instances] == ["puma-ecom-platform", "nginx"]
    for instance in instances:
        assert sum(k in instance for k in ("search_string", "pid_file", "pid")) == 1
    # The live slot's: root's link to its pid file, switched with nginx's.
    assert instances[0]["pid_file"] == "/srv/www/ecom-platform/slots/puma.pid"
    assert instances[1]["pid_file"] == "/run/nginx.pid"


def test_ssh_config_pins_host_keys_and_the_app_key():
    text = render_ssh_config(replace(BASE, git_port=2222))
    assert "Host github.com\n" in text
    assert "    Port 2222\n" in text
    assert "    StrictHostKeyChecking yes\n" in text
    assert "    IdentityFile ~/.ssh/ecom-platform/id_deploy\n" in text
    assert "    IdentitiesOnly yes\n" in text
    assert "UserKnownHostsFile ~/.ssh/ecom-platform/known_hosts" in text
    assert "StrictHostKeyChecking no" not in text


def test_bundle_config_modes():
    local = yaml.safe_load(render_bundle_config(replace(BASE, bundle_local=True)))
    assert local == {"BUNDLE_FROZEN": "true", "BUNDLE_WITHOUT": "development:test"}
    remote = yaml.safe_load(render_bundle_config(BASE))
    assert remote == {"BUNDLE_DEPLOYMENT": "true", "BUNDLE_PATH": "/srv/www/ecom-platform/shared/bundle",
                      "BUNDLE_WITHOUT": "development:test"}


def _all_scripts() -> list[tuple[str, str]]:
    return [(f"{variant}/{step.name}", step.create) for variant, spec in sorted(VARIANTS.items())
            for step in app_server_steps(spec)]


@pytest.mark.tools
@pytest.mark.parametrize(("label", "script"), _all_scripts(), ids=[label for label, _ in _all_scripts()])
def test_every_script_passes_shellcheck(label, script):
    require_tools("shellcheck")
    result = subprocess.run(["shellcheck", "--shell=bash", "--severity=style", "-"], input=script,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"{label}:\n{result.stdout}"
    # A disabled check must say why on the same line.
    for line in script.splitlines():
        if "shellcheck disable=" in line:
            assert re.search(r"disable=SC\d+(,SC\d+)* # \S", line), f"{label}: unexplained {line.strip()!r}"


def test_scripts_stop_on_errors_and_need_root():
    for label, script in _all_scripts():
        assert "\nset -euo pipefail\n" in script, label
        assert 'die "must run as root' in script, label


def test_file_contents_cannot_end_their_here_document():
    from renderers.app_server.files import FILE_EOF, _file_block  # noqa: PLC0415

    with pytest.raises(ValueError):
        _file_block(f"line\n{FILE_EOF}\nmore\n")
    assert _file_block("no newline") == "no newline\n"


def test_templates_exist_for_every_step():
    templates = {p.name for p in (Path(__file__).resolve().parents[2] / "templates" / "app_server").glob("*.j2")}
    for name in STEP_ORDER:
        assert f"{name.replace('-', '_')}.sh.j2" in templates


def test_spec_from_the_stack_settings():
    from components.app_server import spec_from_settings  # noqa: PLC0415
    from ecom_infra import settings as settings_module  # noqa: PLC0415
    from ecom_infra import stacks  # noqa: PLC0415

    raw = stacks.stack_config("staging")
    region = raw.pop("aws:region", "us-east-1")
    settings = settings_module.parse({key.split(":", 1)[1]: value for key, value in raw.items()},
                                     project="ecom-infra", stack="staging", region=region)
    spec = spec_from_settings(settings, "ecom-platform", SHA)
    app = settings.app("ecom-platform")
    assert (spec.app, spec.repo_url, spec.branch, spec.sha) == ("ecom-platform", app.repo.url, app.branch, SHA)
    assert spec.hostnames == app.hostnames and spec.health_path == app.health_check_path
    assert spec.git_host == app.repo.host and spec.known_hosts
    assert all(line.split()[0] == app.repo.host for line in spec.known_hosts)
    assert (spec.deploy_user, spec.deploy_root, spec.keep_releases) == (settings.deploy.user, settings.deploy.root,
                                                                        settings.deploy.keep_releases)
    assert names(spec)[-1] == PUBLISH_STEP


@pytest.mark.parametrize("field,value", [("branch", "master\n"), ("app", "ecom-platform\n"),
                                         ("health_path", "/health\n"), ("deploy_user", "deploy\n")])
def test_a_trailing_newline_is_refused(field, value):
    """`$` matches before a final newline: every pattern must match the whole value."""
    from ecom_infra.errors import ConfigError  # noqa: PLC0415
    from renderers.app_server.spec import AppServerSpec  # noqa: PLC0415

    values = {"app": "ecom-platform", "repo_url": "git@github.com:emami/ecom-platform.git",
              "hostnames": ("shop.example.com",), "git_host": "github.com",
              "known_hosts": ("github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq",)}
    values[field] = value
    with pytest.raises(ConfigError, match=f"app_server.{field}"):
        AppServerSpec(**values)


def test_gems_from_rubygems_get_a_compiler_and_ruby_headers():
    """Without bundle_local, bundle install builds native extensions: the ruby step ensures the toolchain."""
    from renderers.app_server.spec import AppServerSpec  # noqa: PLC0415
    from renderers.app_server.steps import ruby_step  # noqa: PLC0415

    base = {"app": "ecom-platform", "repo_url": "/srv/git/ecom-platform.git", "hostnames": ("shop.example.com",)}
    remote = ruby_step(AppServerSpec(**base, bundle_local=False)).create
    local = ruby_step(AppServerSpec(**base, bundle_local=True)).create
    assert "build-essential" in remote and "ruby-dev" in remote
    assert "build-essential" not in local and "ruby-rails" in local


# ---------------------------------------------------------------- first boot: cloud-init and apt


def _first_scripts() -> dict[str, str]:
    from renderers.haproxy.haproxy_cfg import render_packages_script  # noqa: PLC0415

    return {"app": app_server_steps(BASE)[0].create, "haproxy": render_packages_script()}


def test_the_first_step_on_each_host_waits_for_cloud_init_when_the_image_has_it():
    assert app_server_steps(BASE)[0].name == "deploy-user"
    for role, script in _first_scripts().items():
        guard = script.index("if command -v cloud-init >/dev/null 2>&1 && [ ! -e /etc/cloud/cloud-init.disabled ] "
                             "&& [ -d /run/systemd/system ]; then")
        assert script.index("cloud-init status --wait") > guard, role
        assert script.index("cloud-init status --wait") < script.find("apt-get") or "apt-get" not in script
    later = [s.create for s in app_server_steps(BASE)[1:]]
    assert not [s for s in later if "cloud-init status" in s]       # once per host, in its first step


def test_every_apt_get_waits_for_the_dpkg_lock():
    from renderers.haproxy.haproxy_cfg import render_packages_script  # noqa: PLC0415

    scripts = [s.create for spec in VARIANTS.values() for s in app_server_steps(spec)] + [render_packages_script()]
    calls = [line for script in scripts for line in script.splitlines() if re.search(r"^\s*apt-get ", line)]
    assert calls and all("-o DPkg::Lock::Timeout=" in line for line in calls), calls


@pytest.mark.parametrize("stub_rc,step_rc,said,disabled", [
    (0, 0, "", False), (2, 0, "warning: cloud-init finished with", False),
    (1, 1, "error: cloud-init failed (exit 1)", False), (None, 0, "", False),
    (1, 0, "", True)])                 # disabled on this machine: never asked, even if it would fail
def test_the_cloud_init_wait_runs(tmp_path, stub_rc, step_rc, said, disabled):
    from renderers import render  # noqa: PLC0415

    bindir = tmp_path / "bin"
    bindir.mkdir()
    # Only the programs the snippet uses, never this machine's own cloud-init (the Makefile installs one).
    for tool in ("bash", "id", "timeout", "tail", "tr", "runuser"):
        found = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        assert found, tool
        (bindir / tool).symlink_to(found)
    if stub_rc is not None:            # None: an image without cloud-init
        stub = bindir / "cloud-init"
        stub.write_text(f"#!/bin/sh\n[ \"$2\" = --long ] && echo 'status: done'\necho \"$@\" >> {tmp_path}/calls\n"
                        f"exit {stub_rc}\n")
        stub.chmod(0o755)
    marker = tmp_path / "cloud-init.disabled"     # the machine's own marker must not decide this test
    if disabled:
        marker.touch()
    systemd = tmp_path / "systemd"                  # as on a host booted with systemd
    systemd.mkdir()
    script = ("set -euo pipefail\n" + render("host/wait_for_cloud_init.sh.j2") + "echo next-line\n").replace(
        "/etc/cloud/cloud-init.disabled", str(marker)).replace("/run/systemd/system", str(systemd))
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                          env={"PATH": str(bindir)})
    assert done.returncode == step_rc, done.stderr
    assert said in done.stderr
    assert ("next-line" in done.stdout) == (step_rc == 0)
    if stub_rc is not None:
        calls = tmp_path / "calls"
        assert (calls.exists() and "status --wait" in calls.read_text()) == (not disabled)


def test_linked_paths_reach_the_layout_and_the_build_quoted():
    spec = replace(BASE, sha="a" * 40, linked_dirs=("log", "storage"), linked_files=("config/master.key",))
    steps = {step.name: step.create for step in app_server_steps(spec)}
    for name in ("layout", "release-build"):
        assert "LINKED_DIRS=(log storage)" in steps[name] and "LINKED_FILES=(config/master.key)" in steps[name]
    default = {step.name: step.create for step in app_server_steps(replace(BASE, sha="a" * 40))}
    assert "LINKED_DIRS=(log tmp/pids tmp/sockets tmp/cache)" in default["release-build"]
    assert "LINKED_FILES=()" in default["release-build"]


def test_the_environment_travels_on_stdin_and_restarts_through_publish():
    steps = {s.name: s for s in app_server_steps(replace(BASE, env=(("SHOP_NAME", "Demo"),)))}
    env = steps["app-env"]
    assert env.stdin == "app_env" and env.secret_output and env.secret_triggers == ("app_env",)
    assert "Demo" not in env.create                     # the file's content comes on stdin only
    assert steps["release-publish"].secret_triggers == ("app_env",)
    assert list(steps).index("app-env") == list(steps).index("layout") + 1
    text = render_environment_file([("B", 'a"b\\c$d`e'), ("A", "x")])
    assert text.splitlines()[1:] == ['A="x"', 'B="a\\"b\\\\c\\$d\\`e"']
    with pytest.raises(ConfigError, match=r"^app_server\.env\.A: "):
        render_environment_file([("A", "x\ny")])
