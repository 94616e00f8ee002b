"""What can go wrong with the connection (never the command): nothing ran on the host for that step."""

from __future__ import annotations


class SshError(Exception):
    """The connection, not the command, failed: nothing ran on the host for this step."""


class DialError(SshError):
    """Could not connect (refused, timed out, authentication failed) within dialErrorLimit attempts."""


class HostKeyMismatch(SshError):
    """The host presented a key other than connection.hostKey: refused before any command ran."""


class EnvNotAccepted(SshError):
    """sshd dropped an `environment` variable because its name is not in AcceptEnv."""
