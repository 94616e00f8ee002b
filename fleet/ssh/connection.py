"""The `connection` input of a remote resource, validated with pulumi-command's defaults, and the `environment`
input."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ecom_infra.errors import ConfigError

# pulumi-command's names for the previous run's outputs (provider/pkg/provider/util).
PREVIOUS_STDOUT = "PULUMI_COMMAND_STDOUT"
PREVIOUS_STDERR = "PULUMI_COMMAND_STDERR"

# pulumi-command's connection defaults (provider/pkg/provider/remote/connection.go).
DEFAULT_USER = "root"
DEFAULT_PORT = 22
DEFAULT_DIAL_ERROR_LIMIT = 10
DEFAULT_PER_DIAL_TIMEOUT = 15

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The values of `environment` reach ssh through its own process environment (SendEnv), so a name that changes
# how the local ssh or its dynamic loader behaves must not be accepted: it would act here, not on the host.
LOCAL_ONLY_ENV = re.compile(r"(LD_|SSH_)|(PATH|HOME)\Z")
HOST_NAME = re.compile(r"[A-Za-z0-9.:_%\[\]-]+\Z")
USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?\Z")


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
    def from_inputs(cls, raw: object, key: str) -> Connection:
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

    @property
    def login(self) -> tuple:
        """What makes two connections one login (one master connection of an SshRunner): the same address, user
        and key, and the same pinned host key."""
        return (self.host, self.port, self.user, self.private_key, self.host_key_line)


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
