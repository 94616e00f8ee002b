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

Modules: `connection` (the validated connection and environment inputs), `errors`, `runner` (`SshRunner`),
`copy` (the CopyToRemote scripts).
"""

from __future__ import annotations

from .connection import PREVIOUS_STDERR, PREVIOUS_STDOUT, Connection, check_environment, fingerprint, parse_host_key
from .copy import COPY_DIR_SCRIPT, COPY_FILE_SCRIPT, copy_dir_script, copy_file_script
from .errors import DialError, EnvNotAccepted, HostKeyMismatch, SshError
from .runner import CommandResult, SshRunner, env_probe_script

__all__ = ["COPY_DIR_SCRIPT", "COPY_FILE_SCRIPT", "PREVIOUS_STDERR", "PREVIOUS_STDOUT", "CommandResult",
           "Connection", "DialError", "EnvNotAccepted", "HostKeyMismatch", "SshError", "SshRunner",
           "check_environment", "copy_dir_script", "copy_file_script", "env_probe_script", "fingerprint",
           "parse_host_key"]
