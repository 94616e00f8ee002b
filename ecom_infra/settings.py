"""Stack settings: the only reader of Pulumi config.

`load()` reads `Pulumi.<stack>.yaml` through `pulumi.Config`, and `parse()` turns the raw
values into frozen dataclasses, validating every value that can reach a shell, a path or
a config file against a strict pattern. Any problem raises `ConfigError` with one line
that names the key, says what is wrong and shows a valid example, before any resource
is declared.

Config keys (all under the `ecom-infra:` namespace unless noted) are documented in the
README's "Config reference"; the dataclasses below mirror them.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

ENVIRONMENTS = ("staging", "production", "local")

# Strict patterns for everything that reaches a shell, a path or a config file.
APP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
BRANCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
UNIX_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
ABS_PATH_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
URL_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]{0,200}$")
INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
AZ_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$")
VPC_ID_RE = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SUBNET_ID_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")
AMI_ID_RE = re.compile(r"^ami-[0-9a-f]{8,17}$")
AMI_OWNER_RE = re.compile(r"^([0-9]{12}|amazon|self|aws-marketplace)$")
AMI_NAME_RE = re.compile(r"^[A-Za-z0-9*?._ ()/-]{1,128}$")
BUCKET_RE = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
S3_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}$")
HTTP_URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")
# git over SSH only (the deploy key is an SSH key): scp-like or ssh:// form.
GIT_SCP_RE = re.compile(r"^(?P<user>[a-z_][a-z0-9_-]{0,31})@(?P<host>[a-z0-9.-]+):(?P<path>[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)$")
GIT_SSH_RE = re.compile(r"^ssh://(?P<user>[a-z_][a-z0-9_-]{0,31})@(?P<host>[a-z0-9.-]+)(:(?P<port>[0-9]{1,5}))?"
                        r"/(?P<path>[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)$")
KNOWN_HOST_RE = re.compile(r"^(\[[a-z0-9.-]+\]:[0-9]{1,5}|[a-z0-9.-]+)"
                           r" (ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa)"
                           r" [A-Za-z0-9+/]+={0,3}$")
SSH_PUBKEY_RE = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) [A-Za-z0-9+/]+={0,3}( [A-Za-z0-9@._-]{1,64})?$")

EXAMPLE_APP = ("{name: ecom-platform, repo: 'git@github.com:emami/ecom-platform.git', branch: master, servers: 2, "
               "hostnames: [shop.example.com]}")


# ----------------------------------------------------------------------------- dataclasses


# What every release linked before these were settings (Capistrano's linked_dirs for a Rails app).
# `public/assets` is not among them: it always links to shared/assets, where the asset cleanup and
# the manifest copies in meta/ look.
DEFAULT_LINKED_DIRS = ("log", "tmp/pids", "tmp/sockets", "tmp/cache")
DEFAULT_LINKED_FILES: tuple[str, ...] = ()
# Paths the release steps own: linking them (or anything inside or around them) would break a step.
RESERVED_LINK_PATHS = ("public/assets", ".bundle", "REVISION", "Gemfile", "Gemfile.lock")
# App environment: names a shell, systemd and Rails all take; the ones the platform sets itself
# (or that would change how the deploy user's processes run) are not the app's to set.
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
RESERVED_ENV_NAMES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "LANG", "LC_ALL", "RAILS_ENV",
                                "RACK_ENV", "BUNDLE_GEMFILE", "BUNDLE_APP_CONFIG", "LD_PRELOAD", "LD_LIBRARY_PATH",
                                "RUBYOPT", "RUBYLIB", "GEM_HOME", "GEM_PATH", "NOTIFY_SOCKET"})
# Release hooks: where in a release they run (README "Release life cycle"), and their limits.
HOOK_POINTS = ("afterBuild", "afterPublish", "onFailure")
HOOK_TIMEOUT_DEFAULT = 600        # seconds a hook may run before it is killed (and fails the deploy)
HOOK_COMMAND_MAX = 1000
LINK_PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9_][A-Za-z0-9._-]{0,99}){0,9}$")


@dataclass(frozen=True)
class GitRemote:
    url: str
    user: str
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class Hook:
    """One release hook: a command run by bash as the deploy user inside the release."""
    point: str             # one of HOOK_POINTS
    run: str
    once: bool = False     # on one server of the app (its first), once per release sha
    timeout: int = HOOK_TIMEOUT_DEFAULT


@dataclass(frozen=True)
class App:
    name: str
    repo: GitRemote
    branch: str
    servers: int
    instance_type: str
    hostnames: tuple[str, ...]
    health_check_path: str
    health_check_timeout: int
    puma_workers: int
    puma_threads: int
    restart_batch: int = 1   # servers whose puma restarts at once; default: all but one (parse_app)
    drain_restarts: bool = True   # False: restarts that keep puma's socket skip the HAProxy drain
    linked_dirs: tuple[str, ...] = DEFAULT_LINKED_DIRS   # release paths linked to the same path under shared/
    linked_files: tuple[str, ...] = DEFAULT_LINKED_FILES
    env: tuple[tuple[str, str], ...] = ()   # plain variables from the stack file, sorted by name
    hooks: tuple[Hook, ...] = ()            # in HOOK_POINTS order, each point's in the order given


@dataclass(frozen=True)
class Deploy:
    user: str
    group: str
    root: str
    keep_releases: int
    rails_env: str


@dataclass(frozen=True)
class Ruby:
    source: str            # "distro": Debian packages ruby + bundler
    bundle_local: bool     # `bundle install --local`: gems come from the image, not rubygems.org


@dataclass(frozen=True)
class Subnet:
    id: str
    az: str
    cidr: ipaddress.IPv4Network


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnets: tuple[Subnet, ...]


@dataclass(frozen=True)
class Ssh:
    user: str
    admin_cidrs: tuple[str, ...]
    public_key: str

    # AWS takes IPv4 and IPv6 blocks in separate rule fields (it rejects IPv6 in `cidr_blocks`).
    @property
    def admin_cidrs_v4(self) -> tuple[str, ...]:
        return tuple(c for c in self.admin_cidrs if ipaddress.ip_network(c).version == 4)

    @property
    def admin_cidrs_v6(self) -> tuple[str, ...]:
        return tuple(c for c in self.admin_cidrs if ipaddress.ip_network(c).version == 6)


@dataclass(frozen=True)
class Ami:
    id: str | None
    owners: tuple[str, ...]
    name_pattern: str


@dataclass(frozen=True)
class ShaBucket:
    name: str
    key: str
    owner: bool            # exactly one stack owns (creates, protects) the bucket; the others only read it
    adopt: bool = False    # owner stack only: import the existing bucket instead of creating it (first up)
    noncurrent_days: int = 365   # owner stack only: noncurrent versions of the sha file expire this long after
    noncurrent_kept: int = 100   # ...they were replaced, except the newest `noncurrent_kept` (0: age alone)


@dataclass(frozen=True)
class Haproxy:
    instance_type: str
    vrrp_router_id: int
    check_interval: int


@dataclass(frozen=True)
class Datadog:
    enabled: bool
    conf_dir: str
    api_url: str = "https://api.datadoghq.com"   # events go to <api_url>/api/v1/events
    api_key_set: bool = False   # `datadog.apiKey` (a secret) is set: deploy events go to Datadog


@dataclass(frozen=True)
class DeployEvents:
    """Where `ecom-deploy deploy-event` sends one event per publish (besides Datadog)."""
    webhook_url: str | None = None
    timeout: int = 5           # seconds per delivery; a failed delivery only warns


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    environment: str
    region: str
    aws_endpoint: str | None
    apps: tuple[App, ...]
    deploy: Deploy
    ruby: Ruby
    network: Network
    ssh: Ssh
    ami: Ami
    sha_bucket: ShaBucket
    haproxy: Haproxy
    datadog: Datadog
    deploy_events: DeployEvents
    git_known_hosts: tuple[str, ...]
    has_tls_certificate: bool
    tags: dict[str, str] = field(default_factory=dict)
    roll_hosts: tuple[str, ...] = ()   # hosts whose ami/keyName/userData changes apply in this run (replacing them)

    def app(self, name: str) -> App:
        for app in self.apps:
            if app.name == name:
                return app
        raise KeyError(name)


@dataclass(frozen=True)
class Secrets:
    """Secret inputs, kept as Pulumi Outputs so they stay secret end to end."""

    deploy_key: Any        # pulumi.Output[str]: the git deploy key (OpenSSH private key)
    ssh_private_key: Any   # pulumi.Output[str]: the key remote commands log in with
    tls_certificate: Any   # pulumi.Output[str] | None: PEM (cert + key) for HAProxy :443
    app_secrets: Any = None   # pulumi.Output[dict[str, tuple[tuple[str, str], ...]]]: per app, validated


# ----------------------------------------------------------------------------- helpers


def _fail(key: str, problem: str, example: str | None = None) -> None:
    raise ConfigError(key, problem, example)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _match(value: Any, pattern: re.Pattern[str], key: str, what: str, example: str) -> str:
    if not isinstance(value, str):
        _fail(key, f"must be {what}, got {type(value).__name__} {_show(value)}", example)
    if not pattern.fullmatch(value):
        _fail(key, f"must be {what}, got {_show(value)}", example)
    return value


def _int(value: Any, key: str, low: int, high: int, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):  # ASCII: "٣".isdigit()
            value = int(value)
        else:
            _fail(key, f"must be an integer from {low} to {high}, got {_show(value)}", example)
    if not low <= value <= high:
        shown = str(value) if abs(value) < 10 ** 12 else f"a {len(hex(value))}-hex-digit number"  # str() of a
        _fail(key, f"must be an integer from {low} to {high}, got {shown}", example)  # huge int raises
    return value


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    _fail(key, f"must be true or false, got {_show(value)}", "true")
    return False  # unreachable


def _mapping(value: Any, key: str, example: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(key, f"must be a mapping, got {type(value).__name__}", example)
    return value


def _list(value: Any, key: str, example: str, min_items: int = 0) -> list[Any]:
    if value is None:
        value = []
    if not isinstance(value, list):
        _fail(key, f"must be a list, got {type(value).__name__} {_show(value)}", example)
    if len(value) < min_items:
        _fail(key, f"must have at least {min_items} item(s)", example)
    return value


def _key_name(name: str) -> str:
    """A config key as it may appear in a message: short and printable (it is user input too)."""
    return name if len(name) <= 60 and name.isprintable() and name.isascii() else _show(name)


def _unknown_keys(obj: dict[str, Any], allowed: set[str], key: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        _fail(f"{key}.{_key_name(extra[0])}", f"is not a known setting (known: {', '.join(sorted(allowed))})")


def _path(value: Any, key: str, example: str) -> str:
    path = _match(value, ABS_PATH_RE, key, "an absolute path of letters, digits, '.', '_', '-'", example)
    if any(part in (".", "..") for part in path.split("/")):
        _fail(key, f"must not contain '.' or '..' segments, got {_show(path)}", example)
    return path


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
SSH_KEY_TYPES = {"ssh-ed25519": "ed25519", "ecdsa-sha2-nistp256": "ecdsa", "ecdsa-sha2-nistp384": "ecdsa",
                 "ecdsa-sha2-nistp521": "ecdsa", "ssh-rsa": "rsa"}
ADMIN_MIN_PREFIX = {4: 8, 6: 32}   # the widest admin network one block, or all blocks together, may cover


def _deploy_root(value: Any, key: str) -> str:
    example = "/srv/www"
    path = _path(value, key, example)
    if path in SYSTEM_DIRS or any(d.startswith(path + "/") for d in SYSTEM_DIRS):
        _fail(key, f"must be a dedicated folder, not the system folder {path}", example)
    for tree in SYSTEM_TREES:
        if path.startswith(tree + "/"):
            _fail(key, f"must not be inside the system folder {tree}, got {_show(path)}", example)
    return path


def _account(value: Any, key: str, what: str, example: str) -> str:
    name = _match(value, UNIX_NAME_RE, key, f"a unix {what} name", example)
    if name in SYSTEM_ACCOUNTS:
        _fail(key, f"must not be the system {what} {name!r}: the app runs unprivileged, in its own {what}",
              example)
    return name


def _ssh_key(value: Any, pattern: re.Pattern[str], key: str, what: str, example: str) -> str:
    """A key line whose base64 blob really is a key of the declared type (not `AAAA`)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - only when validating
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    line = _match(value, pattern, key, what, example)
    keytype, blob = line.split(" ")[-2:] if pattern is KNOWN_HOST_RE else line.split(" ")[:2]
    try:
        loaded = serialization.load_ssh_public_key(f"{keytype} {blob}".encode())
    except (ValueError, TypeError):   # bad base64, truncated, or the blob holds another key type
        loaded = None
    if loaded is None or (isinstance(loaded, rsa.RSAPublicKey) and loaded.key_size < 2048):
        _fail(key, f"has no valid {keytype} key (truncated, corrupt or too weak)", example)
    return line


def http_url(value: Any, key: str) -> str:
    """An http(s) endpoint URL with a real port; the CLI's --endpoint-url uses it too."""
    example = "http://127.0.0.1:5000"
    url = _match(value, HTTP_URL_RE, key, "an http(s) URL", example)
    port = re.match(r"^https?://[^/:]+:([0-9]+)", url)
    if port and not 1 <= int(port.group(1)) <= 65535:
        _fail(key, f"port must be 1-65535, got {port.group(1)}", example)
    return url


def redact_url(url: str) -> str:
    """A URL without any user:password@ part, for messages."""
    return re.sub(r"(?<=://)[^/@\s]+@", "***@", url)


def parse_git_remote(value: Any, key: str) -> GitRemote:
    example = "git@github.com:emami/ecom-platform.git"
    if not isinstance(value, str):
        _fail(key, f"must be a git SSH URL, got {type(value).__name__}", example)
    m = GIT_SCP_RE.fullmatch(value) or GIT_SSH_RE.fullmatch(value)
    if not m:
        _fail(key, f"must be a git SSH URL (user@host:path or ssh://user@host[:port]/path), "
                   f"got {_show(redact_url(value))}", example)
    if ".." in m.group("path").split("/") or not HOSTNAME_RE.fullmatch(m.group("host")):
        _fail(key, f"has a bad host or path: {_show(redact_url(value))}", example)
    port = int(m.groupdict().get("port") or 22)
    if not 1 <= port <= 65535:
        _fail(key, f"port must be 1-65535, got {port}", example)
    return GitRemote(url=value, user=m.group("user"), host=m.group("host"), port=port, path=m.group("path"))


def _branch(value: Any, key: str) -> str:
    branch = _match(value, BRANCH_RE, key, "a git branch name (letters, digits, '.', '_', '/', '-')", "master")
    if ".." in branch or "//" in branch or branch.endswith((".lock", "/", ".")) or "/." in branch:
        _fail(key, f"is not a valid git branch name: {_show(branch)}", "master")
    return branch


def _cidr(value: Any, key: str) -> str:
    example = "203.0.113.0/24"
    if not isinstance(value, str) or "/" not in value:
        _fail(key, f"must be a CIDR block, got {_show(value)}", example)
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        _fail(key, f"is not a valid CIDR block ({exc})", example)
    return ""  # unreachable


# ----------------------------------------------------------------------------- sections


def _parse_app(raw: Any, index: int, defaults: dict[str, Any]) -> App:
    key = f"ecom-infra:apps[{index}]"
    obj = _mapping(raw, key, EXAMPLE_APP)
    _unknown_keys(obj, {"name", "repo", "branch", "servers", "instanceType", "hostnames", "healthCheckPath",
                        "healthCheckTimeout", "pumaWorkers", "pumaThreads", "restartBatch", "drainRestarts", "linkedDirs",
                        "linkedFiles", "env", "hooks"}, key)
    if "name" not in obj:
        _fail(f"{key}.name", "is required", "ecom-platform")
    name = _match(obj["name"], APP_NAME_RE, f"{key}.name",
                  "a lowercase app name (letters, digits, '-', 2-40 characters)", "ecom-platform")
    key = f"ecom-infra:apps[{name}]"
    if "repo" not in obj:
        _fail(f"{key}.repo", "is required", "git@github.com:emami/ecom-platform.git")
    hostnames = _list(obj.get("hostnames"), f"{key}.hostnames", "[shop.example.com]", min_items=1)
    servers = _int(obj.get("servers", 2), f"{key}.servers", 1, 100, "2")
    # Never the whole app at once (some server must serve while the others restart), unless it has one server.
    most = max(1, servers - 1)
    return App(
        name=name,
        repo=parse_git_remote(obj["repo"], f"{key}.repo"),
        branch=_branch(obj.get("branch", "master"), f"{key}.branch"),
        servers=servers,
        restart_batch=_restart_batch(obj.get("restartBatch", most), f"{key}.restartBatch", servers),
        drain_restarts=_bool(obj.get("drainRestarts", True), f"{key}.drainRestarts"),
        instance_type=_match(obj.get("instanceType", defaults["instanceType"]), INSTANCE_TYPE_RE,
                             f"{key}.instanceType", "an EC2 instance type", "t3.small"),
        hostnames=tuple(_match(h, HOSTNAME_RE, f"{key}.hostnames[{i}]", "a lowercase DNS name",
                               "shop.example.com") for i, h in enumerate(hostnames)),
        health_check_path=_match(obj.get("healthCheckPath", "/health"), URL_PATH_RE, f"{key}.healthCheckPath",
                                 "a URL path starting with '/'", "/health"),
        health_check_timeout=_int(obj.get("healthCheckTimeout", 60), f"{key}.healthCheckTimeout", 1, 600, "60"),
        puma_workers=_int(obj.get("pumaWorkers", 2), f"{key}.pumaWorkers", 0, 64, "2"),
        puma_threads=_int(obj.get("pumaThreads", 5), f"{key}.pumaThreads", 1, 64, "5"),
        **_linked_paths(obj, key),
        env=env_pairs(obj.get("env"), f"{key}.env", secret=False),
        hooks=_hooks(obj.get("hooks"), f"{key}.hooks"),
    )


def _restart_batch(raw: Any, key: str, servers: int) -> int:
    """How many of an app's servers restart at once: 1 up to all but one (all, when the app has one server)."""
    most = max(1, servers - 1)
    value = _int(raw, key, 1, 100, str(most))
    if value > most:
        _fail(key, f"must be at most {most}: the app has {servers} server{'s' if servers > 1 else ''} and "
              "one keeps serving while the others restart", str(most))
    return value


def _hooks(raw: Any, key: str) -> tuple[Hook, ...]:
    """`hooks: {afterBuild: [cmd | {run, once, timeout}], afterPublish: [...], onFailure: [...]}`."""
    example = "{afterBuild: [{run: 'bin/rails db:migrate', once: true}]}"
    obj = _mapping(raw, key, example)
    _unknown_keys(obj, set(HOOK_POINTS), key)
    hooks = []
    for point in HOOK_POINTS:
        for i, item in enumerate(_list(obj.get(point), f"{key}.{point}", example)):
            item_key = f"{key}.{point}[{i}]"
            if isinstance(item, str):
                item = {"run": item}
            item = _mapping(item, item_key, "{run: 'bin/rails db:migrate', once: true, timeout: 600}")
            _unknown_keys(item, {"run", "once", "timeout"}, item_key)
            run = item.get("run")
            if not isinstance(run, str) or not run.strip():
                _fail(f"{item_key}.run", f"must be a non-empty command, got {_show(run)}", "bin/rails db:migrate")
            if set(run) & {"\n", "\r", "\0"} or len(run) > HOOK_COMMAND_MAX:
                _fail(f"{item_key}.run", f"must be one line of at most {HOOK_COMMAND_MAX} characters, got {_show(run)}",
                      "bin/rails db:migrate")
            hooks.append(Hook(point=point, run=run, once=_bool(item.get("once", False), f"{item_key}.once"),
                              timeout=_int(item.get("timeout", HOOK_TIMEOUT_DEFAULT), f"{item_key}.timeout", 1, 86400,
                                           str(HOOK_TIMEOUT_DEFAULT))))
    return tuple(hooks)


def env_pairs(raw: Any, key: str, *, secret: bool) -> tuple[tuple[str, str], ...]:
    """An app's variables `{NAME: value}` as sorted pairs. A secret's value never appears in an error."""
    obj = _mapping(raw, key, "{PAYMENT_API_URL: 'https://pay.example.com'}")
    pairs = []
    for name, value in obj.items():
        item_key = f"{key}.{_key_name(str(name))}"
        if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
            _fail(item_key, "must be a variable name: capital letters, digits and '_', not starting with a digit",
                  "PAYMENT_API_URL")
        if name in RESERVED_ENV_NAMES:
            _fail(item_key, f"is set by the platform itself (reserved: {', '.join(sorted(RESERVED_ENV_NAMES))})")
        if isinstance(value, int) and not isinstance(value, bool) and not secret:
            value = str(value)
        if not isinstance(value, str):
            _fail(item_key, f"must be a string, got {type(value).__name__}", "'value'")
        if "\n" in value or "\r" in value or "\0" in value:
            _fail(item_key, "must not contain a newline or NUL character" + ("" if secret else f", got {_show(value)}"))
        if len(value) > 32768:
            _fail(item_key, f"must be at most 32768 characters, got {len(value)}")
        pairs.append((name, value))
    return tuple(sorted(pairs))


def parse_app_secrets(raw: Any, apps: tuple[App, ...]) -> dict[str, tuple[tuple[str, str], ...]]:
    """`ecom-infra:appSecrets`: `{app: {NAME: value}}`, one secret object for every app of the stack."""
    key = "ecom-infra:appSecrets"
    if not isinstance(raw, dict):
        _fail(key, f"must be a JSON object {{app: {{NAME: value}}}}, got {type(raw).__name__}",
              "'{\"ecom-platform\": {\"SECRET_KEY_BASE\": \"...\"}}'")
    known = {a.name: a for a in apps}
    found: dict[str, tuple[tuple[str, str], ...]] = {}
    for app_name, variables in raw.items():
        if app_name not in known:
            _fail(f"{key}.{_key_name(str(app_name))}", f"is not an app of this stack (apps: {', '.join(known)})")
        pairs = env_pairs(variables, f"{key}.{app_name}", secret=True)
        plain = {name for name, _ in known[app_name].env}
        for name, _ in pairs:
            if name in plain:
                _fail(f"{key}.{app_name}.{name}", f"is also set in plain text (apps[{app_name}].env.{name}): keep one")
        found[app_name] = pairs
    return {name: found.get(name, ()) for name in known}


def _linked_paths(obj: dict[str, Any], key: str) -> dict[str, tuple[str, ...]]:
    """linkedDirs and linkedFiles: relative paths inside a release, none inside another."""
    found: dict[str, tuple[str, ...]] = {}
    seen: list[tuple[str, str]] = []     # (path, its key) across both lists
    for name, field_name, default, example in (
            ("linkedDirs", "linked_dirs", DEFAULT_LINKED_DIRS, "[log, tmp/pids, tmp/sockets, tmp/cache, storage]"),
            ("linkedFiles", "linked_files", DEFAULT_LINKED_FILES, "[config/master.key]")):
        items = _list(obj.get(name, list(default)), f"{key}.{name}", example)
        paths = []
        for i, item in enumerate(items):
            item_key = f"{key}.{name}[{i}]"
            path = _match(item, LINK_PATH_RE, item_key,
                          "a relative path inside the release (letters, digits, '.', '_', '-'; no '..', no leading "
                          "'/' or '.')", example.strip("[]").split(",")[0])
            for reserved in RESERVED_LINK_PATHS:
                if _nested(path, reserved):
                    _fail(item_key, f"{path!r} overlaps {reserved!r}, which the release steps manage themselves")
            for other, other_key in seen:
                if _nested(path, other):
                    _fail(item_key, f"{path!r} overlaps {other!r} ({other_key}): a link inside a linked folder "
                                    "would land in shared/")
            seen.append((path, item_key))
            paths.append(path)
        found[field_name] = tuple(paths)
    return found


def _nested(a: str, b: str) -> bool:
    """True when one path is the other or lies inside it."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _parse_apps(raw: Any) -> tuple[App, ...]:
    items = _list(raw, "ecom-infra:apps", f"[{EXAMPLE_APP}]", min_items=1)
    apps = tuple(_parse_app(item, i, {"instanceType": "t3.small"}) for i, item in enumerate(items))
    names = [a.name for a in apps]
    for name in names:
        if names.count(name) > 1:
            _fail(f"ecom-infra:apps[{name}]", "is declared more than once")
    hosts = [h for a in apps for h in a.hostnames]
    for h in hosts:
        if hosts.count(h) > 1:
            _fail("ecom-infra:apps", f"hostname {h!r} is used by more than one app")
    return apps


def _parse_deploy(raw: Any) -> Deploy:
    key = "ecom-infra:deploy"
    obj = _mapping(raw, key, "{user: deploy, root: /srv/www, keepReleases: 5}")
    _unknown_keys(obj, {"user", "group", "root", "keepReleases", "railsEnv"}, key)
    user = _account(obj.get("user", "deploy"), f"{key}.user", "user", "deploy")
    return Deploy(
        user=user,
        group=_account(obj.get("group", user), f"{key}.group", "group", "deploy"),
        root=_deploy_root(obj.get("root", "/srv/www"), f"{key}.root"),
        keep_releases=_int(obj.get("keepReleases", 5), f"{key}.keepReleases", 2, 50, "5"),
        rails_env=_match(obj.get("railsEnv", "production"), UNIX_NAME_RE, f"{key}.railsEnv", "a Rails environment",
                         "production"),
    )


def _parse_ruby(raw: Any) -> Ruby:
    key = "ecom-infra:ruby"
    obj = _mapping(raw, key, "{source: distro, bundleLocal: false}")
    _unknown_keys(obj, {"source", "bundleLocal"}, key)
    source = obj.get("source", "distro")
    if source != "distro":
        _fail(f"{key}.source", f"must be 'distro' (Debian's ruby and bundler packages), got {_show(source)}",
              "distro")
    return Ruby(source=source, bundle_local=_bool(obj.get("bundleLocal", False), f"{key}.bundleLocal"))


def _parse_network(raw: Any) -> Network:
    key = "ecom-infra:network"
    example = "{vpcId: vpc-0a1b2c3d, subnets: [{id: subnet-0a1b2c3d, az: us-east-1a, cidr: 10.0.1.0/24}]}"
    obj = _mapping(raw, key, example)
    _unknown_keys(obj, {"vpcId", "subnets"}, key)
    if "vpcId" not in obj:
        _fail(f"{key}.vpcId", "is required", "vpc-0a1b2c3d")
    vpc_id = _match(obj["vpcId"], VPC_ID_RE, f"{key}.vpcId", "a VPC id", "vpc-0a1b2c3d")
    subnets = []
    for i, item in enumerate(_list(obj.get("subnets"), f"{key}.subnets", example, min_items=1)):
        skey = f"{key}.subnets[{i}]"
        sub = _mapping(item, skey, "{id: subnet-0a1b2c3d, az: us-east-1a, cidr: 10.0.1.0/24}")
        _unknown_keys(sub, {"id", "az", "cidr"}, skey)
        # The cidr is informational on AWS (addresses come from AWS); the offline plan and
        # the local fleet use it to give instances addresses. Default: 10.0.<i+1>.0/24.
        cidr = ipaddress.ip_network(_cidr(sub.get("cidr", f"10.0.{i + 1}.0/24"), f"{skey}.cidr"))
        if cidr.version != 4 or cidr.prefixlen > 28:
            _fail(f"{skey}.cidr", f"must be an IPv4 block of /28 or larger, got {cidr}", "10.0.1.0/24")
        for j, other in enumerate(subnets):   # overlapping blocks would give two hosts one address
            if cidr.overlaps(other.cidr):
                _fail(f"{skey}.cidr", f"{cidr} overlaps {key}.subnets[{j}].cidr {other.cidr}", "10.0.2.0/24")
        subnets.append(Subnet(
            id=_match(sub.get("id"), SUBNET_ID_RE, f"{skey}.id", "a subnet id", "subnet-0a1b2c3d"),
            az=_match(sub.get("az"), AZ_RE, f"{skey}.az", "an availability zone", "us-east-1a"),
            cidr=cidr,
        ))
    ids = [s.id for s in subnets]
    if len(set(ids)) != len(ids):
        _fail(f"{key}.subnets", "lists a subnet twice")
    return Network(vpc_id=vpc_id, subnets=tuple(subnets))


def _parse_ssh(raw: Any) -> Ssh:
    key = "ecom-infra:ssh"
    example = "{user: admin, adminCidrs: [203.0.113.0/24], publicKey: 'ssh-ed25519 AAAA... ops'}"
    obj = _mapping(raw, key, example)
    _unknown_keys(obj, {"user", "adminCidrs", "publicKey"}, key)
    cidrs = _list(obj.get("adminCidrs"), f"{key}.adminCidrs", "[203.0.113.0/24]", min_items=1)
    parsed = tuple(_cidr(c, f"{key}.adminCidrs[{i}]") for i, c in enumerate(cidrs))
    for i, c in enumerate(parsed):
        net = ipaddress.ip_network(c)
        if net.prefixlen < ADMIN_MIN_PREFIX[net.version]:
            _fail(f"{key}.adminCidrs[{i}]", f"opens SSH to {'the whole internet' if net.prefixlen == 0 else 'too much'}"
                                            f" ({c}, wider than /{ADMIN_MIN_PREFIX[net.version]}); name your admin "
                                            "networks", "203.0.113.0/24")
    for version, low in ADMIN_MIN_PREFIX.items():
        # Judge the union: 0.0.0.0/1 + 128.0.0.0/1 is the whole internet too.
        blocks = [ipaddress.ip_network(c) for c in parsed if ipaddress.ip_network(c).version == version]
        covered = sum(b.num_addresses for b in ipaddress.collapse_addresses(blocks))
        if covered > 2 ** ((32 if version == 4 else 128) - low):
            _fail(f"{key}.adminCidrs", f"opens SSH to too much of the internet (IPv{version} blocks together must "
                                       f"cover no more than a /{low}); name your admin networks", "203.0.113.0/24")
    if "publicKey" not in obj:
        _fail(f"{key}.publicKey", "is required (the public half of the key remote commands log in with)",
              "ssh-ed25519 AAAAC3Nza... ops")
    return Ssh(
        user=_match(obj.get("user", "admin"), UNIX_NAME_RE, f"{key}.user", "a unix user name", "admin"),
        admin_cidrs=parsed,
        public_key=_ssh_key(obj["publicKey"], SSH_PUBKEY_RE, f"{key}.publicKey", "an OpenSSH public key line",
                            "ssh-ed25519 AAAAC3Nza... ops"),
    )


def _parse_ami(raw: Any) -> Ami:
    key = "ecom-infra:ami"
    obj = _mapping(raw, key, "{owners: ['136693071363'], namePattern: 'debian-12-amd64-*'}")
    _unknown_keys(obj, {"id", "owners", "namePattern"}, key)
    ami_id = obj.get("id")
    if ami_id is not None:
        _match(ami_id, AMI_ID_RE, f"{key}.id", "an AMI id", "ami-0a1b2c3d4e5f60718")
    owners = _list(obj.get("owners", ["136693071363"]), f"{key}.owners", "['136693071363']", min_items=1)
    return Ami(
        id=ami_id,
        owners=tuple(_match(o, AMI_OWNER_RE, f"{key}.owners[{i}]", "a 12-digit account id or 'amazon'",
                            "136693071363") for i, o in enumerate(owners)),
        name_pattern=_match(obj.get("namePattern", "debian-12-amd64-*"), AMI_NAME_RE, f"{key}.namePattern",
                            "an AMI name pattern", "debian-12-amd64-*"),
    )


def _parse_sha_bucket(raw: Any, environment: str) -> ShaBucket:
    key = "ecom-infra:shaBucket"
    obj = _mapping(raw, key, "{name: emami-ci-packages, key: sha_number.yml, owner: false}")
    _unknown_keys(obj, {"name", "key", "owner", "adopt", "noncurrentDays", "noncurrentKept"}, key)
    s3_key = _match(obj.get("key", "sha_number.yml"), S3_KEY_RE, f"{key}.key", "an S3 object key", "sha_number.yml")
    if ".." in s3_key:
        _fail(f"{key}.key", f"must not contain '..', got {_show(s3_key)}", "sha_number.yml")
    owner = _bool(obj.get("owner", environment == "production"), f"{key}.owner")
    adopt = _bool(obj.get("adopt", False), f"{key}.adopt")
    if adopt and not owner:
        _fail(f"{key}.adopt", "is only for the stack that owns the bucket (shaBucket.owner: true)", "false")
    return ShaBucket(
        name=_match(obj.get("name", "emami-ci-packages"), BUCKET_RE, f"{key}.name", "an S3 bucket name",
                    "emami-ci-packages"),
        key=s3_key,
        owner=owner,
        adopt=adopt,
        # S3's lifecycle limits: NoncurrentDays >= 1, NewerNoncurrentVersions <= 100.
        noncurrent_days=_int(obj.get("noncurrentDays", 365), f"{key}.noncurrentDays", 1, 36500, "365"),
        noncurrent_kept=_int(obj.get("noncurrentKept", 100), f"{key}.noncurrentKept", 0, 100, "100"),
    )


def _parse_haproxy(raw: Any) -> Haproxy:
    key = "ecom-infra:haproxy"
    obj = _mapping(raw, key, "{instanceType: t3.micro}")
    _unknown_keys(obj, {"instanceType", "vrrpRouterId", "checkInterval"}, key)
    return Haproxy(
        instance_type=_match(obj.get("instanceType", "t3.micro"), INSTANCE_TYPE_RE, f"{key}.instanceType",
                             "an EC2 instance type", "t3.micro"),
        vrrp_router_id=_int(obj.get("vrrpRouterId", 51), f"{key}.vrrpRouterId", 1, 255, "51"),
        check_interval=_int(obj.get("checkInterval", 1), f"{key}.checkInterval", 1, 60, "1"),
    )


DATADOG_API_KEY_HINT = "pulumi config set --secret --path ecom-infra:datadog.apiKey < file"


def _parse_datadog(raw: Any, *, stack_file: bool = False) -> Datadog:
    """`datadog`. Only whether `apiKey` is set leaves here, never its value. `stack_file`: `raw` is the
    stack file's own text (the CLI's view), where a secret reads `{secure: ...}` and a string is plain."""
    key = "ecom-infra:datadog"
    obj = _mapping(raw, key, "{enabled: true, confDir: /etc/datadog-agent/conf.d}")
    _unknown_keys(obj, {"enabled", "confDir", "apiUrl", "apiKey"}, key)
    api_key = obj.get("apiKey")
    if isinstance(api_key, dict) and set(api_key) == {"secure"}:
        api_key = "set"
    elif isinstance(api_key, str) and stack_file:
        _fail(f"{key}.apiKey", f"is in plain text in the stack file: remove it and set it with `{DATADOG_API_KEY_HINT}`")
    if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
        _fail(f"{key}.apiKey", f"must be a non-empty secret string; set it with `{DATADOG_API_KEY_HINT}`")
    return Datadog(
        enabled=_bool(obj.get("enabled", True), f"{key}.enabled"),
        conf_dir=_path(obj.get("confDir", "/etc/datadog-agent/conf.d"), f"{key}.confDir", "/etc/datadog-agent/conf.d"),
        api_url=_base_url(obj.get("apiUrl", "https://api.datadoghq.com"), f"{key}.apiUrl", "https://api.datadoghq.eu"),
        api_key_set=api_key is not None,
    )


def _base_url(value: Any, key: str, example: str) -> str:
    url = _match(value, HTTP_URL_RE, key, "an http(s) URL without query, user or password", example)
    return url.rstrip("/")


def _parse_deploy_events(raw: Any) -> DeployEvents:
    key = "ecom-infra:deployEvents"
    obj = _mapping(raw, key, "{webhookUrl: 'https://hooks.example.com/deploys'}")
    _unknown_keys(obj, {"webhookUrl", "timeout"}, key)
    url = obj.get("webhookUrl")
    return DeployEvents(
        webhook_url=None if url is None else _match(url, HTTP_URL_RE, f"{key}.webhookUrl",
                                                    "an http(s) URL without query, user or password",
                                                    "https://hooks.example.com/deploys"),
        timeout=_int(obj.get("timeout", 5), f"{key}.timeout", 1, 60, "5"),
    )


def event_settings(stack_config: dict[str, Any]) -> tuple[Datadog, DeployEvents]:
    """The deploy events' settings from a stack file's raw `config:` (for `ecom-deploy deploy-event`)."""
    return (_parse_datadog(stack_config.get("ecom-infra:datadog"), stack_file=True),
            _parse_deploy_events(stack_config.get("ecom-infra:deployEvents")))


def _parse_known_hosts(raw: Any, apps: tuple[App, ...]) -> tuple[str, ...]:
    key = "ecom-infra:gitKnownHosts"
    example = "['github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl']"
    lines = _list(raw, key, example, min_items=1)
    parsed = tuple(_ssh_key(line, KNOWN_HOST_RE, f"{key}[{i}]", "a known_hosts line 'host keytype base64'", example)
                   for i, line in enumerate(lines))
    pinned = {line.split(" ", 1)[0] for line in parsed}
    for app in apps:
        wanted = app.repo.host if app.repo.port == 22 else f"[{app.repo.host}]:{app.repo.port}"
        if wanted not in pinned:
            _fail(key, f"has no host key for {wanted} (app {app.name}); git host keys are pinned, never trusted "
                       "on first use", example)
    return parsed


def _parse_roll_hosts(raw: Any, apps: tuple[App, ...]) -> tuple[str, ...]:
    key = "ecom-infra:rollHosts"
    known = ["haproxy-a", "haproxy-b"] + [f"{a.name}-{i + 1}" for a in apps for i in range(a.servers)]
    hosts = _list(raw, key, "[haproxy-b]")
    for i, host in enumerate(hosts):
        if host not in known:
            _fail(f"{key}[{i}]", f"must name a host of this stack ({', '.join(known[:4])}...), got {_show(host)}",
                  "haproxy-b")
    if len(set(hosts)) != len(hosts):
        _fail(key, "names a host twice", "[haproxy-b]")
    return tuple(hosts)


# ----------------------------------------------------------------------------- entry points


def parse(raw: dict[str, Any], *, project: str, stack: str, region: Any, has_tls_certificate: bool = False) -> Settings:
    """Validate raw config values (already JSON-decoded) into `Settings`.

    `raw` maps keys without the `ecom-infra:` prefix (e.g. "apps") to values.
    """
    _unknown_top_level(raw)
    environment = raw.get("environment", stack)
    if environment not in ENVIRONMENTS:
        _fail("ecom-infra:environment", f"unknown environment {_show(environment)} "
                                         f"(known: {', '.join(ENVIRONMENTS)})", "staging")
    if region is None:
        _fail("aws:region", "is required", "us-east-1")
    region = _match(region, REGION_RE, "aws:region", "an AWS region", "us-east-1")
    endpoint = raw.get("awsEndpoint")
    if endpoint is not None:
        endpoint = http_url(endpoint, "ecom-infra:awsEndpoint")
    if "apps" not in raw:
        _fail("ecom-infra:apps", "is required: the apps this environment runs", f"[{EXAMPLE_APP}]")
    apps = _parse_apps(raw["apps"])
    tags = _mapping(raw.get("tags"), "ecom-infra:tags", "{CostCenter: shop}")
    for k, v in tags.items():
        _match(k, re.compile(r"^[A-Za-z][A-Za-z0-9_.:/=+@-]{0,127}$"), f"ecom-infra:tags.{k}", "a tag key", "Team")
        _match(v, re.compile(r"^[A-Za-z0-9 _.:/=+@-]{0,255}$"), f"ecom-infra:tags.{k}", "a tag value", "shop")
    return Settings(
        project=project,
        stack=stack,
        environment=environment,
        region=region,
        aws_endpoint=endpoint,
        apps=apps,
        deploy=_parse_deploy(raw.get("deploy")),
        ruby=_parse_ruby(raw.get("ruby")),
        network=_parse_network(raw.get("network")),
        ssh=_parse_ssh(raw.get("ssh")),
        ami=_parse_ami(raw.get("ami")),
        sha_bucket=_parse_sha_bucket(raw.get("shaBucket"), environment),
        haproxy=_parse_haproxy(raw.get("haproxy")),
        datadog=_parse_datadog(raw.get("datadog")),
        deploy_events=_parse_deploy_events(raw.get("deployEvents")),
        git_known_hosts=_parse_known_hosts(raw.get("gitKnownHosts"), apps),
        has_tls_certificate=has_tls_certificate,
        tags=dict(sorted(tags.items())),
        roll_hosts=_parse_roll_hosts(raw.get("rollHosts"), apps),
    )


STRUCTURED_KEYS = ("apps", "deploy", "ruby", "network", "ssh", "ami", "shaBucket", "haproxy", "datadog",
                   "deployEvents", "gitKnownHosts", "tags", "rollHosts")
PLAIN_KEYS = ("environment", "awsEndpoint")
SECRET_KEYS = ("deployKey", "sshPrivateKey", "tlsCertificate", "appSecrets")
KNOWN_KEYS = frozenset(STRUCTURED_KEYS + PLAIN_KEYS + SECRET_KEYS)


def _unknown_top_level(names: Any) -> None:
    """A typo (`shaBuckets`) would otherwise be ignored and the defaults silently apply."""
    import difflib  # noqa: PLC0415

    for name in sorted(names):
        if name not in KNOWN_KEYS:
            close = difflib.get_close_matches(name, KNOWN_KEYS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            _fail(f"ecom-infra:{_key_name(name)}",
                  f"is not a known setting ({hint}known: {', '.join(sorted(KNOWN_KEYS))})")


def _config_keys() -> set[str]:
    """Every config key the engine (or the offline plan) passed to this run."""
    from pulumi.runtime import config as runtime_config  # noqa: PLC0415

    return set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())


def load() -> tuple[Settings, Secrets]:
    """Read this stack's config through `pulumi.Config` and validate it."""
    import json

    import pulumi

    config = pulumi.Config("ecom-infra")
    prefix = "ecom-infra:"
    _unknown_top_level({k[len(prefix):] for k in _config_keys() if k.startswith(prefix)})
    for name in SECRET_KEYS:
        if config.get(name) is not None and not pulumi.runtime.is_config_secret(prefix + name):
            _fail(prefix + name, f"is in plain text in the stack file: remove it and set it with "
                                 f"`pulumi config set --secret {prefix}{name} < file`")
    raw: dict[str, Any] = {}
    for name in STRUCTURED_KEYS:
        try:
            value = config.get_object(name)
        except (ValueError, pulumi.ConfigTypeError):   # JSONDecodeError, or a number too long to convert
            value = config.get(name)   # a plain string: the section's parser says what it should be
        if value is not None:
            raw[name] = value
    # A secret set with --path makes the whole section secret; a section that is not holds it in plain text.
    # (`{secure: ...}` is what the offline plan sees of an encrypted value: not plain text.)
    if isinstance(raw.get("datadog"), dict) and isinstance(raw["datadog"].get("apiKey"), str) \
            and not pulumi.runtime.is_config_secret(prefix + "datadog"):
        _fail(prefix + "datadog.apiKey", f"is in plain text in the stack file: remove it and set it with "
                                         f"`{DATADOG_API_KEY_HINT}`")
    for name in PLAIN_KEYS:
        value = config.get(name)
        if value is not None:
            raw[name] = value
    _require_secret_key(config, "deployKey", "the git deploy key (OpenSSH private key)")
    _require_secret_key(config, "sshPrivateKey", "the private key remote commands log in with")
    tls = config.get_secret("tlsCertificate")
    settings = parse(raw, project=pulumi.get_project(), stack=pulumi.get_stack(),
                     region=pulumi.Config("aws").get("region"), has_tls_certificate=tls is not None)
    # Read raw (the value is known at run time) so bad names fail before anything is declared; only
    # the validated result leaves this function, and only as a secret.
    secrets_text = pulumi.runtime.get_config(prefix + "appSecrets")
    app_secrets = parse_app_secrets(_json_object(secrets_text, prefix + "appSecrets") if secrets_text else {},
                                    settings.apps)
    secrets = Secrets(
        deploy_key=config.require_secret("deployKey"),
        ssh_private_key=config.require_secret("sshPrivateKey"),
        tls_certificate=tls,
        app_secrets=pulumi.Output.secret(app_secrets),
    )
    return settings, secrets


def _json_object(text: str, key: str) -> Any:
    import json  # noqa: PLC0415

    try:
        return json.loads(text)
    except ValueError:
        # The text is secret: say what is wrong, never what it is.
        _fail(key, "is not valid JSON", "pulumi config set --secret ecom-infra:appSecrets "
                                        "'{\"ecom-platform\": {\"SECRET_KEY_BASE\": \"...\"}}'")
    return None


def _require_secret_key(config: Any, name: str, what: str) -> None:
    if config.get_secret(name) is None:
        _fail(f"ecom-infra:{name}", f"is required: {what}; set it with "
                                    f"`pulumi config set --secret ecom-infra:{name} < file`")

