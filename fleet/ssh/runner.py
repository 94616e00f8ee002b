"""`SshRunner`: commands over OpenSSH master connections (pinned host key, dial retries, env checked)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .connection import ENV_NAME, Connection, fingerprint
from .errors import DialError, EnvNotAccepted, HostKeyMismatch, SshError

# Backoff between dials: the provider uses the Pulumi SDK's retry.Until defaults (100 ms, x1.5, at most 5 s).
FIRST_RETRY_DELAY = 0.1
RETRY_BACKOFF = 1.5
MAX_RETRY_DELAY = 5.0

MAX_SOCKET_DIR = 60  # bytes of directory path that leave room for "/cm-N" plus ssh's temporary suffix


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str


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
    # Steps on one host may run at once (the executor runs independent steps in threads): one dial at a time.
    lock: threading.Lock = field(default_factory=threading.Lock)


class SshRunner:
    """Runs commands over SSH for one executor run; use as a context manager so masters and keys go away."""

    def __init__(self, log: Callable[[str], None] = print, *, sleep: Callable[[float], None] = time.sleep):
        self._log = log
        self._sleep = sleep
        self._ssh = shutil.which("ssh") or ""
        self._dir: Path | None = None
        self._socket_dir: Path | None = None
        self._masters: dict[tuple, _Master] = {}
        self._masters_lock = threading.Lock()

    def __enter__(self) -> SshRunner:
        if not self._ssh:
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
        for directory in {self._dir, self._socket_dir}:
            if directory is not None:
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
        master = self._master(conn)
        with master.lock:
            self._connected_master(conn)
            self._check_env_accepted(conn, master, env, optional_env)
        return self._exec(conn, master, command, stdin, {**optional_env, **env})

    def connect(self, conns: list[Connection]) -> list[SshError | None]:
        """Dial the master of every connection at once, each with its own retries; per connection, the error
        that stopped it or None. A master only listens once the pinned host key and the login were accepted,
        so this is a login check of N hosts in about the time of one; later commands reuse the masters.
        Each new login then runs `true` (once: a connection already logged in is not asked again): a login whose
        commands cannot run (a nologin shell, a ForceCommand) fails here, before anything ran anywhere, and the
        first session's cost (sshd opens the PAM session there, about 0.05 s) is paid now, not by the first step."""
        # Files and numbers first, from this thread only; one dial per distinct master.
        numbers = [self._master(conn).number for conn in conns]
        distinct: dict[int, Connection] = {}
        for number, conn in zip(numbers, conns, strict=True):
            distinct.setdefault(number, conn)
        if not distinct:
            return []

        def dial(conn: Connection) -> SshError | None:
            master = self._master(conn)
            try:
                with master.lock:
                    if master.process is not None and master.process.poll() is None:
                        return None                       # logged in, and a command ran on it, earlier
                    self._connected_master(conn)
                    result = self._exec(conn, master, "true", None, {})
                    if result.exit_code != 0:
                        self._stop(master)                # not kept: the next connect dials and checks again
            except SshError as err:
                return err
            if result.exit_code != 0:
                return SshError(f"{conn.user}@{conn.label}: logged in, but a command cannot run there (`true` "
                                f"exited {result.exit_code}): {_last_line(result.stderr or result.stdout)}")
            return None

        with ThreadPoolExecutor(max_workers=min(len(distinct), 16)) as pool:
            errors = dict(zip(distinct, pool.map(dial, distinct.values()), strict=True))
        return [errors[number] for number in numbers]

    # -- connection -----------------------------------------------------------------------------------------

    def _master(self, conn: Connection) -> _Master:
        with self._masters_lock:
            master = self._masters.get(conn.login)
            if master is None:
                master = self._new_master(conn, len(self._masters))
                self._masters[conn.login] = master
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
        assert self._dir is not None and self._socket_dir is not None, "SshRunner used outside its `with` block"
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
            # curve25519 first, as pulumi-command's Go client negotiates with Debian 12's sshd (x/crypto/ssh has no
            # sntrup761): OpenSSH's default hybrid costs about 0.07 s of CPU per login (0.3-0.4 s for a fleet's six
            # logins on 2 cores, 0.15 s with this). `^`: the defaults stay, after it, for a host that lacks it.
            "KexAlgorithms": "^curve25519-sha256,curve25519-sha256@libssh.org",
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
