"""Run one command on a host over SSH the way pulumi-command's `remote.Command` does, with OpenSSH's client.

Why OpenSSH and not paramiko: the client is already on every machine that runs the fleet, it needs no new
Python dependency, and `StrictHostKeyChecking=yes` against a known_hosts file we write ourselves pins the host
key with OpenSSH's own, well-tested code.

One `SshRunner` serves one executor run. It owns a private temp dir (mode 700) holding, per distinct
connection, the private key (mode 600), a known_hosts file with the pinned key and a control socket. The first
command on a connection dials a *master* connection (`ssh -M -N`), retrying per `dialErrorLimit` /
`perDialTimeout` like the provider does; every command is then a new session over that master. Keeping the dial
separate from the command is what lets us tell "could not connect" (retry, or refuse on a host-key mismatch
before anything ran) from "the command exited non-zero" (never retried): with a plain `ssh host cmd` both
look like exit 255.

What the remote side sees matches pulumi-command: the command text goes in the SSH exec request unchanged,
so the remote user's login shell runs it with `-c`; `stdin` is the session's stdin (empty when absent);
`environment` travels as SSH "env" requests, which sshd honours only for names listed in `AcceptEnv`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ecom_infra.errors import ConfigError

# pulumi-command's names for the previous run's outputs (provider/pkg/provider/util).
PREVIOUS_STDOUT = "PULUMI_COMMAND_STDOUT"
PREVIOUS_STDERR = "PULUMI_COMMAND_STDERR"

# pulumi-command's connection defaults (provider/pkg/provider/remote/connection.go).
DEFAULT_USER = "root"
DEFAULT_PORT = 22
DEFAULT_DIAL_ERROR_LIMIT = 10
DEFAULT_PER_DIAL_TIMEOUT = 15

# Backoff between dials: the provider uses the Pulumi SDK's retry.Until defaults (100 ms, x1.5, at most 5 s).
FIRST_RETRY_DELAY = 0.1
RETRY_BACKOFF = 1.5
MAX_RETRY_DELAY = 5.0

MAX_SOCKET_DIR = 60  # bytes of directory path that leave room for "/cm-N" plus ssh's temporary suffix
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The values of `environment` reach ssh through its own process environment (SendEnv), so a name that changes
# how the local ssh or its dynamic loader behaves must not be accepted: it would act here, not on the host.
LOCAL_ONLY_ENV = re.compile(r"(LD_|SSH_)|(PATH|HOME)\Z")
HOST_NAME = re.compile(r"[A-Za-z0-9.:_%\[\]-]+\Z")
USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?\Z")


class SshError(Exception):
    """The connection, not the command, failed: nothing ran on the host for this step."""


class DialError(SshError):
    """Could not connect (refused, timed out, authentication failed) within dialErrorLimit attempts."""


class HostKeyMismatch(SshError):
    """The host presented a key other than connection.hostKey: refused before any command ran."""


class EnvNotAccepted(SshError):
    """sshd dropped an `environment` variable because its name is not in AcceptEnv."""


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str


def _integer(raw: object, key: str, default: int, minimum: int, maximum: int | None = None) -> int:
    """Pulumi numbers arrive as floats (22.0): accept any integral number within the bounds."""
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or int(raw) != raw:
        raise ConfigError(key, f"must be a whole number, got {raw!r}")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f"..{maximum}" if maximum is not None else " or more"
        raise ConfigError(key, f"must be {minimum}{upper}, got {value}")
    return value


def parse_host_key(text: object, key: str) -> tuple[str, bytes]:
    """`"ssh-ed25519 AAAA... [comment]"` -> (key type, key blob); the blob must name the same type."""
    example = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA..."
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(key, "missing: the executor pins every host key (StrictHostKeyChecking=yes)", example)
    parts = text.split()
    if len(parts) < 2:
        raise ConfigError(key, "must be '<key type> <base64 key>'", example)
    key_type, encoded = parts[0], parts[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ConfigError(key, "the key is not valid base64", example) from None
    # An SSH public key blob starts with its type as a length-prefixed string.
    length = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if length < 0 or blob[4:4 + length].decode("ascii", "replace") != key_type:
        raise ConfigError(key, f"the key data is not a {key_type} public key", example)
    return key_type, blob


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint, for error messages that name a key without printing it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class Connection:
    """The `connection` input of a remote resource, validated, with pulumi-command's defaults filled in."""

    host: str
    port: int
    user: str
    private_key: str = field(repr=False)
    host_key_type: str
    host_key_blob: bytes = field(repr=False)
    dial_error_limit: int
    per_dial_timeout: int

    @classmethod
    def from_inputs(cls, raw: object, key: str) -> "Connection":
        if not isinstance(raw, Mapping):
            raise ConfigError(key, "must be an object with host, user, privateKey and hostKey")
        for unsupported in ("proxy", "password", "privateKeyPassword", "agentSocketPath"):
            if raw.get(unsupported) is not None:
                raise ConfigError(f"{key}.{unsupported}", "not supported by the executor: use privateKey "
                                  "(unencrypted) and a direct connection")
        host = raw.get("host")
        if not isinstance(host, str) or not HOST_NAME.match(host) or host.startswith("-"):
            raise ConfigError(f"{key}.host", f"must be a host name or IP address, got {host!r}", "10.213.0.11")
        user = raw.get("user", DEFAULT_USER) or DEFAULT_USER
        if not isinstance(user, str) or not USER_NAME.match(user):
            raise ConfigError(f"{key}.user", f"must be a user name, got {user!r}", "admin")
        private_key = raw.get("privateKey")
        if not isinstance(private_key, str) or "PRIVATE KEY-----" not in private_key:
            # Never echo the value: it is a secret even when malformed.
            raise ConfigError(f"{key}.privateKey", "missing or not an OpenSSH/PEM private key")
        key_type, blob = parse_host_key(raw.get("hostKey"), f"{key}.hostKey")
        return cls(
            host=host,
            port=_integer(raw.get("port"), f"{key}.port", DEFAULT_PORT, 1, 65535),
            user=user,
            private_key=private_key,
            host_key_type=key_type,
            host_key_blob=blob,
            dial_error_limit=_integer(raw.get("dialErrorLimit"), f"{key}.dialErrorLimit",
                                      DEFAULT_DIAL_ERROR_LIMIT, -1),
            per_dial_timeout=_integer(raw.get("perDialTimeout"), f"{key}.perDialTimeout",
                                      DEFAULT_PER_DIAL_TIMEOUT, 0),
        )

    @property
    def label(self) -> str:
        """How progress lines and errors name the host."""
        return self.host if self.port == DEFAULT_PORT else f"{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """known_hosts spells a non-default port as [host]:port."""
        return self.host if self.port == DEFAULT_PORT else f"[{self.host}]:{self.port}"

    @property
    def host_key_line(self) -> str:
        return f"{self.host_key_type} {base64.b64encode(self.host_key_blob).decode()}"


def check_environment(raw: object, key: str) -> dict[str, str]:
    """`environment` input -> {name: value}; names must be shell identifiers that make sense remotely."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be an object of NAME: value strings", '{"RAILS_ENV": "production"}')
    env: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise ConfigError(f"{key}.{name}", "is not a valid environment variable name")
        if LOCAL_ONLY_ENV.match(name):
            raise ConfigError(f"{key}.{name}", "cannot be sent: it would change the local ssh client, "
                              "not the remote command")
        if not isinstance(value, str) or "\0" in value:
            raise ConfigError(f"{key}.{name}", "value must be a string without NUL bytes")
        env[name] = value
    return env


@dataclass
class _Master:
    """One master connection: its files in the runner's temp dir and the `ssh -M -N` process we started."""

    number: int
    key_file: Path
    known_hosts: Path
    socket: Path
    log_file: Path
    process: subprocess.Popen | None = None
    probed: dict[frozenset[str], frozenset[str]] = field(default_factory=dict)


class SshRunner:
    """Runs commands over SSH for one executor run; use as a context manager so masters and keys go away."""

    def __init__(self, log: Callable[[str], None] = print, *, sleep: Callable[[float], None] = time.sleep):
        self._log = log
        self._sleep = sleep
        self._ssh = shutil.which("ssh")
        self._dir: Path | None = None
        self._socket_dir: Path | None = None
        self._masters: dict[tuple, _Master] = {}

    def __enter__(self) -> "SshRunner":
        if self._ssh is None:
            raise SshError("the OpenSSH client (ssh) is not installed: apt-get install openssh-client")
        # mkdtemp makes the directory mode 700: only we can read the key files inside it.
        self._dir = Path(tempfile.mkdtemp(prefix="ecom-executor-"))
        self._socket_dir = self._dir
        if len(str(self._dir)) > MAX_SOCKET_DIR:
            # A control socket path must fit sockaddr_un (108 bytes, and ssh adds a 17-character suffix while
            # it binds): with a long TMPDIR the sockets go to a short private dir under /tmp instead.
            self._socket_dir = Path(tempfile.mkdtemp(prefix="ecx-", dir="/tmp"))
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop every master we started (by its pid, through Popen) and delete keys, sockets, known_hosts."""
        for master in self._masters.values():
            self._stop(master)
        self._masters.clear()
        for directory in {self._dir, self._socket_dir} - {None}:
            shutil.rmtree(directory, ignore_errors=True)
        self._dir = self._socket_dir = None

    # -- public ---------------------------------------------------------------------------------------------

    def run(self, conn: Connection, command: str, *, stdin: bytes | None = None,
            env: Mapping[str, str] | None = None,
            optional_env: Mapping[str, str] | None = None) -> CommandResult:
        """Run `command` with the remote user's shell; raises SshError when the connection (not the command) fails.

        `env` must reach the command (the provider fails when sshd refuses one); `optional_env` (the previous
        outputs) is sent optimistically: a refusal is logged once and the command runs without it.
        """
        env = dict(env or {})
        optional_env = {k: v for k, v in (optional_env or {}).items() if v}
        master = self._connected_master(conn)
        self._check_env_accepted(conn, master, env, optional_env)
        return self._exec(conn, master, command, stdin, {**optional_env, **env})

    def connect(self, conns: list[Connection]) -> list[SshError | None]:
        """Dial the master of every connection at once, each with its own retries; per connection, the error
        that stopped it or None. A master only listens once the pinned host key and the login were accepted,
        so this is a login check of N hosts in about the time of one; later commands reuse the masters."""
        # Files and numbers first, from this thread only; one dial per distinct master.
        numbers = [self._master(conn).number for conn in conns]
        distinct = {}
        for number, conn in zip(numbers, conns):
            distinct.setdefault(number, conn)
        if not distinct:
            return []

        def dial(conn: Connection) -> SshError | None:
            try:
                self._connected_master(conn)
            except SshError as err:
                return err
            return None

        with ThreadPoolExecutor(max_workers=min(len(distinct), 16)) as pool:
            errors = dict(zip(distinct, pool.map(dial, distinct.values())))
        return [errors[number] for number in numbers]

    # -- connection -----------------------------------------------------------------------------------------

    def _master(self, conn: Connection) -> _Master:
        identity = (conn.host, conn.port, conn.user, conn.private_key, conn.host_key_line)
        master = self._masters.get(identity)
        if master is None:
            master = self._new_master(conn, len(self._masters))
            self._masters[identity] = master
        return master

    def _connected_master(self, conn: Connection) -> _Master:
        master = self._master(conn)
        if master.process is None or master.process.poll() is not None:
            # First use, or the master died (host rebooted by a step): dial again, with retries.
            master.process = None
            master.probed.clear()
            master.process = self._dial(conn, master)
        return master

    def _new_master(self, conn: Connection, number: int) -> _Master:
        assert self._dir is not None, "SshRunner used outside its `with` block"
        master = _Master(number, self._dir / f"key-{number}", self._dir / f"known_hosts-{number}",
                         self._socket_dir / f"cm-{number}", self._dir / f"master-{number}.log")
        key_text = conn.private_key if conn.private_key.endswith("\n") else conn.private_key + "\n"
        _write_private(master.key_file, key_text)
        _write_private(master.known_hosts, f"{conn.known_hosts_name} {conn.host_key_line}\n")
        return master

    def _options(self, conn: Connection, master: _Master) -> list[str]:
        """Options for every ssh we start: nothing from ~/.ssh or /etc/ssh, only this connection's key and pin."""
        options = {
            "BatchMode": "yes",  # never prompt: a missing key is an error, not a hang
            "IdentitiesOnly": "yes",
            "IdentityAgent": "none",
            "IdentityFile": str(master.key_file),
            "UserKnownHostsFile": str(master.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes",
            "CheckHostIP": "no",
            "UpdateHostKeys": "no",
            "LogLevel": "ERROR",
            "ControlPath": str(master.socket),
        }
        if conn.per_dial_timeout:
            options["ConnectTimeout"] = str(conn.per_dial_timeout)
        argv = ["-F", "/dev/null", "-p", str(conn.port), "-l", conn.user]
        for name, value in options.items():
            argv += ["-o", f"{name}={value}"]
        return argv

    def _dial(self, conn: Connection, master: _Master) -> subprocess.Popen:
        """Dial until it works or dialErrorLimit failures have happened (-1: no limit), like the provider."""
        failures = 0
        delay = FIRST_RETRY_DELAY
        while True:
            try:
                return self._dial_once(conn, master)
            except DialError as err:
                failures += 1
                limit = conn.dial_error_limit
                if limit != -1 and failures > limit:
                    raise DialError(f"could not connect to {conn.user}@{conn.label} after {failures} "
                                    f"attempt(s): {err}") from None
                shown = "inf" if limit == -1 else str(limit)
                self._log(f"[executor] {conn.label}: dial {failures}/{shown} failed ({err}): "
                          f"retrying in {delay:.2f} s")
                self._sleep(delay)
                delay = min(delay * RETRY_BACKOFF, MAX_RETRY_DELAY)

    def _dial_once(self, conn: Connection, master: _Master) -> subprocess.Popen:
        master.socket.unlink(missing_ok=True)
        argv = [self._ssh, *self._options(conn, master), "-M", "-N",
                "-o", "ControlPersist=no",
                # The master forwards whatever env its sessions send; each session's own SendEnv picks names.
                "-o", "SendEnv=*",
                "--", conn.host]
        with open(master.log_file, "wb") as log_file:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=log_file, env=_client_env())
        # OpenSSH's ConnectTimeout covers the TCP connect; this deadline also covers key exchange and auth.
        deadline = time.monotonic() + conn.per_dial_timeout if conn.per_dial_timeout else None
        while True:
            if master.socket.exists():  # the master listens only after the host key and auth checks passed
                return process
            if process.poll() is not None:
                problem = master.log_file.read_text(errors="replace")
                if "Host key verification failed" in problem:
                    raise HostKeyMismatch(
                        f"host key of {conn.label} does not match connection.hostKey (pinned "
                        f"{conn.host_key_type} {fingerprint(conn.host_key_blob)}): refused before running anything")
                raise DialError(_last_line(problem) or f"ssh exited {process.returncode}")
            if deadline is not None and time.monotonic() > deadline:
                self._stop(master, process)
                raise DialError(f"no SSH session within perDialTimeout={conn.per_dial_timeout} s")
            time.sleep(0.01)

    def _stop(self, master: _Master, process: subprocess.Popen | None = None) -> None:
        process = process or master.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        master.socket.unlink(missing_ok=True)

    # -- sessions -------------------------------------------------------------------------------------------

    def _check_env_accepted(self, conn: Connection, master: _Master, env: Mapping[str, str],
                            optional_env: Mapping[str, str]) -> None:
        """OpenSSH's client sends env requests without asking for a reply, so a name missing from sshd's
        AcceptEnv is dropped silently. pulumi-command fails the step instead; we find out with one probe per
        connection and set of names, which prints only the names that did not arrive (never values)."""
        names = frozenset(env) | frozenset(optional_env)
        if not names:
            return
        if names not in master.probed:
            result = self._exec(conn, master, env_probe_script(names), None, {**optional_env, **env})
            if result.exit_code != 0:
                raise SshError(f"checking which environment variables sshd on {conn.label} accepts failed "
                               f"(exit {result.exit_code}): {_last_line(result.stderr)}")
            missing = frozenset(line.strip() for line in result.stdout.splitlines()) & names
            master.probed[names] = missing
            dropped = sorted(missing & frozenset(optional_env))
            if dropped:
                self._log(f"[executor] {conn.label}: warning: sshd does not accept {', '.join(dropped)} "
                          "(AcceptEnv); the command runs without the previous output")
        refused = sorted(master.probed[names] & frozenset(env))
        if refused:
            raise EnvNotAccepted(f"sshd on {conn.label} did not accept environment variable(s) "
                                 f"{', '.join(refused)}: add them to AcceptEnv in its sshd_config")

    def _exec(self, conn: Connection, master: _Master, command: str, stdin: bytes | None,
              env: Mapping[str, str]) -> CommandResult:
        argv = [self._ssh, *self._options(conn, master), "-o", "ControlMaster=no", "-T"]
        for name in sorted(env):
            argv += ["-o", f"SendEnv={name}"]
        # One argument after the host: ssh sends it unchanged as the exec request, as the provider does.
        argv += ["--", conn.host, command]
        completed = subprocess.run(argv, input=stdin if stdin is not None else b"",
                                   capture_output=True, env={**_client_env(), **env})
        return CommandResult(completed.returncode, _text(completed.stdout), _text(completed.stderr))


def env_probe_script(names: Iterable[str]) -> str:
    """Shell that prints the name of each variable that did not arrive. Names are checked identifiers (see
    check_environment / PREVIOUS_*), so they are safe inside the text; values are never printed."""
    names = sorted(names)
    if not all(ENV_NAME.match(name) for name in names):
        raise ValueError("environment names must be validated before they are put into a script")
    return "".join(f'[ "${{{name}+set}}" = set ] || echo {name}\n' for name in names)


def _client_env() -> dict[str, str]:
    """The local ssh gets a minimal environment: nothing of ours leaks to the host unless SendEnv names it."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8"}


def _text(data: bytes) -> str:
    # The provider stores outputs with one trailing newline removed.
    text = data.decode("utf-8", errors="replace")
    return text[:-1] if text.endswith("\n") else text


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _write_private(path: Path, text: str) -> None:
    """Create a file readable by us only (mode 600 from the first byte, not chmod after writing)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


# -- CopyToRemote -------------------------------------------------------------------------------------------
# The provider copies with SFTP. We stream the bytes on the session's stdin into a small constant script run by
# `sh -c SCRIPT copy-to-remote ARGS...`: values travel as quoted arguments, never inside the script text, and
# the script is the same POSIX sh whatever the remote user's login shell is. It keeps the provider's path rules
# (copied into an existing directory; parents created, as from 1.2.1 on).
# `set -eu` without pipefail on purpose: dash (Debian's sh) has no pipefail, and these scripts have no pipes.

COPY_FILE_SCRIPT = """\
set -eu
dest=$1
name=$2
if [ -d "$dest" ]; then
  if [ -z "$name" ]; then
    echo "remote path $dest is a directory, and a text source has no file name to copy into it" >&2
    exit 1
  fi
  dest="$dest/$name"
fi
mkdir -p -- "$(dirname -- "$dest")"
tmp="$dest.copy-tmp.$$"
trap 'rm -f -- "$tmp"' EXIT
# Written under umask 077 and renamed into place: a reader never sees half a file or a too-open mode.
(umask 077 && cat > "$tmp")
if [ -f "$dest" ]; then chmod --reference="$dest" -- "$tmp"; else chmod 644 -- "$tmp"; fi
mv -f -- "$tmp" "$dest"
trap - EXIT
"""

COPY_DIR_SCRIPT = """\
set -eu
dest=$1
name=$2
contents_only=$3
if [ -e "$dest" ] && [ ! -d "$dest" ]; then
  echo "remote path $dest exists but is not a directory" >&2
  exit 1
fi
# A source without a trailing slash is copied as a directory of that name, like `cp -r src dest/`.
if [ "$contents_only" = no ]; then dest="$dest/$name"; fi
if [ -e "$dest" ] && [ ! -d "$dest" ]; then
  echo "remote path $dest exists but is not a directory" >&2
  exit 1
fi
mkdir -p -- "$dest"
tar -x -f - --no-same-owner -C "$dest"
"""


def _sh_command(script: str, *args: str) -> str:
    return " ".join(["sh", "-c", shlex.quote(script), "copy-to-remote", *map(shlex.quote, args)])


def copy_file_script(remote_path: str, file_name: str) -> str:
    """Command that writes its stdin to remote_path (or remote_path/file_name when that is a directory)."""
    return _sh_command(COPY_FILE_SCRIPT, remote_path, file_name)


def copy_dir_script(remote_path: str, dir_name: str, contents_only: bool) -> str:
    """Command that unpacks the tar stream on its stdin under remote_path."""
    return _sh_command(COPY_DIR_SCRIPT, remote_path, dir_name, "yes" if contents_only else "no")
