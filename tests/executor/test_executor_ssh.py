"""fleet.ssh without a server: connection inputs, host key pins, the scripts it sends, and redaction."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ecom_infra.errors import ConfigError
from fleet.executor.redact import _secrets, redact
from fleet.ssh.connection import Connection, fingerprint, parse_host_key
from fleet.ssh.copy import COPY_DIR_SCRIPT, COPY_FILE_SCRIPT, copy_dir_script, copy_file_script
from fleet.ssh.runner import env_probe_script
from tests.executor.helpers import new_ssh_key

PRIVATE_KEY, HOST_KEY = new_ssh_key()


def test_connection_defaults_are_pulumi_commands():
    conn = Connection.from_inputs({"host": "10.0.0.5", "privateKey": PRIVATE_KEY, "hostKey": HOST_KEY}, "c")
    assert (conn.user, conn.port, conn.dial_error_limit, conn.per_dial_timeout) == ("root", 22, 10, 15)
    assert conn.label == "10.0.0.5" and conn.known_hosts_name == "10.0.0.5"
    assert PRIVATE_KEY not in repr(conn)


def test_pulumi_numbers_arrive_as_floats():
    conn = Connection.from_inputs({"host": "h", "port": 2222.0, "privateKey": PRIVATE_KEY, "hostKey": HOST_KEY,
                                   "dialErrorLimit": -1.0}, "c")
    assert conn.port == 2222 and conn.dial_error_limit == -1
    assert conn.label == "h:2222" and conn.known_hosts_name == "[h]:2222"
    with pytest.raises(ConfigError, match=r"^c\.port: must be a whole number, got 22\.5$"):
        Connection.from_inputs({"host": "h", "port": 22.5, "privateKey": PRIVATE_KEY, "hostKey": HOST_KEY}, "c")


def test_host_name_cannot_become_an_ssh_option():
    with pytest.raises(ConfigError, match=r"^c\.host: must be a host name"):
        Connection.from_inputs({"host": "-oProxyCommand=x", "privateKey": PRIVATE_KEY, "hostKey": HOST_KEY}, "c")


def test_host_key_with_comment_parses_and_keeps_type_and_blob():
    key_type, blob = parse_host_key(HOST_KEY + " root@web-1", "k")
    assert key_type == "ssh-ed25519" and len(blob) == 51  # 4+11 type, 4+32 key


@pytest.mark.tools
def test_fingerprint_matches_ssh_keygen(tmp_path):
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen (openssh-client)")
    (tmp_path / "key.pub").write_text(HOST_KEY + "\n")
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "key.pub")], capture_output=True,
                            text=True, check=True).stdout.split()
    assert fingerprint(parse_host_key(HOST_KEY, "k")[1]) == listed[1]


def test_redact_hides_secrets_and_each_line_of_a_key_but_not_tiny_values():
    secrets = _secrets({"stdin": "hunter2-pass", "connection": {"privateKey": PRIVATE_KEY},
                        "environment": {"DB_PASSWORD": "pw-0123456", "PORT": "5432"}, "create": "echo y"})
    text = f"stdin hunter2-pass, env pw-0123456, port 5432, y\n{PRIVATE_KEY.splitlines()[2]}"
    assert redact(text, secrets) == "stdin [secret], env [secret], port 5432, y\n[secret]"
    assert redact("answer y", ["y"]) == "answer y"


def test_env_probe_refuses_unchecked_names():
    assert env_probe_script({"B", "A_1"}) == '[ "${A_1+set}" = set ] || echo A_1\n[ "${B+set}" = set ] || echo B\n'
    with pytest.raises(ValueError):
        env_probe_script({"A;rm -rf /"})


@pytest.mark.tools
@pytest.mark.parametrize("script", [COPY_FILE_SCRIPT, COPY_DIR_SCRIPT, env_probe_script({"ECOM_COLOR", "X"})],
                         ids=["copy-file", "copy-dir", "env-probe"])
def test_remote_scripts_pass_shellcheck(script, tmp_path):
    if shutil.which("shellcheck") is None:
        pytest.skip("needs shellcheck")
    path = tmp_path / "script.sh"
    # sh, not bash: the copy scripts run under `sh -c`, the probe under any login shell.
    path.write_text("#!/bin/sh\n" + script)
    result = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.tools
@pytest.mark.parametrize("login_shell", ["bash", "dash"])
def test_copy_commands_keep_tricky_names_intact_in_any_login_shell(login_shell, tmp_path):
    if shutil.which(login_shell) is None:
        pytest.skip(f"needs {login_shell}")
    target = tmp_path / "dir with space"
    target.mkdir()
    subprocess.run([login_shell, "-c", copy_file_script(str(target), "it's $(x).conf")], input=b"content\n",
                   check=True)
    assert (target / "it's $(x).conf").read_bytes() == b"content\n"
    subprocess.run([login_shell, "-c", copy_dir_script(str(target), "sub 'q'", False)],
                   input=_tar_of(tmp_path, {"a.txt": b"A"}), check=True)
    assert (target / "sub 'q'" / "a.txt").read_bytes() == b"A"
    assert sorted(p.name for p in target.iterdir()) == ["it's $(x).conf", "sub 'q'"]


def test_copy_into_a_directory_needs_a_file_name(tmp_path):
    result = subprocess.run(["sh", "-c", copy_file_script(str(tmp_path), "")], input=b"x", capture_output=True)
    assert result.returncode == 1
    assert b"is a directory, and a text source has no file name" in result.stderr
    assert list(tmp_path.iterdir()) == []


def _tar_of(tmp_path, files: dict[str, bytes]) -> bytes:
    import io
    import tarfile
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
