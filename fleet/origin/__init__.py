"""The git origin of the local fleet: bare repositories of real Rails 6.1 apps.

The app sources are small text files kept here (`skeleton/` is trimmed `rails new
--skip-bundle --skip-javascript` output shared by both apps, `apps/<app>/<change>/` the
files each commit adds or replaces). `build_origin` replays a fixed history into a bare
repository, one commit per `Change`, tagged with the change's name. Author, committer,
dates and file modes are fixed and git's own configuration is ignored, so on a given
machine every build yields the same commit shas and tests can name commits by tag.

The only generated file is `Gemfile.lock` (`bundle lock --local` at the first commit):
it pins the gem versions Debian installed on this machine, which is what makes
`bundle install --local` work offline on hosts built from the same packages.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOURCES = Path(__file__).resolve().parent
SKELETON = SOURCES / "skeleton"
APPS_DIR = SOURCES / "apps"

BRANCH = "main"
AUTHOR_NAME = "Ecom Origin"
AUTHOR_EMAIL = "origin@ecom.invalid"
EPOCH = 1704067200  # 2024-01-01T00:00:00Z; commit i is dated EPOCH + i hours


@dataclass(frozen=True)
class Change:
    tag: str
    message: str
    overlay: str | None = None
    """Folder under `apps/<app>/` whose files are copied over the tree (None: version bump only)."""


HISTORIES: dict[str, tuple[Change, ...]] = {
    "ecom-platform": (
        Change("v1", "First version: home page showing its version, /health, stylesheet", "v1"),
        Change("code-change", "Show the weekly offer (a view change only)", "code-change"),
        Change("asset-change", "Style the weekly offer (stylesheet change)", "asset-change"),
        Change("config-change", "New tagline (locale config; Gemfile and Gemfile.lock unchanged)", "config-change"),
        # Six routine code-only releases: enough shas to push old releases out of keep_releases.
        *(Change(f"r{i}", f"Routine release {i} (code only)") for i in range(1, 7)),
        Change("broken-boot", "Add reports (the app no longer boots: missing module)", "broken-boot"),
        Change("broken-build", "Theme stylesheet (assets:precompile fails: missing file)", "broken-build"),
    ),
    "ecom-docs": (
        Change("v1", "First version: docs index showing its version, /health", "v1"),
        Change("docs-change", "Document delivery times (a view change only)", "docs-change"),
    ),
}


class OriginError(RuntimeError):
    """A build step failed; the message names the step and carries its output."""


def _version_rb(app: str, tag: str) -> str:
    # Every commit rewrites this file, so each tag is a distinct commit that shows its name.
    return ("# Written by fleet/origin for each commit: the app and the tag it was built as.\n"
            f'module AppVersion\n  APP = "{app}"\n  NAME = "{tag}"\nend\n')


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise OriginError(f"{' '.join(cmd)} failed in {cwd} (exit {proc.returncode}): "
                          f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


def _clean_env(home: Path) -> dict[str, str]:
    # Nothing from the caller's environment or git/bundler config may change the result.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": AUTHOR_NAME,
        "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
        "GIT_COMMITTER_NAME": AUTHOR_NAME,
        "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL,
    }


def _copy_tree(src: Path, dest: Path) -> None:
    """Copy files from `src` over `dest` with fixed modes (git records only the exec bit)."""
    for path in sorted(src.rglob("*")):
        if path.is_dir():
            continue
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        target.chmod(0o755 if target.parent.name == "bin" else 0o644)


def _commit(worktree: Path, env: dict[str, str], change: Change, index: int) -> None:
    when = f"@{EPOCH + index * 3600} +0000"
    commit_env = dict(env, GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
    _run(["git", "add", "--all"], worktree, commit_env)
    _run(["git", "-c", "commit.gpgSign=false", "-c", "core.hooksPath=/dev/null",
          "commit", "--quiet", "--no-verify", "-m", change.message], worktree, commit_env)
    _run(["git", "tag", change.tag], worktree, commit_env)


def build_origin(dest: Path, app: str, owner: str | None = None) -> dict[str, str]:
    """Build the bare repository `dest` for `app`; return {tag: commit sha}.

    An existing `dest` is replaced only once the new repository is complete. `owner`
    (a user name) gets the repository: git refuses to serve a repository owned by
    another user, so a local `file://` origin must belong to the user who fetches.
    """
    if app not in HISTORIES:
        raise ValueError(f"unknown app {app!r} (known: {', '.join(sorted(HISTORIES))})")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"origin-{app}-") as tmp:
        home, worktree = Path(tmp) / "home", Path(tmp) / "work"
        home.mkdir()
        env = _clean_env(home)
        _run(["git", "init", "--quiet", f"--initial-branch={BRANCH}", str(worktree)], Path(tmp), env)
        for index, change in enumerate(HISTORIES[app]):
            if index == 0:
                _copy_tree(SKELETON, worktree)
            if change.overlay:
                _copy_tree(APPS_DIR / app / change.overlay, worktree)
            (worktree / "app" / "models").mkdir(parents=True, exist_ok=True)
            (worktree / "app" / "models" / "app_version.rb").write_text(_version_rb(app, change.tag))
            if index == 0:
                # Resolve against the gems installed here only; no network.
                _run(["bundle", "lock", "--local"], worktree, dict(env, BUNDLE_GEMFILE=str(worktree / "Gemfile")))
            _commit(worktree, env, change, index)

        staging = dest.with_name(f".{dest.name}.building-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        _run(["git", "init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(staging)], Path(tmp), env)
        _run(["git", "push", "--quiet", str(staging), f"refs/heads/{BRANCH}:refs/heads/{BRANCH}",
              "refs/tags/*:refs/tags/*"], worktree, env)
        tags = origin_tags(staging)
        if owner:
            _run(["chown", "-R", f"{owner}:", str(staging)], Path(tmp), env)
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
        return tags


def origin_tags(repo: Path) -> dict[str, str]:
    """{tag: commit sha} of an origin repository (it may belong to another user: read only)."""
    out = _run(["git", "-c", f"safe.directory={repo}", "for-each-ref",
                "--format=%(refname:short) %(objectname)", "refs/tags"], Path(repo), _clean_env(Path(repo)))
    return dict(line.split(" ", 1) for line in out.splitlines())


def origin_inputs(app: str) -> str:
    """Digest of everything a build of `app` depends on: its history, the source files, this builder, and the
    machine's Debian packages (git, bundler and the gems `bundle lock --local` pins)."""
    digest = hashlib.sha256(json.dumps([app, [c.__dict__ for c in HISTORIES[app]]]).encode())
    for path in [Path(__file__), Path("/var/lib/dpkg/status"), *sorted(SKELETON.rglob("*")),
                 *sorted((APPS_DIR / app).rglob("*"))]:
        if path.is_file():
            digest.update(f"\0{path}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_origin(dest: Path, app: str) -> tuple[dict[str, str], bool]:
    """({tag: sha}, whether it was built): `dest` is rebuilt only when an input changed since its last build
    (the digest is kept beside it, `<dest>.inputs`), so a repeated `make up` spends no time here."""
    dest = Path(dest)
    stamp = dest.with_name(f"{dest.name}.inputs")
    inputs = origin_inputs(app)
    if (dest / "HEAD").exists() and stamp.exists() and stamp.read_text().strip() == inputs:
        return origin_tags(dest), False
    stamp.unlink(missing_ok=True)      # a build that fails half-way must not leave a matching stamp
    tags = build_origin(dest, app)
    stamp.write_text(inputs + "\n")
    return tags, True


def build_all(dest_dir: Path, owner: str | None = None) -> dict[str, dict[str, str]]:
    """Build `<dest_dir>/<app>.git` for every app; return {app: {tag: sha}}."""
    return {app: build_origin(Path(dest_dir) / f"{app}.git", app, owner) for app in HISTORIES}
