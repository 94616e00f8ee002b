"""Releases for real: the build and publish steps run as root against the real Rails app,
with real puma behind a real nginx on loopback (see helpers.py for what differs from a host)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import destroy_host, kill_pids, make_host, pids_of_user

pytestmark = [pytest.mark.tools, pytest.mark.root]


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def asset_files(host) -> set[str]:
    return {p.name for p in (Path(host.spec.shared_dir) / "assets").glob("application-*.css")}


def stylesheet_of(page: str) -> str:
    match = re.search(r'href="/assets/(application-[0-9a-f]+\.css)"', page)
    assert match, page
    return match.group(1)


def test_each_release_rebuilds_only_what_changed(host, shas):
    build, publish = host.deploy(shas["v1"])
    out = ok(build)
    assert "updating: bundle install --local" in out
    assert "updating: assets:precompile\n" in out
    status, page = host.get("/")
    assert status == 200 and "version v1" in page
    v1_css = stylesheet_of(page)
    assert host.get(f"/assets/{v1_css}")[0] == 200                      # nginx serves shared/assets
    assert host.get("/health") == (200, "ok v1\n")
    v1 = host.current()
    assert (host.app_dir / "releases" / v1 / "REVISION").read_text() == shas["v1"] + "\n"
    assert v1.endswith("-" + shas["v1"][:12])
    assert (host.app_dir / "releases" / v1 / "public" / "assets").resolve() == Path(host.spec.shared_dir) / "assets"
    log_line = (host.app_dir / "revisions.log").read_text().splitlines()[-1]
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ deployed {shas['v1']} branch=main release={v1} by=root",
                        log_line)

    # Code only: no bundle, no precompile, nothing fetched (the clone brought every commit). The build boots the
    # release in the idle slot; the publish only switches to it.
    build, publish = host.deploy(shas["code-change"])
    out = ok(build)
    assert "bundle install skipped" in out and "assets:precompile skipped" in out
    assert "nothing fetched" in out and "booting: " in out
    assert "already (booted by the build, or kept as a standby)" in ok(publish) and "booting" not in publish.stdout
    # The same manifest as v1's, in another release: nothing for the asset cleanup to do.
    assert "shared/assets unchanged since its last cleanup" in publish.stdout
    status, page = host.get("/")
    assert "version code-change" in page and "Free delivery" in page
    assert stylesheet_of(page) == v1_css

    # Stylesheet changed: precompile, still no bundle; the old digest stays for old pages.
    build, _ = host.deploy(shas["asset-change"])
    out = ok(build)
    assert "bundle install skipped" in out and "updating: assets:precompile\n" in out
    page = host.get("/")[1]
    new_css = stylesheet_of(page)
    assert new_css != v1_css and {v1_css, new_css} <= asset_files(host)
    assert "font-weight: bold" in host.get(f"/assets/{new_css}")[1]

    # config/ is an asset input (initializers can change assets); the lock is untouched.
    build, _ = host.deploy(shas["config-change"])
    out = ok(build)
    assert "bundle install skipped" in out and "updating: assets:precompile\n" in out
    assert "Everything for your shop, delivered" in host.get("/")[1]

    # The same sha again: nothing fetched, built or restarted.
    before = (host.releases(), host.puma_pid())
    build, publish = host.deploy(shas["config-change"])
    assert "current already runs" in ok(build) and "nothing fetched or built" in build.stdout
    assert "nothing switched or restarted" in ok(publish)
    assert (host.releases(), host.puma_pid()) == before
    assert len(host.live_releases()) == 4


def test_keep_counts_live_releases_and_going_back_reuses_a_kept_one(host, shas):
    order = ["v1", "r1", "r2", "r3", "r4", "r5", "r6"]
    for tag in order:
        host.deploy(shas[tag])
    releases = host.releases()
    assert len(releases) == host.spec.keep_releases == 5
    assert sorted(host.live_releases()) == releases
    assert [host.release_sha(r) for r in releases] == [shas[t] for t in order[-5:]]
    assert host.current() == releases[-1]

    # Back to r3, still on disk: no fetch (the origin is not even reachable), no build.
    kept = releases[order[-5:].index("r3")]
    stamp = (host.app_dir / "releases" / kept).stat().st_mtime_ns
    host.with_sha(shas["r3"], repo_url="file:///nonexistent/origin.git")
    build = host.run("release-build")
    out = ok(build)
    assert f"release {kept} of {shas['r3'][:12]} is still on disk: reused" in out
    assert "bundle" not in out and "precompile" not in out and "fetch" not in out.replace("nothing fetched", "")
    publish = host.run("release-publish")
    ok(publish)
    assert host.current() == kept
    assert (host.app_dir / "releases" / kept).stat().st_mtime_ns == stamp
    assert "version r3" in host.get("/")[1]


def test_a_release_that_does_not_boot_fails_the_build_and_switches_nothing(host, shas):
    """The build boots the release in the idle slot, beside the live one: one that does not answer fails there,
    before any switch, and the live puma is never touched."""
    host.deploy(shas["r1"])
    good, good_pid, live = host.current(), host.puma_pid(), host.live_slot()
    host.with_sha(shas["broken-boot"], health_timeout=6)
    build = host.run("release-build")
    assert build.returncode == 1
    err = build.stderr
    idle = {"a": "b", "b": "a"}[live]
    assert f"did not answer 200 from slot {idle} within 6s" in err
    assert "reports_controller.rb:4" in err                             # what the app logged while it booted
    assert f"booting: {host.releases()[-1]} does not answer in slot {idle} (stopped again); nothing switched" in err
    assert host.current() == good and host.live_slot() == live and host.puma_pid() == good_pid
    assert host.slot_pid(idle) is None                                    # the broken release's puma is gone
    assert host.get("/health") == (200, "ok r1\n")
    broken = [r for r in host.releases() if r.endswith(shas["broken-boot"][:12])]
    assert len(broken) == 1 and broken[0] not in host.live_releases()

    # The engine starts no publish after a failed build; run by hand, it boots the release itself and fails
    # the same way, still before the switch.
    publish = host.run("release-publish")
    assert publish.returncode == 1
    assert "does not boot; nothing switched, current is still " + good in publish.stderr
    assert host.current() == good and host.puma_pid() == good_pid
    assert (host.app_dir / "meta" / broken[0] / "failed").exists()
    assert f"failed {shas['broken-boot']} branch=main release={broken[0]}" in (host.app_dir / "revisions.log").read_text()

    # A release that never went live does not count: the next good deploy sweeps it.
    _, publish = host.deploy(shas["r2"])
    assert f"removed release {broken[0]} (never went live)" in ok(publish)
    assert broken[0] not in host.releases()


def test_a_release_that_fails_after_the_switch_is_switched_back_at_once(host, shas):
    """An afterPublish hook fails: nginx goes back to the slot that served before, which never stopped."""
    host.deploy(shas["r1"])
    good, good_pid, live = host.current(), host.puma_pid(), host.live_slot()
    host.with_sha(shas["r2"], hooks=(("afterPublish", "echo no >&2; exit 4", False, 60),))
    ok(host.run("release-build"))
    publish = host.run("release-publish")
    assert publish.returncode == 1, publish.stdout
    assert f"rolling-back: nginx -> slot {live} again" in publish.stdout
    assert f"rolling-back: current -> releases/{good}" in publish.stdout
    assert host.current() == good and host.live_slot() == live and host.puma_pid() == good_pid
    assert host.get("/health") == (200, "ok r1\n")
    assert f"rolled-back {shas['r1']} branch=main release={good}" in (host.app_dir / "revisions.log").read_text()


def test_an_interrupted_boot_stops_the_slot_and_switches_nothing(host, shas):
    host.deploy(shas["r1"])
    good, good_pid, live = host.current(), host.puma_pid(), host.live_slot()
    idle = {"a": "b", "b": "a"}[live]
    host.with_sha(shas["broken-boot"], health_timeout=120)
    job = host.start("release-build")
    seen = []
    for line in job.stdout:                                 # wait until it boots the release
        seen.append(line)
        if "booting: " in line:
            break
    job.send_signal(signal.SIGTERM)
    rest, _ = job.communicate(timeout=60)
    out = "".join(seen) + rest
    assert job.returncode != 0
    assert "booting: interrupted by SIGTERM" in out
    assert host.current() == good and host.live_slot() == live and host.puma_pid() == good_pid
    assert host.slot_pid(idle) is None and not (host.app_dir / "slots" / f"{idle}.ready").exists()
    assert host.get("/health") == (200, "ok r1\n")


def test_a_standby_makes_going_back_a_switch(host, shas):
    """After a publish the slot switched away from keeps the previous release running: a rollback to it boots
    nothing (the same puma serves again), and a deploy of anything else boots over the standby."""
    host.deploy(shas["r1"])
    r1, r1_pid, r1_slot = host.current(), host.puma_pid(), host.live_slot()
    _, publish = host.deploy(shas["r2"])
    assert f"slot {r1_slot} keeps running {r1} as a standby" in ok(publish)
    r2_slot = host.live_slot()
    assert r2_slot != r1_slot and host.slot_pid(r1_slot) == r1_pid        # still up, no longer served
    assert host.get("/health") == (200, "ok r2\n")
    build, publish = host.deploy(shas["r1"])
    assert f"booting: slot {r1_slot} already runs {r1} (a standby): nothing booted" in ok(build)
    assert f"slot {r1_slot} runs {r1} already" in ok(publish)
    assert host.live_slot() == r1_slot and host.puma_pid() == r1_pid and host.current() == r1
    assert host.get("/health") == (200, "ok r1\n")
    # A config change makes the standby stale: the next rollback to it boots again.
    host.with_sha(shas["r1"], puma_threads_max=3)
    ok(host.run("puma-config"))
    host.with_sha(shas["r2"], puma_threads_max=3)
    build, _ = host.deploy(shas["r2"])
    assert "booting: " in ok(build) and "(a standby)" not in build.stdout
    assert host.get("/health") == (200, "ok r2\n")


def test_without_a_standby_the_old_slot_stops(host, shas):
    host.deploy(shas["r1"])
    r1_slot = host.live_slot()
    host.with_sha(shas["r2"], keep_standby=False)
    _, publish = host.deploy(shas["r2"])
    assert f"finishing: slot {r1_slot} stopped" in ok(publish)
    assert host.slot_pid(r1_slot) is None and host.live_slot() != r1_slot
    assert host.get("/health") == (200, "ok r2\n")


def test_a_build_that_fails_leaves_current_and_no_half_made_release(host, shas):
    host.deploy(shas["config-change"])
    good, releases = host.current(), host.releases()
    manifest = next((Path(host.spec.shared_dir) / "assets").glob(".sprockets-manifest-*.json")).read_text()
    host.with_sha(shas["broken-build"])
    build = host.run("release-build")
    assert build.returncode != 0
    assert "theme_that_was_never_committed" in build.stdout + build.stderr
    assert "removed the half-made release" in build.stderr
    assert host.current() == good and host.releases() == releases
    assert host.get("/health") == (200, "ok config-change\n")
    # The running release's manifest is back in shared/assets.
    assert next((Path(host.spec.shared_dir) / "assets").glob(".sprockets-manifest-*.json")).read_text() == manifest
    publish = host.run("release-publish")
    assert publish.returncode == 1 and "no built release of" in publish.stderr
    assert host.current() == good


def wait_for_job(account, word: str, timeout: float = 60) -> None:
    """Wait until a process of the deploy user runs `word` (bundle install, rake...)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in pids_of_user(account.uid):
            try:
                if word in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                    return
            except OSError:
                continue
        time.sleep(0.02)
    raise AssertionError(f"no process running {word!r}")


def test_a_build_interrupted_during_bundle_is_cleaned_up(host, shas, deploy_account):
    host.with_sha(shas["v1"])
    job = host.start("release-build")
    wait_for_job(deploy_account, "bundle install")
    os.kill(job.pid, signal.SIGTERM)                       # pulumi cancelled, or the session died
    out, _ = job.communicate(timeout=60)
    assert job.returncode != 0
    assert "interrupted by SIGTERM" in out and "removed the half-made release" in out
    assert host.releases() == [] and host.current() is None
    assert not [p for p in pids_of_user(deploy_account.uid) if b"bundle" in Path(f"/proc/{p}/cmdline").read_bytes()]
    build, _ = host.deploy(shas["v1"])                       # the next run converges
    assert "bundle install --local" in ok(build)
    assert host.get("/health") == (200, "ok v1\n")


def test_a_build_killed_during_precompile_leaves_current_and_no_stale_lock(host, shas, deploy_account):
    host.deploy(shas["code-change"])
    good = host.current()
    host.with_sha(shas["asset-change"])
    job = host.start("release-build")
    wait_for_job(deploy_account, "assets:precompile")
    # SIGKILL: no trap runs. Kill the script and its job (the whole "host" dies).
    os.killpg(job.pid, signal.SIGKILL)
    kill_pids([p for p in pids_of_user(deploy_account.uid)
               if b"assets:precompile" in Path(f"/proc/{p}/cmdline").read_bytes()])
    job.communicate(timeout=30)
    half_made = [r for r in host.releases() if r != good]
    assert len(half_made) == 1                                     # left behind, not built
    assert host.current() == good and host.get("/health") == (200, "ok code-change\n")
    assert (host.app_dir / ".deploy.lock").exists()               # the lock file stays; the lock does not
    started = time.monotonic()
    build = host.run("release-build")
    out = ok(build)
    assert "waiting" not in out and time.monotonic() - started < 60
    assert f"removed unfinished release {half_made[0]}" in out
    ok(host.run("release-publish"))
    assert host.current() != good and "version asset-change" in host.get("/")[1]


def test_concurrent_deploys_are_serialised_by_the_lock(host, shas):
    host.with_sha(shas["v1"])
    jobs = [host.start("release-build")]
    time.sleep(0.3)
    jobs.append(host.start("release-build"))
    outs = [job.communicate(timeout=120)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outs
    waited = [out for out in outs if "another deploy of ecom-platform holds the lock" in out]
    built = [out for out in outs if "updating: assets:precompile" in out]
    assert len(waited) == 1 and len(built) == 1 and waited != built
    assert "still on disk: reused" in waited[0]             # it found the other one's work, did none
    assert len(host.releases()) == 1


def test_a_puma_config_change_restarts_puma_once(host, shas):
    host.deploy(shas["v1"])
    pid = host.puma_pid()
    host.with_sha(shas["v1"], puma_threads_max=3)
    assert "updated; puma restarts at the next publish" in ok(host.run("puma-config"))
    out = ok(host.run("release-publish"))
    assert "booted before puma's config, units or environment changed" in out
    assert host.puma_pid() not in (None, pid)
    assert host.get("/health")[0] == 200
    assert not Path(host.spec.restart_flag).exists()
    again = ok(host.run("release-publish"))
    assert "nothing switched or restarted" in again


@pytest.fixture
def docs_host(deploy_account, origin):
    made = make_host(deploy_account, origin, app="ecom-docs")
    try:
        made.provision()
        yield made
    finally:
        destroy_host(made)


def test_the_docs_app_deploys_too(docs_host, origin):
    shas = origin["shas"]["ecom-docs"]
    docs_host.deploy(shas["v1"])
    assert "version v1" in docs_host.get("/")[1]
    build, _ = docs_host.deploy(shas["docs-change"])
    assert "assets:precompile skipped" in ok(build)
    assert "Delivery times" in docs_host.get("/")[1]


def test_linked_dirs_and_files_are_settings(deploy_account, origin):
    made = make_host(deploy_account, origin, linked_dirs=("log", "tmp/pids", "tmp/sockets", "tmp/cache", "storage"),
                     linked_files=("config/master.key",))
    try:
        made.provision()                       # layout makes shared/storage and shared/config for them
        shared = Path(made.spec.shared_dir)
        assert (shared / "storage").is_dir() and (shared / "storage").stat().st_uid == deploy_account.uid
        made.with_sha(origin["shas"]["ecom-platform"]["v1"])
        build = made.run("release-build")      # the linked file is the operator's to put there first
        assert build.returncode != 0
        assert f"linked file {shared}/config/master.key does not exist" in build.stderr
        assert made.releases() == []
        subprocess.run(["runuser", "-u", deploy_account.user, "--", "sh", "-c",
                        f"echo k > {shared}/config/master.key"], check=True)
        made.deploy(origin["shas"]["ecom-platform"]["v1"])
        release = made.app_dir / "releases" / made.current()
        assert os.readlink(release / "config" / "master.key") == f"{shared}/config/master.key"
        assert os.readlink(release / "storage") == f"{shared}/storage"
        assert (release / "public" / "assets").resolve() == shared / "assets"   # always, whatever the setting
        assert made.get("/health")[0] == 200
    finally:
        destroy_host(made)


def test_the_mirror_follows_a_new_url_and_fetches_only_what_it_lacks(deploy_account, origin):
    made = make_host(deploy_account, origin)
    try:
        made.provision()
        build, _ = made.deploy(origin["shas"]["ecom-platform"]["v1"])
        assert "cloning" in ok(build) and "not on branch" not in build.stderr
        # Another origin with two commits the mirror lacks: its URL is taken over, then it fetches them.
        url, shas = stylesheet_history(origin, made.base, deploy_account.user, 2)
        made.with_sha(shas[-1], repo_url=url)
        build, _ = made.deploy(shas[-1])
        out = ok(build)
        assert f"mirror now fetches from {url}" in out and f"fetching from {url}" in out
        assert "not on branch" not in build.stderr and made.current().endswith(shas[-1][:12])
        # The older of the two came with that fetch.
        build, _ = made.deploy(shas[0])
        assert "is in the mirror: nothing fetched" in ok(build) and "mirror now fetches" not in build.stdout
        # A commit that no fetch brings fails the build; the live release stays.
        live = made.current()
        failed = made.with_sha("0123456789" * 4).run("release-build")
        assert failed.returncode == 1 and f"is not in {url}" in failed.stderr
        assert made.current() == live
    finally:
        destroy_host(made)


def stylesheet_history(origin: dict, base: Path, owner: str, count: int) -> tuple[str, list[str]]:
    """A copy of ecom-platform's origin with `count` more commits, each changing the stylesheet
    (the shared origin has only two stylesheets); returns its URL and the new shas, oldest first.
    Made by the deploy user, who owns the origin (git serves only its owner's repositories)."""
    home = base / "assets-origin"
    home.mkdir()
    subprocess.run(["chown", f"{owner}:", str(home)], check=True)
    repo, work = home / "origin.git", home / "work"
    env = ["PATH=/usr/bin:/bin", f"HOME={home}", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
           "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t.invalid", "GIT_COMMITTER_NAME=t",
           "GIT_COMMITTER_EMAIL=t@t.invalid"]

    def git(*args: str, cwd: Path = home, extra: tuple[str, ...] = ()) -> str:
        done = subprocess.run(["runuser", "-u", owner, "--", "env", "-i", f"--chdir={cwd}", *env, *extra, "git",
                               *args],
                              check=False, capture_output=True, text=True)
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    git("clone", "--quiet", "--bare", f"{origin['dir']}/ecom-platform.git", str(repo))
    git("clone", "--quiet", "--branch", "main", str(repo), str(work))
    git("reset", "--quiet", "--hard", "config-change", cwd=work)     # main ends with commits that do not build
    shas = []
    css = work / "app" / "assets" / "stylesheets" / "application.css"
    for i in range(count):
        text = css.read_text() + f".change-{i} {{ margin: {i + 1}px; }}\n"
        subprocess.run(["runuser", "-u", owner, "--", "tee", str(css)], input=text, text=True, check=True,
                       capture_output=True)
        # One commit an hour: git archive dates files by commit, and sprockets caches a file's digest
        # by path and mtime (seconds), so two commits in one second would compile the same stylesheet.
        when = f"@{1800000000 + i * 3600} +0000"
        git("commit", "--quiet", "--no-verify", "-am", f"stylesheet change {i}", cwd=work,
            extra=(f"GIT_AUTHOR_DATE={when}", f"GIT_COMMITTER_DATE={when}"))
        shas.append(git("rev-parse", "HEAD", cwd=work))
    git("push", "--quiet", "--force", "origin", "main", cwd=work)
    return f"file://{repo}", shas


def test_shared_assets_keep_only_what_the_kept_releases_use(deploy_account, origin):
    made = make_host(deploy_account, origin, keep_releases=2)
    try:
        made.provision()
        url, shas = stylesheet_history(origin, made.base, deploy_account.user, 5)
        made.with_sha(shas[0], repo_url=url)
        stylesheets = []
        for sha in shas:
            build, publish = made.deploy(sha)
            assert "updating: assets:precompile\n" in ok(build)
            stylesheets.append(stylesheet_of(made.get("/")[1]))
        assert len(set(stylesheets)) == 5
        assert "asset file(s) no kept release uses" in ok(publish)
        kept = made.live_releases()
        assert len(kept) == 2 and made.current() in kept
        # Only the two kept releases' stylesheets are left, and nothing their manifests do not name.
        assert asset_files(made) == set(stylesheets[-2:])
        listed = set()
        for manifest in (made.app_dir / "meta").glob("*/.sprockets-manifest-*.json"):
            names = json.loads(manifest.read_text())["assets"].values()
            listed |= {manifest.name} | set(names) | {f"{n}.gz" for n in names}
        on_disk = {str(p.relative_to(Path(made.spec.shared_dir) / "assets"))
                   for p in (Path(made.spec.shared_dir) / "assets").rglob("*") if not p.is_dir()}
        assert on_disk and on_disk <= listed
        for css in stylesheets[-2:]:
            assert made.get(f"/assets/{css}")[0] == 200
        # The files are the deploy user's: it removed them, root never touched shared/assets.
        assert all(p.stat().st_uid == deploy_account.uid for p in (Path(made.spec.shared_dir) / "assets").rglob("*"))
        # Back to the other kept release: neither the kept manifests nor the files changed since the cleanup, so
        # none runs; a file left there changes what the folder holds, and the next publish removes it.
        _, publish = made.deploy(shas[-2])
        assert "shared/assets unchanged since its last cleanup" in ok(publish)
        stray = Path(made.spec.shared_dir) / "assets" / "stray.css"
        subprocess.run(["runuser", "-u", deploy_account.user, "--", "touch", str(stray)], check=True)
        _, publish = made.deploy(shas[-1])
        assert "removed 1 asset file(s) no kept release uses" in ok(publish) and not stray.exists()
    finally:
        destroy_host(made)
