"""Fixtures for the release verbs: a moto server, a bucket, a project with stack files, a CLI runner."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from ecom_infra import release_cli
from tests.release.helpers import APPS, ENVS, run_verb, write_project
from tests.support import moto_server

# The shared moto fixtures, made visible to every test in this folder.
moto_endpoint = moto_server.moto_endpoint
aws_env = moto_server.aws_env


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with staging and production stacks, both declaring both apps."""
    where = write_project(tmp_path / "project", {env: list(APPS) for env in ENVS})
    monkeypatch.setenv(release_cli.ENV_PROJECT_DIR, str(where))
    return where


@pytest.fixture
def s3(aws_env: dict[str, str]):
    """A plain boto3 client on moto, for arranging and checking what the verbs did."""
    return boto3.session.Session().client("s3", endpoint_url=aws_env["AWS_ENDPOINT_URL"])


@pytest.fixture
def bucket(s3, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh versioned bucket, made the default through ECOM_SHA_BUCKET; no CI actor set."""
    name = moto_server.unique_bucket("shas")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    monkeypatch.setenv(release_cli.ENV_BUCKET, name)
    for var in release_cli.CI_ACTOR_VARS + ("CI",):
        monkeypatch.delenv(var, raising=False)
    return name


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `ecom-deploy ARGS...` in-process; returns exit code, stdout and stderr."""
    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = run_verb(*argv)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)
    return run


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `ssh` first on PATH that runs the remote command (git-upload-pack '<path>') locally."""
    bin_dir = tmp_path / "fake-ssh-bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(
        '#!/bin/sh\n'
        'while [ $# -gt 0 ]; do case "$1" in -o|-p|-i|-l) shift 2;; -*) shift;; *) break;; esac; done\n'
        'shift  # user@host\n'
        'exec sh -c "$*"\n')
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir
