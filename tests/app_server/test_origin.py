"""The fleet's git origin: real Rails apps, a fixed history, stable shas, an offline bundle."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fleet.origin import HISTORIES, build_origin, ensure_origin, origin_tags

from .helpers import require_tools

pytestmark = [pytest.mark.tools, pytest.mark.root]

PLATFORM_TAGS = {"v1", "code-change", "asset-change", "config-change", "broken-boot", "broken-build",
                 "r1", "r2", "r3", "r4", "r5", "r6"}


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-c", f"safe.directory={repo}", "-C", str(repo), *args],
                            capture_output=True, text=True, check=True)
    return result.stdout


def changed_files(repo: Path, tag: str) -> set[str]:
    return set(git(repo, "diff", "--name-only", f"{tag}~1", tag).split())


@pytest.fixture(scope="module")
def platform_repo(tmp_path_factory):
    require_tools("git", "bundle")
    repo = tmp_path_factory.mktemp("origin") / "ecom-platform.git"
    return repo, build_origin(repo, "ecom-platform")


def test_history_is_tagged_and_shas_are_stable(platform_repo, tmp_path):
    repo, shas = platform_repo
    assert set(shas) == PLATFORM_TAGS
    assert all(len(sha) == 40 for sha in shas.values())
    assert len(set(shas.values())) == len(shas)          # every tag its own commit
    again = build_origin(tmp_path / "again.git", "ecom-platform")
    assert again == shas                                  # same inputs, same commits
    assert git(repo, "rev-parse", "--is-bare-repository").strip() == "true"
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert origin_tags(repo) == shas


def test_each_change_touches_what_its_name_says(platform_repo):
    repo, _ = platform_repo
    version = "app/models/app_version.rb"    # rewritten by every commit
    assert changed_files(repo, "code-change") == {version, "app/views/pages/show.html.erb"}
    assert changed_files(repo, "asset-change") == {version, "app/assets/stylesheets/application.css"}
    assert changed_files(repo, "config-change") == {version, "config/locales/en.yml"}
    assert changed_files(repo, "r3") == {version}
    assert changed_files(repo, "broken-boot") == {version, "app/controllers/reports_controller.rb"}
    # Gemfile and Gemfile.lock never change after v1: every later change is lock-neutral.
    lock = git(repo, "show", "v1:Gemfile.lock")
    assert "rails (6.1" in lock and "puma (5" in lock
    for tag in PLATFORM_TAGS - {"v1"}:
        assert git(repo, "show", f"{tag}:Gemfile.lock") == lock


def test_commits_have_fixed_authors_and_dates(platform_repo):
    repo, _ = platform_repo
    log = git(repo, "log", "--format=%an <%ae> %ad %cn %cd", "--date=unix", "main").splitlines()
    assert len(log) == len(HISTORIES["ecom-platform"])
    assert log[-1] == "Ecom Origin <origin@ecom.invalid> 1704067200 Ecom Origin 1704067200"


def test_the_app_bundles_offline_from_debian_gems(platform_repo, tmp_path):
    require_tools("tar")
    repo, _ = platform_repo
    app = tmp_path / "app"
    app.mkdir()
    archive = subprocess.run(["git", "-c", f"safe.directory={repo}", "-C", str(repo), "archive", "v1"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(app)], input=archive, check=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BUNDLE_FROZEN": "true",
           "BUNDLE_WITHOUT": "development:test", "LANG": "C.UTF-8"}
    result = subprocess.run(["bundle", "install", "--local"], cwd=app, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Bundle complete!" in result.stdout
    for path in ("config.ru", "bin/rails", "config/environments/production.rb", "app/controllers/health_controller.rb"):
        assert (app / path).is_file(), path
    assert os.access(app / "bin" / "rails", os.X_OK)
    assert not (app / "config" / "master.key").exists()


def test_docs_app_has_its_own_history(tmp_path):
    require_tools("git", "bundle")
    shas = build_origin(tmp_path / "ecom-docs.git", "ecom-docs")
    assert set(shas) == {"v1", "docs-change"}
    assert "root \"docs#index\"" in git(tmp_path / "ecom-docs.git", "show", "v1:config/routes.rb")


def test_unknown_app_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown app"):
        build_origin(tmp_path / "x.git", "ecom-shop")


def test_ensure_origin_rebuilds_only_when_an_input_changed(tmp_path):
    require_tools("git", "bundle")
    repo = tmp_path / "ecom-docs.git"
    shas, built = ensure_origin(repo, "ecom-docs")
    assert built and shas == origin_tags(repo)
    marker = repo / "description"
    marker.write_text("kept\n")                          # a rebuild would replace the whole repository
    assert ensure_origin(repo, "ecom-docs") == (shas, False) and marker.read_text() == "kept\n"
    (tmp_path / "ecom-docs.git.inputs").write_text("an older build\n")
    assert ensure_origin(repo, "ecom-docs") == (shas, True) and marker.read_text() != "kept\n"
