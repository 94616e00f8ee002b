"""git over SSH for real: a private sshd on loopback plays the git host."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.sshd import ensure_privsep_dir

from .helpers import destroy_host, free_port, make_host, make_public_tempdir, require_tools

pytestmark = [pytest.mark.tools, pytest.mark.root]


def keygen(path: Path) -> tuple[str, str]:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)], check=True)
    return path.read_text(), " ".join(Path(f"{path}.pub").read_text().split()[:2])


@pytest.fixture
def git_host(deploy_account, origin):
    """sshd on 127.0.0.1 that lets the deploy user in with a test deploy key."""
    require_tools("sshd", "ssh", "ssh-keygen")
    ensure_privsep_dir()
    base = make_public_tempdir("ecom-sshd-")
    _, host_key = keygen(base / "host_key")
    deploy_key, deploy_pub = keygen(base / "deploy_key")
    _, other_host_key = keygen(base / "other_host_key")
    (base / "authorized_keys").write_text(deploy_pub + "\n")
    (base / "authorized_keys").chmod(0o644)
    port = free_port()
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base}/host_key\nPidFile {base}/sshd.pid\n"
        f"AuthorizedKeysFile {base}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        f"KbdInteractiveAuthentication no\nAllowUsers {deploy_account.user}\n")
    # sshd refuses a locked account ('!' password) even for keys when PAM is off; '*' is not locked.
    subprocess.run(["usermod", "-p", "*", deploy_account.user], check=True)
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(base / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(base / "sshd.log", "w"))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or sshd.poll() is not None:
                    raise AssertionError((base / "sshd.log").read_text()) from None
                time.sleep(0.05)
        yield {"port": port, "host_key": host_key, "other_host_key": other_host_key, "deploy_key": deploy_key,
               "url": f"ssh://{deploy_account.user}@127.0.0.1:{port}{origin['dir']}/ecom-platform.git"}
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)
        subprocess.run(["usermod", "-p", "!", deploy_account.user], check=False)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def ssh_host(deploy_account, origin, git_host, host_key: str):
    port = git_host["port"]
    return make_host(deploy_account, origin, repo_url=git_host["url"], git_host="127.0.0.1", git_port=port,
                     known_hosts=(f"[127.0.0.1]:{port} {host_key}",))


def test_release_fetches_over_ssh_with_the_deploy_key_and_pinned_host_key(deploy_account, origin, git_host, shas):
    host = ssh_host(deploy_account, origin, git_host, git_host["host_key"])
    try:
        assert host.run("deploy-user").returncode == 0
        key = git_host["deploy_key"].rstrip("\n")         # secrets often lose their final newline
        result = host.run("git-ssh", stdin=key)
        assert result.returncode == 0, result.stderr
        assert "id_deploy, id_deploy.pub, known_hosts, config changed" in result.stdout
        body = key.splitlines()[1]
        assert body not in result.stdout + result.stderr + host.steps()["git-ssh"].create
        ssh_dir = Path(f"/home/{deploy_account.user}/.ssh")
        app_ssh = ssh_dir / "ecom-platform"
        assert oct(ssh_dir.stat().st_mode & 0o777) == "0o700" and oct(app_ssh.stat().st_mode & 0o777) == "0o700"
        assert oct((app_ssh / "id_deploy").stat().st_mode & 0o777) == "0o600"
        assert (app_ssh / "id_deploy").read_text() == key + "\n"
        assert (app_ssh / "id_deploy").stat().st_uid == deploy_account.uid
        assert "StrictHostKeyChecking yes" in (app_ssh / "config").read_text()

        again = host.run("git-ssh", stdin=key)
        assert again.returncode == 0 and "nothing changed" in again.stdout

        for name in ("layout", "ruby", "puma-config"):      # the build boots the release: puma needs its config
            assert host.run(name).returncode == 0
        build = host.with_sha(shas["v1"]).run("release-build")
        assert build.returncode == 0, build.stdout + build.stderr
        assert "cloning ssh://" in build.stdout and "release " in build.stdout
        mirror_config = (host.app_dir / "repo" / "config").read_text()
        assert f"sshcommand = ssh -F {app_ssh}/config".lower() in mirror_config.lower()
    finally:
        destroy_host(host)


def test_an_unknown_host_key_stops_the_fetch(deploy_account, origin, git_host, shas):
    host = ssh_host(deploy_account, origin, git_host, git_host["other_host_key"])
    try:
        for name in ("deploy-user", "layout"):
            assert host.run(name).returncode == 0
        assert host.run("git-ssh", stdin=git_host["deploy_key"]).returncode == 0
        build = host.with_sha(shas["v1"]).run("release-build")
        assert build.returncode != 0
        assert "Host key verification failed" in build.stderr
        assert host.releases() == [] and not (host.app_dir / "repo").exists()
    finally:
        destroy_host(host)


def test_a_bad_deploy_key_changes_nothing(deploy_account, origin, git_host):
    host = ssh_host(deploy_account, origin, git_host, git_host["host_key"])
    try:
        assert host.run("deploy-user").returncode == 0
        assert host.run("git-ssh", stdin=git_host["deploy_key"]).returncode == 0
        key_file = Path(f"/home/{deploy_account.user}/.ssh/ecom-platform/id_deploy")
        before = key_file.read_text()
        garbage = host.run("git-ssh", stdin="-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
        assert garbage.returncode == 1
        assert "deploy_key (stdin) is not an unencrypted OpenSSH private key" in garbage.stderr
        assert "not a key" not in garbage.stdout + garbage.stderr
        empty = host.run("git-ssh", stdin="")
        assert empty.returncode == 1 and "deploy_key (stdin) is empty" in empty.stderr
        assert key_file.read_text() == before
    finally:
        destroy_host(host)
