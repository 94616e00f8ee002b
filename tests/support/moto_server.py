"""A real `moto_server` process on loopback, as pytest fixtures anyone can reuse.

Use it from a conftest.py or a test module::

    from tests.support.moto_server import aws_env, moto_endpoint  # noqa: F401 (fixtures)

`moto_endpoint` (session scope) starts one server for the whole run and yields its URL,
e.g. `http://127.0.0.1:41873`. `aws_env` (per test) points boto3 at it through the
environment with fake credentials, and disables every way boto3 could look for real
ones (instance metadata, profiles), so no test ever talks to AWS. moto keeps state
for the life of the process: give each test its own bucket (`unique_bucket`).

The server binds port 0 and we read the port it got from its log, so two runs (or two
suites) never race for a "free" port.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 30.0
_RUNNING_RE = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")

# Fake credentials: moto accepts any; real AWS would reject them.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Variables through which boto3 could find real credentials or a real endpoint.
_AWS_VARS_TO_CLEAR = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                      "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                      "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL_S3")


def _server_command() -> list[str]:
    """`moto_server` from the running interpreter's environment, else from PATH."""
    beside = Path(sys.executable).with_name("moto_server")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server not found: pip install 'moto[server]'")
    return [found]


def _wait_until_serving(proc: subprocess.Popen, log: Path) -> str:
    """Poll the log for the bound port, then the HTTP API until it answers."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    endpoint = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if endpoint is None:
            match = _RUNNING_RE.search(log.read_text(errors="replace"))
            endpoint = f"http://{HOST}:{match.group(1)}" if match else None
        if endpoint is not None:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2) as reply:  # a fixed page
                    if reply.status == 200:
                        return endpoint
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
        time.sleep(0.1)
    raise RuntimeError(f"moto_server did not start within {STARTUP_TIMEOUT_S}s: {log.read_text()[-2000:]}")


@contextmanager
def running_moto_server() -> Iterator[str]:
    """Start moto_server on a loopback port; yield its URL; stop it however the block ends."""
    workdir = Path(tempfile.mkdtemp(prefix="moto-server-"))
    log = workdir / "moto_server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_CREDENTIALS, AWS_DEFAULT_REGION="us-east-1")
    with log.open("wb") as out:   # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen([*_server_command(), "-H", HOST, "-p", "0"], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=workdir, start_new_session=True)
    try:
        yield _wait_until_serving(proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto_server shared by the whole test session."""
    with running_moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Environment for this test: boto3 (and subprocesses) talk only to moto, with fake keys."""
    for name in _AWS_VARS_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    values = {
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",   # never ask 169.254.169.254 for credentials
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def unique_bucket(prefix: str = "test") -> str:
    """A bucket name no other test uses (moto state lives as long as the server)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
