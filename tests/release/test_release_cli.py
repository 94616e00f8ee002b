"""The release verbs end to end: argparse -> checks -> git ls-remote -> S3 (moto over HTTP)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from ecom_infra import release_cli, shafile
from tests.release.helpers import APPS, SHA, write_project

KEY = "sha_number.yml"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


# -- arranging ---------------------------------------------------------------------------------
class GitRepo:
    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "--quiet", "--initial-branch=master")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.path, env=GIT_ENV | {"PATH": "/usr/bin:/bin"},
                              check=True, capture_output=True, text=True).stdout.strip()

    def commit(self, branch: str = "master") -> str:
        self.git("checkout", "--quiet", "-B", branch)
        self.git("commit", "--quiet", "--allow-empty", "-m", f"change on {branch}")
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path, fake_ssh) -> GitRepo:
    return GitRepo(Path(tmp_path / "app.git"))


def ssh_url(path: Path) -> str:
    """The repository at `path` as the SSH URL the fake ssh serves (--repo takes SSH only)."""
    return f"ssh://git@git.example.test{path}"


def read(s3, bucket: str) -> dict:
    return shafile.parse(s3.get_object(Bucket=bucket, Key=KEY)["Body"].read().decode(), APPS)


def exists(s3, bucket: str) -> bool:
    return bool(s3.list_object_versions(Bucket=bucket, Prefix=KEY).get("Versions"))


def metadata(s3, bucket: str) -> dict:
    return s3.head_object(Bucket=bucket, Key=KEY)["Metadata"]


def assert_one_line_error(result, starts_with: str) -> None:
    assert result.code == 2, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"ecom-deploy: error: {starts_with}"), lines[0]


def stage(cli, env: str, app: str, sha: str, actor: str = "tester"):
    result = cli("stage", "--no-verify-sha", "--env", env, "--app", app, "--sha", sha, "--actor", actor)
    assert result.code == 0, result
    return result


def went_live(cli, env: str, app: str | None = None, outputs: Path | None = None):
    """What the deploy workflows run after a successful `pulumi up`."""
    argv = ["mark-live", "--env", env, "--actor", "ci"] + (["--app", app] if app else [])
    result = cli(*argv, *(["--outputs", str(outputs)] if outputs else []))
    assert result.code == 0, result
    return result


def deploy(cli, env: str, app: str, sha: str):
    """Stage, then a successful up."""
    stage(cli, env, app, sha)
    went_live(cli, env, app)


# -- stage ---------------------------------------------------------------------------------------
def test_stage_with_a_sha_prints_old_and_new_and_keeps_other_entries(cli, project, bucket, s3):
    stage(cli, "production", "ecom-docs", SHA[9])
    first = cli("stage", "--no-verify-sha", "--env", "staging", "--app", "ecom-platform", "--sha", SHA[1].upper())
    second = cli("stage", "--no-verify-sha", "--env", "staging", "--app", "ecom-platform", "--sha", SHA[2])
    assert first.out == f"staging/ecom-platform: (none) \u2192 {SHA[1]}\n"
    assert second.out == f"staging/ecom-platform: {SHA[1]} \u2192 {SHA[2]}\n"
    assert read(s3, bucket) == {"staging": {"ecom-platform": SHA[2]}, "production": {"ecom-docs": SHA[9]}}


def test_stage_resolves_the_branch_with_git_ls_remote(cli, project, bucket, s3, repo):
    repo.commit("master")
    feature = repo.commit("feature")
    master = repo.commit("master")
    result = cli("stage", "--no-verify-sha", "--env", "staging", "--app", "ecom-docs", "--branch", "master", "--repo", ssh_url(repo.path))
    assert result.out == f"staging/ecom-docs: (none) \u2192 {master}\n"
    cli("stage", "--no-verify-sha", "--env", "staging", "--app", "ecom-docs", "--branch", "feature", "--repo", ssh_url(repo.path))
    assert read(s3, bucket)["staging"]["ecom-docs"] == feature


def test_stage_takes_repo_and_branch_from_the_stack_file(cli, tmp_path, bucket, s3, repo, monkeypatch):
    where = write_project(tmp_path / "local", {"staging": list(APPS)})
    text = (where / "Pulumi.staging.yaml").read_text()
    (where / "Pulumi.staging.yaml").write_text(text.replace("git@github.com:emami/ecom-platform.git",
                                                            ssh_url(repo.path)).replace("master", "release"))
    monkeypatch.setenv(release_cli.ENV_PROJECT_DIR, str(where))
    sha = repo.commit("release")
    assert cli("stage", "--no-verify-sha", "--env", "staging", "--app", "ecom-platform").code == 0
    assert read(s3, bucket) == {"staging": {"ecom-platform": sha}}


def test_stage_converts_a_legacy_flat_file_and_keeps_its_sha(cli, project, bucket, s3):
    s3.put_object(Bucket=bucket, Key=KEY, Body=f"staging: {SHA[1]}\nproduction: {SHA[2]}\n".encode())
    stage(cli, "staging", "ecom-docs", SHA[3])
    assert read(s3, bucket) == {"staging": {"ecom-platform": SHA[1], "ecom-docs": SHA[3]},
                                "production": {"ecom-platform": SHA[2]}}


DOCS = ["--env", "staging", "--app", "ecom-docs"]


@pytest.mark.parametrize(("argv", "error"), [
    (["--env", "qa", "--app", "ecom-docs", "--sha", SHA[1]],
     "--env: unknown environment 'qa' (known: production, staging)"),
    (["--env", "staging", "--app", "ecom-api", "--sha", SHA[1]], "--app: unknown app 'ecom-api' in staging"),
    ([*DOCS, "--sha", "abc123"], "--sha: must be a 40-character hex commit sha"),
    ([*DOCS, "--sha", "g" * 40], "--sha: must be a 40-character hex commit sha"),
    ([*DOCS, "--sha", SHA[1], "--actor", "Jane Doe"], "--actor: 'Jane Doe'"),
    ([*DOCS, "--sha", SHA[1], "--bucket", "Bad_Bucket"], "--bucket: 'Bad_Bucket'"),
    ([*DOCS, "--sha", SHA[1], "--bucket", "no-such-bucket-4d1"],
     "--bucket: bucket 'no-such-bucket-4d1' does not exist"),
    ([*DOCS, "--sha", SHA[1], "--endpoint-url", "ftp://x"], "--endpoint-url:"),
    ([*DOCS, "--branch", "no-such-branch", "--repo", "{repo}"], "--branch: no branch 'no-such-branch' in"),
    ([*DOCS, "--branch", "a..b", "--repo", "{repo}"], "--branch: 'a..b' is not a valid"),
    ([*DOCS, "--branch", "master", "--repo", "{missing}"], "--repo: git ls-remote"),
    ([*DOCS, "--branch", "master", "--repo", "--upload-pack=touch x"],
     "--repo: '--upload-pack=touch x' must be a git URL"),
    ([*DOCS, "--branch", "master", "--repo", "ext::sh -c touch% /tmp/pwned"], "--repo: must be a git SSH URL"),
    ([*DOCS, "--branch", "master", "--repo", "fd::7"], "--repo: must be a git SSH URL"),
    ([*DOCS, "--branch", "master", "--repo", "file:///tmp/x.git"], "--repo: must be a git SSH URL"),
    ([*DOCS, "--branch", "master", "--repo", "{path}"], "--repo: must be a git SSH URL"),
    ([*DOCS, "--sha", SHA[1], "--actor", "x" * 10_000], "--actor: 'xxxxxxxx"),
    ([*DOCS, "--sha", SHA[1], "--endpoint-url", "http://127.0.0.1:99999"], "--endpoint-url: port must be 1-65535"),
], ids=["unknown-env", "unknown-app", "short-sha", "non-hex-sha", "bad-actor", "bad-bucket-name", "missing-bucket",
        "bad-endpoint", "missing-branch", "bad-branch", "missing-repo", "option-as-repo", "ext-transport",
        "fd-transport", "file-transport", "local-path", "huge-actor", "endpoint-port"])
def test_stage_refuses_bad_input_with_one_line_and_writes_nothing(cli, project, bucket, s3, repo, tmp_path,
                                                                  argv, error):
    repo.commit("master")
    argv = [a.format(repo=ssh_url(repo.path), missing=ssh_url(tmp_path / "nowhere"), path=repo.path) for a in argv]
    result = cli("stage", "--no-verify-sha", *argv)
    assert_one_line_error(result, error)
    assert len(result.err) < 600   # nothing the caller typed is echoed in full
    assert not exists(s3, bucket)


def test_stage_never_overwrites_a_malformed_file(cli, project, bucket, s3):
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"staging: [oops\n")
    assert_one_line_error(cli("stage", "--no-verify-sha", "--env", "staging", "--app", "ecom-docs", "--sha", SHA[1]),
                          f"s3://{bucket}/{KEY}: is not valid YAML")
    assert s3.get_object(Bucket=bucket, Key=KEY)["Body"].read() == b"staging: [oops\n"


def test_missing_credentials_are_one_line(cli, project, bucket, s3, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert_one_line_error(cli("stage", "--no-verify-sha", "--env", "staging", "--app", "ecom-docs", "--sha", SHA[1]),
                          "AWS credentials: none found")
    assert not exists(s3, bucket)


def test_an_unreachable_endpoint_is_named(cli, project, bucket):
    with socket.socket() as probe:   # a loopback port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = cli("show", "--endpoint-url", f"http://127.0.0.1:{port}")
    assert_one_line_error(result, f"--endpoint-url: cannot connect to http://127.0.0.1:{port}")


def test_credentials_in_a_repo_url_never_reach_the_error(cli, project, bucket):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = cli("stage", "--no-verify-sha", "--env", "staging", "--app", "ecom-docs", "--branch", "master",
                 "--repo", f"http://deploy:s3cr3t-t0ken@127.0.0.1:{port}/app.git")
    assert_one_line_error(result, "--repo: must be a git SSH URL")
    assert "s3cr3t" not in result.err and "***@127.0.0.1" in result.err


# -- who wrote it ---------------------------------------------------------------------------------
def test_the_actor_defaults_to_github_actor_and_is_stored_with_the_previous_sha(cli, project, bucket, s3, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTOR", "dependabot[bot]")
    cli("stage", "--no-verify-sha", "--env", "staging", "--app", "ecom-docs", "--sha", SHA[1])
    cli("stage", "--no-verify-sha", "--env", "staging", "--app", "ecom-docs", "--sha", SHA[2])
    assert metadata(s3, bucket) == {"ecom-actor": "dependabot[bot]", "ecom-verb": "stage",
                                    "ecom-previous": f"staging/ecom-docs={SHA[1]}"}


@pytest.mark.parametrize(("environ", "expected"), [
    ({"GITHUB_ACTOR": "octocat", "GITLAB_USER_LOGIN": "other", "CI": "true"}, "octocat"),
    ({"GITLAB_USER_LOGIN": "jane.doe", "CI": "true"}, "jane.doe"),
    ({"BUILDKITE_BUILD_CREATOR": "Jane Doe", "CI": "true"}, "Jane-Doe"),
    ({"CI": "true"}, "ci"),
])
def test_the_actor_comes_from_ci_variables_in_order(environ, expected):
    assert release_cli.resolve_actor(None, environ) == expected


def test_the_actor_falls_back_to_the_login_user(monkeypatch):
    monkeypatch.setattr(release_cli.getpass, "getuser", lambda: "deployer")
    assert release_cli.resolve_actor(None, {}) == "deployer"
    assert release_cli.resolve_actor("someone", {"GITHUB_ACTOR": "octocat"}) == "someone"


# -- promote --------------------------------------------------------------------------------------
def test_promote_copies_every_app(cli, project, bucket, s3):
    stage(cli, "staging", "ecom-platform", SHA[1])
    stage(cli, "staging", "ecom-docs", SHA[2])
    stage(cli, "production", "ecom-platform", SHA[3])
    result = cli("promote", "--from", "staging", "--to", "production", "--actor", "releaser")
    assert result.code == 0
    assert result.out.splitlines() == [f"production/ecom-platform: {SHA[3]} \u2192 {SHA[1]}",
                                       f"production/ecom-docs: (none) \u2192 {SHA[2]}"]
    assert read(s3, bucket)["production"] == read(s3, bucket)["staging"]
    assert metadata(s3, bucket) == {"ecom-actor": "releaser", "ecom-verb": "promote",
                                    "ecom-previous": f"production/ecom-platform={SHA[3]},production/ecom-docs=none"}


def test_promote_one_app_leaves_the_others(cli, project, bucket, s3):
    stage(cli, "staging", "ecom-platform", SHA[1])
    stage(cli, "staging", "ecom-docs", SHA[2])
    assert cli("promote", "--from", "staging", "--to", "production", "--app", "ecom-docs").code == 0
    assert read(s3, bucket)["production"] == {"ecom-docs": SHA[2]}


def test_promote_skips_apps_not_staged_and_says_so(cli, project, bucket, s3):
    stage(cli, "staging", "ecom-platform", SHA[1])
    result = cli("promote", "--from", "staging", "--to", "production")
    assert result.out.splitlines() == [f"production/ecom-platform: (none) \u2192 {SHA[1]}",
                                       "production/ecom-docs: nothing staged in staging, left as is"]


@pytest.mark.parametrize(("argv", "error"), [
    (["--from", "staging", "--to", "staging"], "--to: must differ from --from"),
    (["--from", "qa", "--to", "production"], "--from: unknown environment 'qa'"),
    (["--from", "staging", "--to", "qa"], "--to: unknown environment 'qa'"),
    (["--from", "staging", "--to", "production", "--app", "ecom-docs"], "--app: staging/ecom-docs has no sha"),
    (["--from", "production", "--to", "staging"], "--from: production has no sha"),
])
def test_promote_refuses_bad_input(cli, project, bucket, s3, argv, error):
    stage(cli, "staging", "ecom-platform", SHA[1])
    before = s3.head_object(Bucket=bucket, Key=KEY)["VersionId"]
    assert_one_line_error(cli("promote", *argv), error)
    assert s3.head_object(Bucket=bucket, Key=KEY)["VersionId"] == before


# -- rollback and history --------------------------------------------------------------------------
def test_rollback_walks_back_one_release_at_a_time(cli, project, bucket, s3):
    for n in (1, 2, 3):
        deploy(cli, "production", "ecom-platform", SHA[n])
        stage(cli, "production", "ecom-docs", SHA[n + 5])   # other entries change in between
    first = cli("rollback", "--env", "production", "--app", "ecom-platform", "--actor", "oncall")
    assert first.out.splitlines() == [f"production/ecom-platform: {SHA[3]} \u2192 {SHA[2]}",
                                      "next: pulumi up --stack production"]
    went_live(cli, "production", "ecom-platform")
    second = cli("rollback", "--env", "production", "--app", "ecom-platform")
    assert second.out.splitlines()[0] == f"production/ecom-platform: {SHA[2]} \u2192 {SHA[1]}"
    went_live(cli, "production", "ecom-platform")
    assert read(s3, bucket)["production"] == {"ecom-platform": SHA[1], "ecom-docs": SHA[8]}
    assert_one_line_error(cli("rollback", "--env", "production", "--app", "ecom-platform"),
                          "--to: no release of production/ecom-platform went live before 111111111111")


def test_rollback_never_proposes_a_sha_whose_deploy_failed(cli, project, bucket, s3):
    deploy(cli, "production", "ecom-platform", SHA[1])        # v1 live
    stage(cli, "production", "ecom-platform", SHA[2])         # does not boot: the up fails, v1 keeps serving
    deploy(cli, "production", "ecom-platform", SHA[3])        # a good one
    result = cli("rollback", "--env", "production", "--app", "ecom-platform")
    assert result.out.splitlines()[0] == f"production/ecom-platform: {SHA[3]} \u2192 {SHA[1]}"
    live = s3.get_object(Bucket=bucket, Key="sha_number.live.yml")["Body"].read().decode()
    assert SHA[1] in live and SHA[3] in live and SHA[2] not in live


def test_rollback_without_a_live_record_asks_for_to(cli, project, bucket, s3):
    stage(cli, "production", "ecom-platform", SHA[1])
    stage(cli, "production", "ecom-platform", SHA[2])
    assert_one_line_error(cli("rollback", "--env", "production", "--app", "ecom-platform"),
                          "--to: no record of a release of production/ecom-platform that went live")
    assert read(s3, bucket)["production"]["ecom-platform"] == SHA[2]


def test_mark_live_records_what_the_up_deployed_from_its_outputs(cli, project, bucket, s3, tmp_path):
    stage(cli, "staging", "ecom-platform", SHA[1])
    stage(cli, "staging", "ecom-docs", SHA[5])
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"apps": {"ecom-platform": {"sha": SHA[1]}, "ecom-docs": {"sha": None}}}))
    stage(cli, "staging", "ecom-platform", SHA[2])            # staged while the up ran: not deployed by it
    result = went_live(cli, "staging", outputs=outputs)
    assert result.out.splitlines() == ["staging/ecom-platform: live (none) \u2192 " + SHA[1],
                                       "staging/ecom-docs: no sha deployed, nothing recorded"]
    again = went_live(cli, "staging", outputs=outputs)
    assert again.out.splitlines()[0] == f"staging/ecom-platform: {SHA[1]} already recorded live"
    outputs.write_text("{not json")
    assert_one_line_error(cli("mark-live", "--env", "staging", "--outputs", str(outputs)), "--outputs:")


def test_rollback_to_a_sha_that_never_ran_there_needs_force(cli, project, bucket, s3):
    stage(cli, "staging", "ecom-platform", SHA[4])          # ran in staging only
    stage(cli, "production", "ecom-platform", SHA[1])
    stage(cli, "production", "ecom-platform", SHA[2])
    assert_one_line_error(cli("rollback", "--env", "production", "--app", "ecom-platform", "--to", SHA[4]),
                          f"--to: {SHA[4]} never ran in production/ecom-platform")
    assert read(s3, bucket)["production"]["ecom-platform"] == SHA[2]
    assert cli("rollback", "--env", "production", "--app", "ecom-platform", "--to", SHA[1]).code == 0
    forced = cli("rollback", "--env", "production", "--app", "ecom-platform", "--to", SHA[4], "--force")
    assert forced.code == 0 and read(s3, bucket)["production"]["ecom-platform"] == SHA[4]


def test_rollback_of_an_entry_that_was_never_set_is_refused(cli, project, bucket, s3):
    stage(cli, "staging", "ecom-platform", SHA[1])
    assert_one_line_error(cli("rollback", "--env", "production", "--app", "ecom-platform"),
                          "--app: production/ecom-platform has no sha")


def test_history_lists_when_who_and_what_it_replaced(cli, project, bucket, s3):
    stage(cli, "staging", "ecom-platform", SHA[1], actor="alice")
    went_live(cli, "staging", "ecom-platform")
    stage(cli, "staging", "ecom-docs", SHA[5], actor="bob")            # not a row for ecom-platform
    stage(cli, "staging", "ecom-platform", SHA[2], actor="carol")
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"hand: [edited\n")   # a broken version in between
    s3.put_object(Bucket=bucket, Key=KEY, Body=shafile.dump(
        {"staging": {"ecom-platform": SHA[2], "ecom-docs": SHA[5]}}).encode())   # fixed, no metadata
    cli("rollback", "--env", "staging", "--app", "ecom-platform", "--actor", "dave")
    result = cli("history", "--env", "staging", "--app", "ecom-platform")
    assert result.code == 0
    header, *rows = result.out.splitlines()
    assert header.split() == ["time", "(UTC)", "sha", "who", "verb", "previous"]
    assert [r.split()[1:] for r in rows] == [
        [SHA[1], "dave", "rollback", SHA[2]],
        [SHA[2], "carol", "stage", SHA[1]],
        [SHA[1], "alice", "stage", "(none)"],
    ]
    assert result.err.startswith("note: skipped 1 version(s) that are not a valid sha file")
    limited = cli("history", "--env", "staging", "--app", "ecom-platform", "--limit", "1")
    assert len(limited.out.splitlines()) == 2


def test_history_limit_stops_reading_versions_early(cli, project, bucket, s3, monkeypatch):
    # 30 versions; `--limit 2` must list and read a handful, not the whole history (S3 lists up
    # to 1000 versions per page by default, and a long-lived sha file has thousands).
    for n in range(30):
        s3.put_object(Bucket=bucket, Key=KEY, Body=shafile.dump(
            {"staging": {"ecom-platform": SHA[1 + n % 9], "ecom-docs": SHA[5]}}).encode())
    listed: list[int] = []
    fetched: list[str] = []
    make_client = release_cli.release.s3_client

    def counting_client(*args, **kwargs):
        client = make_client(*args, **kwargs)
        client.meta.events.register("after-call.s3.ListObjectVersions",
                                    lambda parsed, **_: listed.append(len(parsed.get("Versions", []))))
        client.meta.events.register("provide-client-params.s3.GetObject",
                                    lambda params, **_: fetched.append(params.get("VersionId", "")))
        return client

    monkeypatch.setattr(release_cli.release, "s3_client", counting_client)
    result = cli("history", "--env", "staging", "--app", "ecom-platform", "--limit", "2")
    assert result.code == 0 and len(result.out.splitlines()) == 3
    assert sum(listed) <= 3 and len(listed) == 1, listed       # one short page: 2 rows + the version before
    assert len([v for v in fetched if v]) == 3, fetched


def test_history_of_an_entry_never_set(cli, project, bucket, s3):
    stage(cli, "staging", "ecom-platform", SHA[1])
    result = cli("history", "--env", "production", "--app", "ecom-docs")
    assert result.out == f"production/ecom-docs: no sha recorded in s3://{bucket}/{KEY}\n"


# -- show ---------------------------------------------------------------------------------------------
def test_show_prints_every_declared_entry(cli, project, bucket, s3):
    stage(cli, "staging", "ecom-platform", SHA[1])
    stage(cli, "staging", "ecom-docs", SHA[2])
    stage(cli, "production", "ecom-platform", SHA[3])
    assert cli("show").out.splitlines() == [
        f"production/ecom-platform: {SHA[3]}", "production/ecom-docs: (none)",
        f"staging/ecom-platform: {SHA[1]}", f"staging/ecom-docs: {SHA[2]}"]
    assert cli("show", "--env", "production").out.splitlines() == [
        f"production/ecom-platform: {SHA[3]}", "production/ecom-docs: (none)"]


def test_show_on_an_empty_bucket_and_an_unknown_env(cli, project, bucket):
    assert cli("show", "--env", "staging").out.splitlines() == ["staging/ecom-platform: (none)",
                                                                "staging/ecom-docs: (none)"]
    assert_one_line_error(cli("show", "--env", "qa"), "--env: unknown environment 'qa'")


def test_a_project_dir_without_stack_files_is_named(cli, tmp_path, bucket):
    assert_one_line_error(cli("show", "--project-dir", str(tmp_path)), "--project-dir: no Pulumi.<stack>.yaml")


def test_actor_with_a_trailing_newline_is_refused():
    """`$` matches before a final newline; the actor lands in S3 metadata, so it must match whole."""
    from ecom_infra.errors import ConfigError  # noqa: PLC0415
    from ecom_infra.release_cli import resolve_actor  # noqa: PLC0415

    with pytest.raises(ConfigError, match="--actor"):
        resolve_actor("alice\n")


def test_stage_checks_that_the_sha_is_in_the_apps_repository(cli, tmp_path, bucket, s3, repo, monkeypatch):
    older = repo.commit()
    repo.commit()                                             # `older` is no longer a ref's tip
    where = write_project(tmp_path / "p", {"staging": ["ecom-platform"]})
    (where / "Pulumi.staging.yaml").write_text((where / "Pulumi.staging.yaml").read_text().replace(
        "git@github.com:emami/ecom-platform.git", ssh_url(repo.path)))
    monkeypatch.setenv(release_cli.ENV_PROJECT_DIR, str(where))
    stage_sha = ("stage", "--env", "staging", "--app", "ecom-platform", "--sha")
    assert cli(*stage_sha, older).code == 0
    assert cli(*stage_sha, repo.git("rev-parse", "HEAD")).code == 0
    assert_one_line_error(cli(*stage_sha, SHA[7]), f"--sha: commit {SHA[7]} is not in ssh://")
    assert read(s3, bucket)["staging"]["ecom-platform"] != SHA[7]
    # Offline: the opt-out stages it unchecked; an unreachable repository names the opt-out.
    offline = tmp_path / "offline-bin"
    offline.mkdir()
    (offline / "ssh").write_text("#!/bin/sh\necho 'ssh: connect to host git.example.test: Network is unreachable' >&2\n"
                                 "exit 255\n")
    (offline / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{offline}:{os.environ['PATH']}")
    assert_one_line_error(cli(*stage_sha, SHA[7]), "--sha: cannot check it")
    assert "--no-verify-sha" in cli(*stage_sha, SHA[7]).err
    assert cli(*stage_sha, SHA[7], "--no-verify-sha").code == 0
