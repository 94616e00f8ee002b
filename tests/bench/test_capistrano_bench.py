"""bench/capistrano.py without a fleet: the Capistrano project it writes loads in Ruby and in Debian's Capistrano
(a dry run lists every command a deploy would run), and its host set-up script passes shellcheck."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app_server.helpers import require_tools

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
SHA = "0123456789abcdef0123456789abcdef01234567"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO1FNY49mlg696K4JUQhOqOhwWQz8px+0B1cpgefQt6t"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_capistrano", ROOT / "bench" / "capistrano.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = load_bench()
HOSTS = [bench.Host("ecom-platform-1", "10.213.0.11", HOST_KEY), bench.Host("ecom-platform-2", "10.213.0.12", HOST_KEY)]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    key = tmp_path / "id_cap"
    key.write_text("not read by a dry run\n")
    return bench.write_cap_project(tmp_path, bench.Target.load(), HOSTS, key)


def cap(project: Path, *args: str, sha: str | None = SHA) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(project), "LANG": "C.UTF-8"}
    if sha:
        env["CAP_BENCH_SHA"] = sha
    return subprocess.run(["cap", *args], cwd=project, env=env, capture_output=True, text=True, timeout=120)


def test_capfile_and_deploy_files_pass_ruby_c(project):
    require_tools("ruby")
    for path in (project / "Capfile", project / "config" / "deploy.rb", project / "config" / "deploy" / "fleet.rb"):
        check = subprocess.run(["ruby", "-c", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, f"{path.name}: {check.stderr}"


def test_settings_come_from_the_stack_and_the_hosts(project):
    settings = (project / "config" / "bench.json").read_text()
    assert '"repo_url": "ssh://git@10.213.0.5/srv/git/ecom-platform.git"' in settings
    assert '"user": "deploy"' in settings and '"public/assets"' in settings and '"db/data"' in settings
    known_hosts = (project.parent / "known_hosts").read_text().splitlines()
    assert known_hosts == [f"10.213.0.11 {HOST_KEY}", f"10.213.0.12 {HOST_KEY}"]


def test_setup_script_passes_shellcheck():
    require_tools("shellcheck")
    script = bench.setup_script(bench.Target.load(), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench's key")
    assert script.startswith("CAP_USER=deploy\n")
    assert "CAP_PUBLIC_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench'\"'\"'s key'" in script
    result = subprocess.run(["shellcheck", "--shell=bash", "--severity=style", "-"], input=script,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_dry_run_deploys_the_sha_with_bundle_precompile_migrate_and_a_parallel_restart(project):
    if shutil.which("cap") is None:
        pytest.skip("Debian's capistrano is not installed (make setup installs it)")
    done = cap(project, "fleet", "deploy", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for command in (f"git archive {SHA} |", "bundle install --local --quiet", "bundle exec rake assets:precompile",
                    "bundle exec rake db:migrate", "sudo -n /usr/bin/systemctl restart puma-cap-ecom-platform.service",
                    "ln -s /srv/cap/ecom-platform/releases/"):
        assert command in out, f"{command!r} not in the dry run:\n{out}"
    # Each step in its place: build before the switch, restart after it.
    assert out.index("assets:precompile") < out.index("deploy:symlink:release") < out.index("puma:restart")


def test_a_deploy_without_a_sha_stops_before_anything_runs(project):
    if shutil.which("cap") is None:
        pytest.skip("Debian's capistrano is not installed (make setup installs it)")
    done = cap(project, "fleet", "deploy", "--dry-run", sha=None)
    assert done.returncode != 0
    assert "CAP_BENCH_SHA is not set" in done.stdout + done.stderr
    assert "bundle install" not in done.stdout


def test_release_seconds_sums_the_apps_release_steps():
    out = "\n".join([
        "[executor] ecom-platform-1 ecom-platform-1-release-build: create ok (4.5 s)",
        "[executor] ecom-docs-1 ecom-docs-1-release-build: create ok (9.0 s)",
        "[executor] ecom-platform-2 ecom-platform-2-release-build: create ok (4.0 s)",
        "[executor] ecom-platform-1 ecom-platform-1-release-publish: create ok (3.5 s)",
        "[executor] ecom-platform-2 ecom-platform-2-release-publish: replace ok (3.0 s)",
        "[executor] ecom-platform-1 ecom-platform-1-nginx-site: create ok (1.0 s)",
    ])
    assert bench.release_seconds(out) == pytest.approx(15.0)
    with pytest.raises(bench.BenchError):
        bench.release_seconds("[executor] nothing to do: 40 remote resources up to date (0.1 s)")


def test_executor_summary_names_what_ran():
    out = "\n".join([
        "[up] deploy: 40 remote commands in the plan; running what changed",
        "[executor] ecom-platform-1 ecom-platform-1-release-build: replace ... (triggers changed)",
        "[executor] ecom-platform-1 ecom-platform-1-release-build: replace ok (2.5 s)",
        "[executor] done in 9.0 s: 0 create, 0 update, 1 replace, 0 delete, 39 unchanged",
    ])
    assert bench.executor_summary(out) == ("done in 9.0 s: 0 create, 0 update, 1 replace, 0 delete, 39 unchanged "
                                           "[ecom-platform-1-release-build 2.5]")
    assert bench.executor_summary("[executor] nothing to do: 40 remote resources up to date (0.1 s)") == \
        "nothing to do: 40 remote resources up to date (0.1 s)"
