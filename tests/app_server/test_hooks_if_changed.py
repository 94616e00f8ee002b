"""`ifChanged` hooks for real (issue 16): on a host with a real git mirror, `bin/rails db:migrate` with
`ifChanged: [db/migrate, db/schema.rb]` runs on the first deploy, is skipped (and leaves no once-marker) for a
sha that touches neither path, runs for one that adds a migration, and runs on a rollback to a release whose
migrations differ; an afterPublish hook follows the stylesheet the same way; when the live release has no record
of the hook (a changed command) or its sha is not in the mirror, the hook runs (when in doubt, run)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import destroy_host, make_host, make_public_tempdir, ok
from .helpers import hook_runs as runs

pytestmark = [pytest.mark.tools, pytest.mark.root]

LINKED = ("log", "tmp/pids", "tmp/sockets", "tmp/cache", "db/data")
MIGRATE = ("afterBuild", "echo migrate >> log/hook-runs && bin/rails db:migrate", True, 600,
           ("db/migrate", "db/schema.rb"))
STYLE = ("afterPublish", 'echo "style $ECOM_SHA" >> log/hook-runs', False, 60, ("app/assets/stylesheets",))
MIGRATION = """class AddNoteToOffers < ActiveRecord::Migration[6.1]
  def change
    add_column :offers, :note, :string
  end
end
"""


def deploy(host, sha: str) -> tuple[str, str]:
    host.with_sha(sha)
    return ok(host.run("release-build")), ok(host.run("release-publish"))


def hook_line(out: str, hook: str) -> str:
    """The one line that says whether `hook` (an id prefix) runs, or why it was skipped."""
    lines = [line for line in out.splitlines() if re.search(rf"hook {hook}-\S+ (runs|skipped)", line)]
    assert len(lines) == 1, out
    return lines[0]


def commit_migration(origin: dict, user: str, parent: str) -> str:
    """A commit on top of `parent` that adds a migration, pushed to the origin as the deploy user (its owner)."""
    base = make_public_tempdir("ecom-migration-")
    src = base / "src"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@ecom.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@ecom.invalid", "GIT_CONFIG_NOSYSTEM": "1"}

    def git(cwd: Path, *args: str) -> str:
        return subprocess.run(["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                               "git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()
    try:
        shutil.chown(base, user)
        git(base, "clone", "--quiet", "--no-checkout", f"{origin['dir']}/ecom-platform.git", str(src))
        git(src, "checkout", "--quiet", parent)
        path = src / "db" / "migrate" / "20240201000000_add_note_to_offers.rb"
        path.write_text(MIGRATION)
        shutil.chown(path, user)
        git(src, "add", "db/migrate")
        git(src, "commit", "--quiet", "-m", "Add a note to offers (a migration)")
        git(src, "push", "--quiet", "origin", "HEAD:refs/heads/test-if-changed")
        return git(src, "rev-parse", "HEAD")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def host(deploy_account, origin):
    made = make_host(deploy_account, origin, linked_dirs=LINKED, hooks=(MIGRATE, STYLE), runs_once_hooks=True)
    try:
        made.provision()
        yield made
    finally:
        destroy_host(made)


def test_hooks_run_only_when_their_paths_changed_since_the_live_release(host, origin, shas, deploy_account):
    # First deploy: no live release to compare with, both hooks run.
    build, publish = deploy(host, shas["v1"])
    v1 = host.current()
    assert "runs: no live release to compare db/migrate, db/schema.rb with" in hook_line(build, "afterBuild-1")
    assert "runs: no live release" in hook_line(publish, "afterPublish-1")
    assert runs(host) == ["migrate", f"style {shas['v1']}"]
    assert host.get("/offers") == (200, "offer: Free delivery over 50 EUR\n")

    # A view change: neither path changed, neither hook runs, and the skip leaves no once-marker.
    build, publish = deploy(host, shas["code-change"])
    code = host.current()
    assert hook_line(build, "afterBuild-1").endswith(
        f"hook {host.spec.hooks_at('afterBuild')[0][0]} skipped: db/migrate, db/schema.rb unchanged since {v1} "
        f"({shas['v1'][:12]})")
    assert f"skipped: app/assets/stylesheets unchanged since {v1}" in hook_line(publish, "afterPublish-1")
    assert runs(host) == ["migrate", f"style {shas['v1']}"]
    assert not (host.app_dir / "hooks" / shas["code-change"]).exists()
    assert "version code-change" in host.get("/")[1]

    # A stylesheet change: the afterPublish hook runs, the migration still does not.
    build, publish = deploy(host, shas["asset-change"])
    asset = host.current()
    assert f"skipped: db/migrate, db/schema.rb unchanged since {code}" in hook_line(build, "afterBuild-1")
    assert f"runs: app/assets/stylesheets changed since {code}" in hook_line(publish, "afterPublish-1")
    assert runs(host)[2:] == [f"style {shas['asset-change']}"]

    # A new migration: db:migrate runs and really migrates (the hook's own log says so).
    migration = commit_migration(origin, deploy_account.user, shas["asset-change"])
    build, publish = deploy(host, migration)
    assert f"runs: db/migrate, db/schema.rb changed since {asset}" in hook_line(build, "afterBuild-1")
    assert "skipped: app/assets/stylesheets unchanged" in hook_line(publish, "afterPublish-1")
    assert runs(host)[3:] == ["migrate"]
    hook_log = next((host.app_dir / "hooks" / migration).glob("afterBuild-1-*.log")).read_text()
    assert "AddNoteToOffers: migrated" in hook_log
    assert host.get("/offers") == (200, "offer: Free delivery over 50 EUR\n")
    migrated = host.current()

    # A rollback to the view change: the kept release is reused, and both paths differ from the live one's.
    build, publish = deploy(host, shas["code-change"])
    assert "reused" in build and host.current() == code
    assert f"runs: db/migrate, db/schema.rb changed since {migrated}" in hook_line(build, "afterBuild-1")
    assert f"runs: app/assets/stylesheets changed since {migrated}" in hook_line(publish, "afterPublish-1")
    assert runs(host)[4:] == ["migrate", f"style {shas['code-change']}"]

    # Each release has each hook on record (it ran, or nothing it watches changed); a changed command is a
    # new hook, which no live release has on record: it runs once, though its paths did not change.
    migrate_id = host.spec.hooks_at("afterBuild")[0][0]
    assert all((host.app_dir / "meta" / rel / f"hook.{migrate_id}").is_file() for rel in (v1, code, asset, migrated))
    host.with_sha(shas["r1"], hooks=(("afterBuild", "echo migrate2 >> log/hook-runs", True, 60, MIGRATE[4]), STYLE))
    build, _ = deploy(host, shas["r1"])
    r1 = host.current()
    assert f"runs: {code} has no record of it (a new or changed hook)" in hook_line(build, "afterBuild-1")
    assert runs(host)[6:] == ["migrate2", f"style {shas['r1']}"]         # r1 has asset-change's stylesheet

    # The live release's sha is not in the mirror (here: its record names a commit nobody has): run.
    unknown = "0" * 40
    (host.app_dir / "meta" / r1 / "sha").write_text(unknown + "\n")
    build, _ = deploy(host, shas["r2"])
    assert f"runs: could not compare db/migrate, db/schema.rb with {r1} ({unknown[:12]}; git exit 128)" in \
        hook_line(build, "afterBuild-1")
    assert runs(host)[8:] == ["migrate2", f"style {shas['r2']}"]
    assert os.path.isfile(host.app_dir / "hooks" / shas["r2"] / f"{host.spec.hooks_at('afterBuild')[0][0]}.done")
