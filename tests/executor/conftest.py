"""Fixtures for the executor tests: a client key and real sshd servers on 127.0.0.1.

Each server is `/usr/sbin/sshd -D` with a config, host key and authorized_keys in a temp dir, listening on a
free loopback port. It accepts ECOM_* and PULUMI_COMMAND_* (AcceptEnv) and sets SSHD_NAME (SetEnv), so a
command can record which server ran it. Servers live for the test session and are stopped by pid at the end,
also when tests fail.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.executor.helpers import new_ssh_key
from tests.support.sshd import ensure_privsep_dir

SSHD = "/usr/sbin/sshd"


@dataclass
class Sshd:
    name: str
    port: int
    host_key: str  # "ssh-ed25519 AAAA..."
    process: subprocess.Popen
    log: Path

    @property
    def label(self) -> str:
        return f"127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _start_sshd(name: str, directory: Path, client_public: str, extra: tuple[str, ...] = ()) -> Sshd:
    directory.mkdir(parents=True)
    host_private, host_public = new_ssh_key()
    _write_private(directory / "host_ed25519", host_private)
    (directory / "authorized_keys").write_text(client_public + "\n")
    user = getpass.getuser()
    for attempt in range(3):  # the free port can be taken between probing and binding: try another one
        port = _free_port()
        config = directory / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {directory / 'host_ed25519'}",
            "PidFile none",
            f"AuthorizedKeysFile {directory / 'authorized_keys'}",
            f"AllowUsers {user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            # pytest's temp dirs live under /tmp (sticky, world-writable): strict mode would refuse the key file.
            "StrictModes no",
            "AcceptEnv ECOM_* PULUMI_COMMAND_*",
            f"SetEnv SSHD_NAME={name}",
            *extra,
            "",
        ]))
        log = directory / f"sshd-{attempt}.log"
        with open(log, "wb") as log_file:
            process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                       stdout=log_file, stderr=log_file)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None and not _listening(port):
            time.sleep(0.02)
        if process.poll() is None and _listening(port):
            return Sshd(name, port, host_public, process, log)
        process.kill()
        process.wait()
    raise RuntimeError(f"sshd {name} did not start: {log.read_text()}")


@pytest.fixture(scope="session")
def client_key() -> tuple[str, str]:
    """(OpenSSH private key text, public key line) the executor logs in with."""
    return new_ssh_key()


@pytest.fixture(scope="session")
def sshd_servers(tmp_path_factory, client_key):
    """Starts sshd servers on demand by name; stops every one of them at the end of the session."""
    missing = [program for program in (SSHD, shutil.which("ssh") or "ssh") if not shutil.which(program)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (openssh-server, openssh-client)")
    ensure_privsep_dir()
    servers: dict[str, Sshd] = {}
    root = tmp_path_factory.mktemp("sshd")

    def get(name: str, extra: tuple[str, ...] = ()) -> Sshd:
        """The server `name`, started on first use with `extra` sshd_config lines."""
        if name not in servers:
            servers[name] = _start_sshd(name, root / name, client_key[1], extra)
        return servers[name]

    try:
        yield get
    finally:
        for server in servers.values():
            server.process.terminate()
            try:
                server.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


@pytest.fixture
def alpha(sshd_servers) -> Sshd:
    return sshd_servers("alpha")


@pytest.fixture
def beta(sshd_servers) -> Sshd:
    return sshd_servers("beta")
