"""Issue 12 items 2-3 and issue 15 items 3-5 on a real host: what the deploy user controls never
becomes root's, puma is restarted for what it runs (not for what `current` says), and runs that were
killed leave nothing unrecorded or half-made (see helpers.py for what differs from a host)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from .helpers import script_env

pytestmark = [pytest.mark.tools, pytest.mark.root]


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def as_deploy(host, *argv: str) -> None:
    subprocess.run(["runuser", "-u", host.account.user, "--", *argv], check=True)


def test_a_manifest_name_with_a_newline_cannot_forge_a_release_sha(host, shas):
    assets = Path(host.spec.shared_dir) / "assets"
    forged = shas["r1"]
    # The app (the deploy user) plants a file whose name splits into `sha` when read by lines,
    # a file `sha` holding the sha it wants its release to pass for, and the other two pieces.
    as_deploy(host, "sh", "-c", 'cd "$1" && printf "%s\\n" "$2" > sha && touch "$3" .sprockets-manifest-x .json',
              "sh", str(assets), forged, ".sprockets-manifest-x\nsha\n.json")
    assert (assets / "sha").read_text() == forged + "\n"
    build = host.with_sha(shas["v1"]).run("release-build")
    out = ok(build)
    [release] = host.releases()
    assert host.release_sha(release) == shas["v1"]              # not the forged sha
    assert "not a sprockets manifest" in out
    ok(host.run("release-publish"))
    meta = host.app_dir / "meta" / release
    assert sorted(p.name for p in meta.glob(".sprockets-manifest-*")) != []
    assert all("\n" not in p.name for p in meta.iterdir())
    # A later deploy of the forged sha builds it from the repository, not by reusing v1's release.
    build, _ = host.deploy(forged)
    assert "still on disk: reused" not in build.stdout
    assert host.get("/health") == (200, "ok r1\n")


def test_pumas_environment_file_is_in_a_folder_only_root_can_write(host):
    unit = Path(host.spec.unit_path).read_text()
    [line] = [line for line in unit.splitlines() if line.startswith("EnvironmentFile=")]
    env_file = Path(line.split("=", 1)[1].lstrip("-"))
    folder = env_file.parent
    assert folder.is_dir() and not folder.is_symlink()
    info = folder.stat()
    assert info.st_uid == 0 and info.st_mode & 0o022 == 0, oct(info.st_mode)
    for parent in folder.parents:                       # no folder above it the app could swap either
        if parent == Path("/"):
            break
        if parent.is_relative_to(host.app_dir.parent):
            assert parent.stat().st_uid == 0, parent
    # The deploy user can neither write the file nor plant a link in its place.
    planted = subprocess.run(["runuser", "-u", host.account.user, "--", "ln", "-s", "/etc/shadow", str(env_file)],
                             capture_output=True, check=False)
    assert planted.returncode != 0 and not env_file.is_symlink()


def revisions(host) -> list[str]:
    return (host.app_dir / "revisions.log").read_text().splitlines()


def switch_by_hand(host, release: str) -> None:
    link = host.app_dir / ".current.by-hand"
    link.symlink_to(host.app_dir / "releases" / release)
    os.replace(link, host.app_dir / "current")


def test_publish_restarts_puma_when_it_runs_another_release_than_current(host, shas):
    host.deploy(shas["v1"])
    v1 = host.current()
    host.deploy(shas["r1"])
    pid = host.puma_pid()
    assert os.path.realpath(f"/proc/{pid}/cwd") == str(host.app_dir / "releases" / host.current())
    # current back on v1 (a publish killed between the switch and the restart, or a hand edit):
    # v1 went live before, yet puma still runs r1.
    switch_by_hand(host, v1)
    out = ok(host.with_sha(shas["v1"]).run("release-publish"))
    assert "nothing switched or restarted" not in out
    assert f"current -> {v1}, but the live slot ({host.live_slot()}) runs " not in out   # it switched since
    assert f"current -> {v1}, but the live slot (" in out
    assert host.puma_pid() not in (None, pid)
    assert host.get("/health") == (200, "ok v1\n")
    assert f"unfinished {shas['v1']} branch=main release={v1}" in "\n".join(revisions(host))
    # Now puma runs what current says: nothing to do.
    assert "nothing switched or restarted" in ok(host.run("release-publish"))


def test_a_publish_killed_after_the_switch_is_on_record_and_the_next_run_finishes_it(host, shas):
    host.deploy(shas["r1"])
    good = host.current()
    host.with_sha(shas["r2"], hooks=(("afterPublish", "sleep 60", False, 120),))
    ok(host.run("release-build"))
    new = next(r for r in host.releases() if r != good)
    job = host.start("release-publish")
    for line in job.stdout:                                 # switched, in its afterPublish hook
        if "hook afterPublish-1" in line:
            break
    os.killpg(job.pid, signal.SIGKILL)                      # no trap runs: the host lost power, say
    job.communicate(timeout=30)
    assert host.current() == new and host.get("/health") == (200, "ok r2\n")
    log = "\n".join(revisions(host))
    assert f"switching {shas['r2']} branch=main release={new}" in log    # the intent
    assert f"deployed {shas['r2']}" not in log                          # no outcome yet
    live_pid = host.puma_pid()

    host.with_sha(shas["r2"], hooks=())                    # pulumi runs the failed step again
    publish = host.run("release-publish")
    out = ok(publish)
    assert f"current -> {new}, which never went live" in out
    # The live slot already runs the release: nothing booted again, the same puma goes on serving.
    assert "serves it already (an unfinished publish)" in out and host.puma_pid() == live_pid
    assert host.current() == new and new in host.live_releases()
    whats = [line.split()[1] for line in revisions(host)]
    assert whats == ["switching", "deployed", "switching", "unfinished", "switching", "deployed"], revisions(host)


def test_a_killed_builds_empty_release_folder_is_swept_by_the_next_run(host, shas, deploy_account):
    host.deploy(shas["v1"])
    live = host.current()
    # What a build killed right after making its folders leaves: meta with the sha, an empty release.
    left = "20000101000000-" + shas["r1"][:12]
    (host.app_dir / "meta" / left).mkdir()
    (host.app_dir / "meta" / left / "sha").write_text(shas["r1"] + "\n")
    (host.app_dir / "releases" / left).mkdir()
    os.chown(host.app_dir / "releases" / left, deploy_account.uid, deploy_account.uid)
    # The next run is a publish (puma's config changed, say): it sweeps too.
    out = ok(host.run("release-publish"))
    assert f"removed unfinished release {left}" in out
    assert host.releases() == [live] and not (host.app_dir / "meta" / left).exists()


def run_with_fake_systemctl(host, step: str, calls: Path) -> str:
    """Run `step` as rendered for a systemd host, with `systemctl` an exported shell function that
    records its arguments (this machine's systemd is not PID 1): is-enabled answers from a marker per unit."""
    host.spec = replace(host.spec, service_manager="systemd")
    stub = ('() { printf "%s\\n" "$*" >> ' + str(calls) + '; case "$1" in '
            'is-enabled) [ -e ' + str(calls) + '."${@: -1}" ] ;; enable) touch ' + str(calls) + '."${@: -1}" ;; '
            'show) echo no ;; *) return 0 ;; esac; }')
    env = {**script_env(), "BASH_FUNC_systemctl%%": stub}
    result = subprocess.run(["bash", "-c", host.steps()[step].create], capture_output=True, text=True, env=env,
                            timeout=60, check=False)
    return ok(result)


def test_nginx_and_puma_are_enabled_for_boot_on_every_run(host, tmp_path):
    calls = tmp_path / "systemctl.calls"
    out = run_with_fake_systemctl(host, "nginx-site", calls)        # the site is unchanged: enabled anyway
    assert "nginx-site: nginx enabled" in out
    assert "enable --quiet nginx" in calls.read_text().splitlines()
    # Debian's unit never restarts a dead nginx: the step's drop-in does (once, then unchanged).
    dropin = Path(host.spec.systemd_dir) / "nginx.service.d" / "ecom-restart.conf"
    assert "Restart=on-failure" in dropin.read_text().splitlines() and "daemon-reload" in calls.read_text()
    assert "nginx-site: nginx restarts when it dies" in out
    assert "nginx restarts when it dies" not in run_with_fake_systemctl(host, "nginx-site", calls)
    run_with_fake_systemctl(host, "puma-unit", calls)
    # Both slots' sockets: the live slot's puma starts with its first request after a reboot.
    assert {f"enable --quiet {host.spec.socket_unit(slot)}" for slot in ("a", "b")} <= set(calls.read_text().splitlines())
    calls.write_text("")
    assert "nginx enabled" not in run_with_fake_systemctl(host, "nginx-site", calls)   # already enabled


def test_a_puma_from_before_the_slots_is_taken_over_by_the_next_publish(host, shas):
    """A host deployed before the slots: one puma on shared/tmp/sockets/puma.sock, started in `current`. The next
    publish (same sha) boots the release in a slot beside it, switches nginx's link, then stops the old puma."""
    host.deploy(shas["v1"])
    v1 = host.current()
    for slot in ("a", "b"):                                   # back to the old shape: no slot runs
        pid = host.slot_pid(slot)
        if pid:
            os.kill(pid, signal.SIGTERM)
    legacy_rb = host.base / "legacy-puma.rb"
    legacy_rb.write_text(f"directory '{host.spec.current_dir}'\nenvironment 'production'\n"
                         f"bind 'unix://{host.spec.legacy_socket_path}?umask=0007'\n"
                         f"pidfile '{host.spec.legacy_pid_file}'\nworkers 1\nthreads 1, 2\n")
    legacy_rb.chmod(0o644)
    subprocess.Popen(["setsid", "runuser", "-u", host.account.user, "--", "env", f"--chdir={host.spec.current_dir}",
                      "RAILS_ENV=production", "SECRET_KEY_BASE=" + "x" * 64, "bundle", "exec", "puma", "-C",
                      str(legacy_rb)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    link = Path(host.spec.live_socket)
    tmp = link.with_name("puma.sock.legacy")
    tmp.symlink_to(host.spec.legacy_socket_path)
    os.replace(tmp, link)
    for _ in range(300):
        if host.get("/health")[0] == 200:
            break
        time.sleep(0.1)
    legacy_pid = int(Path(host.spec.legacy_pid_file).read_text())
    assert host.get("/health") == (200, "ok v1\n") and host.live_slot() is None

    out = ok(host.run("release-publish"))
    assert "puma runs " + shas["v1"][:12] + " from before the slots: moving it to a slot" in out
    assert host.live_slot() == "a" and host.current() == v1 and host.get("/health") == (200, "ok v1\n")
    for _ in range(100):                                      # the old puma stops (gracefully)
        if not Path(f"/proc/{legacy_pid}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{legacy_pid}").exists()
    assert "nothing switched or restarted" in ok(host.run("release-publish"))
