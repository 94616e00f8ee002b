"""The app's environment and secrets on a real host: root's mode-600 file, read by puma, a change
restarts puma with no new release, and the secret never shows in a step's output."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .helpers import destroy_host, make_host

pytestmark = [pytest.mark.tools, pytest.mark.root]

SECRET = 'pk_"quoted" $HOME `id` \\back'    # every character the file format escapes


def ok(result) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.fixture
def env_host(deploy_account, origin):
    made = make_host(deploy_account, origin, env=(("SHOP_NAME", "Demo shop"),))
    try:
        made.provision()
        yield made
    finally:
        destroy_host(made)


def test_a_secret_reaches_puma_and_its_change_restarts_it_without_a_release(env_host, origin):
    host = env_host
    host.deploy(origin["shas"]["ecom-platform"]["v1"])
    assert host.get("/env-check") == (200, "PAYMENT_API_KEY missing\n")
    releases, pid = host.releases(), host.puma_pid()

    out = ok(host.run("app-env", stdin=host.env_file((("PAYMENT_API_KEY", SECRET),))))
    assert "variables: PAYMENT_API_KEY SHOP_NAME" in out and SECRET not in out
    env_file = Path(host.spec.environment_file)
    info = env_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == 0 and info.st_gid == 0
    assert env_file.parent.stat().st_uid == 0 and not env_file.parent.is_symlink()

    publish = ok(host.run("release-publish"))      # what the changed trigger re-runs, drained
    assert "booted before puma's config, units or environment changed" in publish and SECRET not in publish
    assert host.get("/env-check") == (200, "PAYMENT_API_KEY set\n")
    assert host.releases() == releases and host.puma_pid() != pid          # restarted, not rebuilt
    environ = environ_of(host.puma_pid())
    assert environ["PAYMENT_API_KEY"] == SECRET and environ["SHOP_NAME"] == "Demo shop"
    assert environ["RAILS_ENV"] == "production"
    # Nothing on any command line (ps shows those to every user).
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                assert SECRET.encode() not in (entry / "cmdline").read_bytes()
            except OSError:
                continue

    # Unchanged: nothing owed; the next publish restarts nothing.
    assert "unchanged" in ok(host.run("app-env", stdin=host.env_file((("PAYMENT_API_KEY", SECRET),))))
    assert "nothing switched or restarted" in ok(host.run("release-publish"))


def test_the_build_gets_plain_variables_and_a_placeholder_key_never_the_secrets(env_host, origin):
    host = env_host
    ok(host.run("app-env", stdin=host.env_file((("PAYMENT_API_KEY", SECRET),))))
    script = host.with_sha(origin["shas"]["ecom-platform"]["v1"]).steps()["release-build"].create
    assert "'SHOP_NAME=Demo shop'" in script and "SECRET_KEY_BASE=" in script
    assert "PAYMENT_API_KEY" not in script           # the build's variables are all in its text
    host.deploy(origin["shas"]["ecom-platform"]["v1"])


def test_a_hand_written_environment_file_is_not_overwritten(env_host):
    host = env_host
    Path(host.spec.environment_file).write_text("SECRET_KEY_BASE=by-hand\n")
    os.chmod(host.spec.environment_file, 0o600)
    result = host.run("app-env", stdin=host.env_file())
    assert result.returncode != 0 and "was not written by ecom-infra" in result.stderr
    assert Path(host.spec.environment_file).read_text() == "SECRET_KEY_BASE=by-hand\n"
    bad = host.run("app-env", stdin="PAYMENT_API_KEY=x\n")
    assert bad.returncode != 0 and "not an environment file rendered by ecom-infra" in bad.stderr
