"""Fixtures for the app-server tests: a session deploy user, the git origin, fresh hosts."""
from __future__ import annotations

import pwd
import secrets
import shutil
import subprocess
import time

import pytest

from fleet.origin import build_all

from .helpers import (
    HOST_TOOLS,
    Account,
    destroy_host,
    kill_pids,
    make_host,
    make_public_tempdir,
    pids_of_user,
    require_root,
    require_tools,
)


@pytest.fixture(scope="session")
def deploy_account():
    """A deploy user and group made for this test session, removed at its end."""
    require_root()
    require_tools(*HOST_TOOLS)
    name = f"ecomt{secrets.token_hex(3)}"
    subprocess.run(["groupadd", "--system", name], check=True)
    subprocess.run(["useradd", "--system", "--gid", name, "--create-home", "--home-dir", f"/home/{name}",
                    "--shell", "/bin/bash", name], check=True)
    account = Account(user=name, uid=pwd.getpwnam(name).pw_uid)
    try:
        yield account
    finally:
        kill_pids(pids_of_user(account.uid))  # puma and anything else the tests started as this user
        time.sleep(0.2)
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


@pytest.fixture(scope="session")
def origin(deploy_account):
    """The fleet's git origin, built once, owned by the deploy user (git serves only its owner's)."""
    base = make_public_tempdir("ecom-origin-")
    started = time.monotonic()
    shas = build_all(base, owner=deploy_account.user)
    build_seconds = time.monotonic() - started
    try:
        yield {"dir": base, "shas": shas, "seconds": build_seconds}
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def host(deploy_account, origin):
    """A freshly provisioned host for ecom-platform (no release yet); torn down even on failure."""
    made = make_host(deploy_account, origin)
    try:
        made.provision()
        yield made
    finally:
        destroy_host(made)


@pytest.fixture
def shas(origin) -> dict[str, str]:
    return origin["shas"]["ecom-platform"]
