"""Issue 12 items 2-3 and issue 15 items 3-5 on a real host: what the deploy user controls never
becomes root's, puma is restarted for what it runs (not for what `current` says), and runs that were
killed leave nothing unrecorded or half-made (see helpers.py for what differs from a host)."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from .helpers import kill_pids, pids_of_user

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
