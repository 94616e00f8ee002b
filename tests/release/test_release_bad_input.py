"""Issue 12 against the release verbs: transports, environment, size, encoding, credentials."""
from __future__ import annotations

from pathlib import Path

import pytest

from ecom_infra import shafile
from tests.release.helpers import SHA, write_project
from tests.release.test_release_cli import GitRepo, assert_one_line_error, exists, ssh_url  # noqa: F401

KEY = "sha_number.yml"
DOCS = ["stage", "--no-verify-sha", "--env", "staging", "--app", "ecom-docs"]


# -- 4. git runs with a scrubbed environment and SSH only --------------------------------------------
def test_the_callers_git_environment_does_not_reach_git(cli, project, bucket, s3, tmp_path, monkeypatch, fake_ssh):
    """A url.insteadOf rewrite to ext:: plus GIT_ALLOW_PROTOCOL=ext from the caller must not run a command."""
    marker = tmp_path / "pwned"
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f'[url "ext::sh -c touch% {marker} #"]\n\tinsteadOf = ssh://git@evil.test/\n')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "ext:ssh")
    monkeypatch.setenv("GIT_SSH_COMMAND", f"touch {marker}; ssh")
    result = cli(*DOCS, "--branch", "master", "--repo", "ssh://git@evil.test/x.git")
    assert_one_line_error(result, "--repo: git ls-remote ssh://***@evil.test/x.git failed: fatal: transport 'ext' not allowed")
    assert not marker.exists()
    assert not exists(s3, bucket)


def test_a_git_failure_shows_more_than_its_last_line(cli, project, bucket, s3, tmp_path, fake_ssh):
    result = cli(*DOCS, "--branch", "master", "--repo", ssh_url(tmp_path / "nowhere.git"))
    assert_one_line_error(result, "--repo: git ls-remote")
    assert "does not appear to be a git repository" in result.err   # not only "and the repository exists."


# -- 1. / 10. environments: a stack's own entries, no environment no stack defines -----------------
def test_an_app_of_another_stack_does_not_block_this_stack():
    text = f"staging:\n  ecom-admin: {SHA[1]}\nproduction:\n  ecom-platform: {SHA[2]}\n"
    assert shafile.parse(text, ["ecom-platform"], environment="production") == {
        "production": {"ecom-platform": SHA[2]}}
    with pytest.raises(shafile.ConfigError, match=r"^sha_number.yml: production.ecom-admin: unknown app"):
        shafile.parse(text.replace("ecom-platform", "ecom-admin"), ["ecom-platform"], environment="production")


def test_the_plan_of_one_stack_ignores_apps_only_the_other_stack_has():
    from ecom_infra import plan as offline_plan

    text = f"staging:\n  ecom-admin: {SHA[1]}\nproduction:\n  ecom-platform: {SHA[2]}\n"
    outputs = offline_plan.run("production", sha_file_text=text).to_dict()["outputs"]
    assert outputs["apps"]["ecom-platform"]["sha"] == SHA[2]


def test_stage_of_an_app_only_staging_has_then_production_reads(cli, tmp_path, bucket, s3, monkeypatch):
    where = write_project(tmp_path / "p", {"staging": ["ecom-platform", "ecom-admin"], "production": ["ecom-platform"]})
    monkeypatch.setenv("ECOM_PROJECT_DIR", str(where))
    assert cli("stage", "--no-verify-sha", "--env", "staging", "--app", "ecom-admin", "--sha", SHA[1]).code == 0
    text = s3.get_object(Bucket=bucket, Key=KEY)["Body"].read().decode()
    assert shafile.parse(text, ["ecom-platform"], environment="production") == {}


def test_an_environment_no_stack_defines_is_refused(cli, project, bucket, s3):
    body = f"qa:\n  ecom-docs: {SHA[1]}\n".encode()
    s3.put_object(Bucket=bucket, Key=KEY, Body=body)
    assert_one_line_error(cli("show"), f"s3://{bucket}/{KEY}: qa: is an environment no stack defines")
    assert_one_line_error(cli(*DOCS, "--sha", SHA[2]), f"s3://{bucket}/{KEY}: qa:")
    assert s3.get_object(Bucket=bucket, Key=KEY)["Body"].read() == body


def test_an_oversized_object_is_refused_before_it_is_parsed(cli, project, bucket, s3):
    body = b"staging:\n" + b"# padding\n" * (shafile.MAX_BYTES // 10 + 1)
    s3.put_object(Bucket=bucket, Key=KEY, Body=body)
    assert_one_line_error(cli("show"), f"s3://{bucket}/{KEY}: is larger than 1024 KiB")
    assert_one_line_error(cli(*DOCS, "--sha", SHA[2]), f"s3://{bucket}/{KEY}: is larger than")
    assert s3.get_object(Bucket=bucket, Key=KEY)["ContentLength"] == len(body)


# -- 11. invalid UTF-8 is refused, not replaced ------------------------------------------------------
def test_invalid_utf8_is_refused_and_left_alone(cli, project, bucket, s3):
    body = f"staging:\n  ecom-docs: {SHA[1]}  # caf\xe9\n".encode("latin-1")
    s3.put_object(Bucket=bucket, Key=KEY, Body=body)
    assert_one_line_error(cli("show"), f"s3://{bucket}/{KEY}: is not valid UTF-8")
    assert_one_line_error(cli(*DOCS, "--sha", SHA[2]), f"s3://{bucket}/{KEY}: is not valid UTF-8")
    assert s3.get_object(Bucket=bucket, Key=KEY)["Body"].read() == body


# -- 9. credentials and profiles ------------------------------------------------------------------
def test_an_unknown_aws_profile_is_one_line(cli, project, bucket, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert_one_line_error(cli("show"), "AWS_PROFILE: profile 'no-such-profile' is not in the AWS config files")


def test_partial_credentials_are_one_line(cli, project, bucket, monkeypatch):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert_one_line_error(cli("show"), "AWS credentials: partial credentials in env: AWS_SECRET_ACCESS_KEY")


def test_a_relative_project_dir_works(cli, project, bucket, monkeypatch):
    monkeypatch.chdir(project.parent)
    assert cli("show", "--project-dir", Path(project.name).as_posix()).code == 0
