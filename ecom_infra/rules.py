"""Every input rule in one place: named patterns, allowed ranges and small checks.

Anything a person types (stack config, sha file, CLI argument) or that a renderer puts into
a shell, a path or a config file is matched here. Every check raises `ConfigError` (re-exported
here) with one line: the key, what is wrong and, where it helps, a valid example, e.g.
`ecom-infra:deploy.keepReleases: must be an integer from 2 to 50, got 1 (example: 5)`.
Defaults live in `ecom_infra.defaults`, never here.

Public API (all patterns are compiled; use `.fullmatch`, or `match()` below):
- names:   APP_NAME (an app, 2-40), NAME (a stack/environment, a step, a host: kebab-case, 1-63),
           UNIX_NAME, ENV_NAME, PACKAGE, SERVER_NAME, INTERFACE, WHO, ACTOR, TAG_KEY, TAG_VALUE
- git:     BRANCH, SHA, GIT_SCP, GIT_SSH, KNOWN_HOST, SSH_PUBKEY
- paths:   ABS_PATH, LINK_PATH, REPO_PATH, URL_PATH, HTTP_URL, BIND
- AWS:     REGION, AZ, INSTANCE_TYPE, VPC_ID, SUBNET_ID, AMI_ID, AMI_OWNER, AMI_NAME, BUCKET, S3_KEY,
           INSTANCE_ID, ALLOCATION_ID
- misc:    HOSTNAME, UTC_TIME
- scripts: SCRIPT_XTRACE, SCRIPT_STDIN_TO_OUTPUT, SCRIPT_COMMENT (what a secret-reading step may not do)
- ranges:  (low, high) tuples named after their key, e.g. KEEP_RELEASES, SERVERS, PORT, HOOK_TIMEOUT
- sets:    HOOK_POINTS, HOOK_IF_CHANGED_POINTS, RESERVED_LINK_PATHS, RESERVED_ENV_NAMES, SYSTEM_DIRS,
           SYSTEM_TREES, SYSTEM_ACCOUNTS, ADMIN_MIN_PREFIX
- checks:  fail, check, show, key_name, match, check_count, check_bool, check_mapping, check_list,
           check_unknown_keys, check_path, is_repo_path, check_http_url, redact_url, check_branch, check_cidr,
           check_ipv4, check_sha
Each check returns the (normalised) value, so `x = check_count(raw, key, *SERVERS, "2")` reads as one line.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, NoReturn

from .errors import ConfigError

__all__ = ["ConfigError", "fail", "check", "show", "key_name", "match", "check_count", "check_bool",
           "check_mapping", "check_list", "check_unknown_keys", "check_path", "check_http_url", "redact_url",
           "check_branch", "check_cidr", "check_ipv4", "check_sha"]

# ----------------------------------------------------------------------------- patterns
# Strict shapes for everything that reaches a shell, a path or a config file.

# An app: it names folders, units, nginx sites, HAProxy backends and hosts (`<app>-<n>`), so it is short
# and ends in a letter or digit. (Renderers used to allow 63 characters; settings always refused more than 40.)
APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
# A stack/environment, step or host name: kebab-case, up to 63 (a DNS label's length).
NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
UNIX_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")          # a shell/systemd/Rails variable name
PACKAGE = re.compile(r"^[a-z0-9][a-z0-9.+-]+$")               # a Debian package name
SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # an HAProxy server line's name
INTERFACE = re.compile(r"^[A-Za-z0-9._-]{1,15}$")             # a Linux network interface (IFNAMSIZ - 1)
WHO = re.compile(r"^[A-Za-z0-9@._ -]{0,64}$")                 # who deployed, as revisions.log names them
# GitHub logins, bot names like `dependabot[bot]`, e-mail-like CI users; ASCII only,
# because S3 metadata travels in HTTP headers.
ACTOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+\[\]-]{0,99}$")
TAG_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.:/=+@-]{0,127}$")
TAG_VALUE = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{0,255}$")

BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
SHA = re.compile(r"^[0-9a-f]{40}$")
EXAMPLE_SHA = "3f1c0d5e9a7b2c4d6e8f0a1b3c5d7e9f1a2b4c6d"
# git over SSH only (the deploy key is an SSH key): scp-like or ssh:// form.
GIT_SCP = re.compile(r"^(?P<user>[a-z_][a-z0-9_-]{0,31})@(?P<host>[a-z0-9.-]+)"
                     r":(?P<path>[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)$")
GIT_SSH = re.compile(r"^ssh://(?P<user>[a-z_][a-z0-9_-]{0,31})@(?P<host>[a-z0-9.-]+)(:(?P<port>[0-9]{1,5}))?"
                     r"/(?P<path>[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)$")
KNOWN_HOST = re.compile(r"^(\[[a-z0-9.-]+\]:[0-9]{1,5}|[a-z0-9.-]+)"
                        r" (ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa)"
                        r" [A-Za-z0-9+/]+={0,3}$")
SSH_PUBKEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) [A-Za-z0-9+/]+={0,3}( [A-Za-z0-9@._-]{1,64})?$")

ABS_PATH = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
# A path inside a release (linkedDirs/linkedFiles): relative, no leading '.', at most 10 parts.
LINK_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9_][A-Za-z0-9._-]{0,99}){0,9}$")
# A path in the app's git repository (hooks' ifChanged): relative, at most 10 parts; dotfiles allowed
# (`.ruby-version`), '.' and '..' parts are not (is_repo_path). No ':', '*', '?', '[': git reads none as magic.
REPO_PATH = re.compile(r"^[A-Za-z0-9._-]{1,100}(/[A-Za-z0-9._-]{1,100}){0,9}$")
URL_PATH = re.compile(r"^/[A-Za-z0-9._~/-]{0,200}$")
HTTP_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")
BIND = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3})?:\d{1,5}$")   # haproxy `bind`: [ipv4]:port

HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
UTC_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")   # 2024-05-01T12:00:00Z

REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
AZ = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
AMI_OWNER = re.compile(r"^([0-9]{12}|amazon|self|aws-marketplace)$")
AMI_NAME = re.compile(r"^[A-Za-z0-9*?._ ()/-]{1,128}$")
BUCKET = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
S3_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}$")
INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
ALLOCATION_ID = re.compile(r"^eipalloc-(?:[0-9a-f]{8}|[0-9a-f]{17})$")

# Shell scripts that receive a secret on stdin must not be able to print it (components/remote_steps.py).
# xtrace in any form: it prints every command with its expanded arguments (a secret read from stdin included).
SCRIPT_XTRACE = re.compile(r"""(?x)
    \bset\s+(?:-[A-Za-z]*x|-o\s+xtrace)        # set -x, set -euxo pipefail, set -o xtrace
  | \bshopt\s+-[a-z]*\s*-o\s+xtrace          # shopt -s -o xtrace
  | \b(?:ba)?sh\s+(?:-[A-Za-z]*x|-o\s+xtrace)  # bash -x script
  | \bBASH_XTRACEFD\b | \bSHELLOPTS=
""")
# stdin copied to the output: a bare `cat`, or `tee` (which always writes to stdout).
SCRIPT_STDIN_TO_OUTPUT = re.compile(r"(?:^|[|;&(]\s*)(?:cat\s*(?:$|[|;&)])|tee\b)")
SCRIPT_COMMENT = re.compile(r"(?:^|\s)#.*$")

# ----------------------------------------------------------------------------- ranges
# (low, high), inclusive; named after the key they bound. Use: check_count(v, key, *KEEP_RELEASES, "5").
SERVERS = (1, 100)
RESTART_BATCH = (1, 100)            # and at most servers - 1 (settings checks that against the app)
HEALTH_CHECK_TIMEOUT = (1, 600)
PUMA_WORKERS = (0, 64)
PUMA_THREADS = (1, 64)
KEEP_RELEASES = (2, 50)             # settings allowed 2-50, the app server renderer 2-100: the README says 2-50
HOOK_TIMEOUT = (1, 86400)
HOOK_COMMAND_MAX = 1000             # characters of one hook command
HOOK_IF_CHANGED_MAX = 20            # paths in one hook's ifChanged
ENV_VALUE_MAX = 32768               # characters of one variable's value
NONCURRENT_DAYS = (1, 36500)        # S3 lifecycle: NoncurrentDays >= 1
NONCURRENT_KEPT = (0, 100)          # S3 lifecycle: NewerNoncurrentVersions <= 100
VRRP_ROUTER_ID = (1, 255)
CHECK_INTERVAL = (1, 60)
EVENT_TIMEOUT = (1, 60)
PORT = (1, 65535)

# ----------------------------------------------------------------------------- named sets

# Release hooks: where in a release they run (README "Release life cycle").
HOOK_POINTS = ("afterBuild", "afterPublish", "onFailure")
# Points whose hooks may name ifChanged paths: they run for a sha being deployed, which has a live
# release to compare with; onFailure runs after a failure, whatever changed.
HOOK_IF_CHANGED_POINTS = ("afterBuild", "afterPublish")
# Release paths the release steps own: linking them (or anything inside or around them) would break a step.
RESERVED_LINK_PATHS = ("public/assets", ".bundle", "REVISION", "Gemfile", "Gemfile.lock")
# App environment: the names the platform sets itself (or that would change how the deploy user's
# processes run) are not the app's to set.
RESERVED_ENV_NAMES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "LANG", "LC_ALL", "RAILS_ENV",
                                "RACK_ENV", "BUNDLE_GEMFILE", "BUNDLE_APP_CONFIG", "LD_PRELOAD", "LD_LIBRARY_PATH",
                                "RUBYOPT", "RUBYLIB", "GEM_HOME", "GEM_PATH", "NOTIFY_SOCKET"})
# System folders: `deploy.root` must not be one of them or a parent of one (the layout step
# makes it root-owned 0755, which would e.g. take /tmp's sticky 1777 away), nor sit inside a
# tree that is volatile, shared with other users or owned by the system.
SYSTEM_DIRS = frozenset({
    "/bin", "/boot", "/dev", "/dev/shm", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/lost+found",
    "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp", "/usr",
    "/usr/bin", "/usr/lib", "/usr/local", "/usr/local/bin", "/usr/sbin", "/usr/share", "/var", "/var/backups",
    "/var/cache", "/var/lib", "/var/local", "/var/lock", "/var/log", "/var/mail", "/var/opt", "/var/run",
    "/var/spool", "/var/tmp", "/var/www",
})
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
                "/run", "/sbin", "/sys", "/tmp", "/usr", "/var/lock", "/var/run", "/var/tmp")
# Accounts the deploy user or group must not be: Debian's static system accounts (base-passwd)
# and groups that grant privileges (sudo, adm, docker...). The deploy group is also nginx's
# way into the app's sockets, so a system group would hand those rights around.
SYSTEM_ACCOUNTS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data",
    "backup", "list", "irc", "gnats", "nobody", "nogroup", "_apt", "adm", "tty", "disk", "kmem", "dialout",
    "fax", "voice", "cdrom", "floppy", "tape", "sudo", "audio", "dip", "operator", "src", "shadow", "utmp",
    "video", "sasl", "plugdev", "staff", "users", "wheel", "docker", "lxd", "libvirt", "kvm", "netdev",
    "systemd-journal", "systemd-network", "systemd-resolve", "messagebus", "crontab", "ssh", "_ssh", "admin",
})
ADMIN_MIN_PREFIX = {4: 8, 6: 32}   # the widest admin network one block, or all blocks together, may cover

# ----------------------------------------------------------------------------- checks


def fail(key: str, problem: str, example: str | None = None) -> NoReturn:
    """Raise the one error type: `key: problem (example: ...)` on one line."""
    raise ConfigError(key, problem, example)


def check(ok: bool, key: str, problem: str, example: str | None = None) -> None:
    """`fail` unless `ok` (for rules that are a condition, not a pattern)."""
    if not ok:
        raise ConfigError(key, problem, example)


def show(value: Any) -> str:
    """A value as a message may quote it: repr, cut to 60 characters (it is user input)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def key_name(name: str) -> str:
    """A config key as it may appear in a message: short and printable (it is user input too)."""
    return name if len(name) <= 60 and name.isprintable() and name.isascii() else show(name)


def match(value: Any, pattern: re.Pattern[str], key: str, what: str, example: str) -> str:
    """`value` if it is a string matching all of `pattern`; else `key: must be <what>, got ...`."""
    if not isinstance(value, str):
        fail(key, f"must be {what}, got {type(value).__name__} {show(value)}", example)
    if not pattern.fullmatch(value):
        fail(key, f"must be {what}, got {show(value)}", example)
    return value


def check_count(value: Any, key: str, low: int, high: int, example: str | None = None) -> int:
    """An integer from `low` to `high`; a string of ASCII digits is taken (YAML and `pulumi config set`
    hand numbers over as text), a bool is not."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):  # ASCII: "٣".isdigit()
            value = int(value)
        else:
            fail(key, f"must be an integer from {low} to {high}, got {show(value)}", example)
    if not low <= value <= high:
        shown = str(value) if abs(value) < 10 ** 12 else f"a {len(hex(value))}-hex-digit number"  # str() of a
        fail(key, f"must be an integer from {low} to {high}, got {shown}", example)  # huge int raises
    return value


def check_bool(value: Any, key: str) -> bool:
    """True/False, or the strings "true"/"false" (a plain `pulumi config set`)."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    fail(key, f"must be true or false, got {show(value)}", "true")


def check_mapping(value: Any, key: str, example: str) -> dict[str, Any]:
    """A mapping; None (the key is absent) is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(key, f"must be a mapping, got {type(value).__name__}", example)
    return value


def check_list(value: Any, key: str, example: str, min_items: int = 0) -> list[Any]:
    """A list of at least `min_items`; None (the key is absent) is an empty one."""
    if value is None:
        value = []
    if not isinstance(value, list):
        fail(key, f"must be a list, got {type(value).__name__} {show(value)}", example)
    if len(value) < min_items:
        fail(key, f"must have at least {min_items} item(s)", example)
    return value


def check_unknown_keys(obj: dict[str, Any], allowed: set[str], key: str) -> None:
    """A section's keys are all known: a typo would otherwise be ignored and a default silently apply."""
    extra = sorted(set(obj) - allowed)
    if extra:
        fail(f"{key}.{key_name(extra[0])}", f"is not a known setting (known: {', '.join(sorted(allowed))})")


def check_path(value: Any, key: str, example: str) -> str:
    """An absolute path of plain characters, without '.' or '..' segments."""
    path = match(value, ABS_PATH, key, "an absolute path of letters, digits, '.', '_', '-'", example)
    if any(part in (".", "..") for part in path.split("/")):
        fail(key, f"must not contain '.' or '..' segments, got {show(path)}", example)
    return path


def is_repo_path(value: Any) -> bool:
    """A REPO_PATH without '.' or '..' parts (settings and the app server renderer both check it)."""
    return (isinstance(value, str) and bool(REPO_PATH.fullmatch(value))
            and not any(part in (".", "..") for part in value.split("/")))


def check_http_url(value: Any, key: str) -> str:
    """An http(s) endpoint URL with a real port (stack config and the CLI's --endpoint-url)."""
    example = "http://127.0.0.1:5000"
    url = match(value, HTTP_URL, key, "an http(s) URL", example)
    port = re.match(r"^https?://[^/:]+:([0-9]+)", url)
    if port and not PORT[0] <= int(port.group(1)) <= PORT[1]:
        fail(key, f"port must be 1-65535, got {port.group(1)}", example)
    return url


def redact_url(url: str) -> str:
    """A URL without any user:password@ part, for messages."""
    return re.sub(r"(?<=://)[^/@\s]+@", "***@", url)


def check_branch(value: Any, key: str) -> str:
    """A git branch name git itself would take (no '..', '//', '.lock' ending...)."""
    branch = match(value, BRANCH, key, "a git branch name (letters, digits, '.', '_', '/', '-')", "master")
    if ".." in branch or "//" in branch or branch.endswith((".lock", "/", ".")) or "/." in branch:
        fail(key, f"is not a valid git branch name: {show(branch)}", "master")
    return branch


def check_cidr(value: Any, key: str) -> str:
    """A CIDR block (host bits zero), normalised."""
    example = "203.0.113.0/24"
    if not isinstance(value, str) or "/" not in value:
        fail(key, f"must be a CIDR block, got {show(value)}", example)
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        fail(key, f"is not a valid CIDR block ({exc})", example)


def check_ipv4(value: Any, key: str, example: str = "10.0.1.10") -> str:
    """An IPv4 address."""
    try:
        ipaddress.IPv4Address(value)
    except (ipaddress.AddressValueError, ValueError):
        fail(key, f"{value!r} is not an IPv4 address", example)
    return value


def check_sha(value: object, key: str) -> str:
    """`value` as a commit sha (40 hex, lowercased)."""
    if not isinstance(value, str):
        fail(key, f"must be a 40-character hex commit sha, got {type(value).__name__}", EXAMPLE_SHA)
    sha = value.strip().lower()
    if not SHA.fullmatch(sha):
        shown = repr(value if len(value) <= 60 and value.isprintable() else value[:60])   # quoted once
        fail(key, f"must be a 40-character hex commit sha, got {shown} ({len(value)} characters)", EXAMPLE_SHA)
    return sha
