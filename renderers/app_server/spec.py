"""`AppServerSpec`: what one app server needs, checked before anything is rendered, and the paths derived from it."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ecom_infra import defaults as D
from ecom_infra.errors import ConfigError
from ecom_infra.rules import (
    ABS_PATH,
    APP_NAME,
    BRANCH,
    ENV_NAME,
    HEALTH_CHECK_TIMEOUT,
    HOOK_IF_CHANGED_POINTS,
    HOOK_POINTS,
    HOOK_TIMEOUT,
    KEEP_RELEASES,
    LINK_PATH,
    PACKAGE,
    PORT,
    PUMA_THREADS,
    PUMA_WORKERS,
    RESERVED_LINK_PATHS,
    SHA,
    UNIX_NAME,
    URL_PATH,
    WHO,
    is_repo_path,
)

from .. import content_hash

BUILD_SECRET_KEY_BASE = "ecom-infra-build-placeholder-never-used-to-serve"

# Shapes only the app server takes (test hosts: local repositories, any case in names); the rest are
# ecom_infra.rules'. Values reach paths, unit files, nginx and ruby code, not only shells.
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
_REPO_URL_RE = re.compile(r"^(ssh://[A-Za-z0-9_.@:/~-]+|[a-z_][a-z0-9_-]*@[A-Za-z0-9.-]+:[A-Za-z0-9._/~-]+"
                          r"|file://(/[A-Za-z0-9._-]+)+|(/[A-Za-z0-9._-]+)+)$")
_KNOWN_HOST_RE = re.compile(r"^[][A-Za-z0-9.,:-]+ [a-z0-9@.-]+ [A-Za-z0-9+/]+={0,3}$")

SERVICE_MANAGERS = ("systemd", "direct")
SLOTS = ("a", "b")


@dataclass(frozen=True)
class AppServerSpec:
    """What one app server needs: plain values, validated by settings before they get here."""

    app: str
    repo_url: str
    """git SSH URL (`git@host:path`, `ssh://user@host[:port]/path`) or, on test hosts, a local path / file:// URL."""
    hostnames: tuple[str, ...]
    """nginx `server_name`s; the first is the Host the health check sends."""
    branch: str = D.APP_BRANCH
    sha: str | None = None
    """The commit to run; None provisions the host without a release."""
    git_host: str | None = None
    """Host of `repo_url` for the SSH config entry (None for a local repository)."""
    git_port: int = D.GIT_PORT
    known_hosts: tuple[str, ...] = ()
    """Pinned known_hosts lines for `git_host` (`[host]:port key` when the port is not 22)."""
    deploy_user: str = D.DEPLOY_USER
    deploy_group: str = D.DEPLOY_USER     # the group defaults to the user
    deploy_root: str = D.DEPLOY_ROOT
    keep_releases: int = D.KEEP_RELEASES
    health_path: str = D.APP_HEALTH_CHECK_PATH
    health_timeout: int = D.APP_HEALTH_CHECK_TIMEOUT
    puma_workers: int = D.APP_PUMA_WORKERS
    puma_threads_min: int = D.PUMA_THREADS_MIN
    puma_threads_max: int = D.APP_PUMA_THREADS
    ruby_source: str = D.RUBY_SOURCE
    """`distro`: Debian's ruby and bundler packages (the only source so far)."""
    bundle_local: bool = D.RUBY_BUNDLE_LOCAL
    """`bundle install --local` against the gems Debian installed (no rubygems.org); else
    `deployment` mode into shared/bundle from the Gemfile's source."""
    gem_packages: tuple[str, ...] = ("ruby-rails", "puma", "ruby-sprockets-rails", "ruby-sqlite3", "ruby-bootsnap")
    """Debian packages that provide the app's gems when `bundle_local`."""
    rails_env: str = D.RAILS_ENV
    datadog_enabled: bool = False
    """Off unless asked (stacks default to on: settings pass it in)."""
    datadog_conf_dir: str = D.DATADOG_CONF_DIR
    deployed_by: str = ""
    """Who the revisions.log names; empty: the user the step runs as (through sudo)."""
    keep_standby: bool = D.APP_KEEP_STANDBY
    """After a publish the slot switched away from keeps running the previous release (a rollback is a switch)."""
    lock_timeout: int = D.LOCK_TIMEOUT
    """Seconds a deploy waits for another deploy of the same app on this host."""
    # Where things live on the host: the defaults are Debian's; tests point them at a temp dir.
    http_port: int = D.HTTP_PORT
    http_bind: str | None = None
    """Address nginx listens on for this site (None: every address)."""
    default_server: bool = True
    """This site answers requests for unknown hosts (one app per host); drops Debian's default site."""
    nginx_dir: str = "/etc/nginx"
    nginx_conf: str = "/etc/nginx/nginx.conf"
    nginx_pid_file: str = "/run/nginx.pid"
    nginx_user: str = "www-data"
    systemd_dir: str = "/etc/systemd/system"
    service_manager: str = "systemd"
    """`systemd` on real hosts; `direct` starts puma and nginx without a service manager (hosts
    without systemd as PID 1, such as this project's test machine)."""
    linked_dirs: tuple[str, ...] = D.APP_LINKED_DIRS
    """Release folders that are links to the same path under shared/ (Capistrano's linked_dirs)."""
    linked_files: tuple[str, ...] = D.APP_LINKED_FILES
    """Release files that are links to the same path under shared/; the build fails while one is missing."""
    env: tuple[tuple[str, str], ...] = ()
    """The app's plain variables (apps[].env); they reach puma through the environment file, and the build."""
    hooks: tuple[tuple[str, str, bool, int] | tuple[str, str, bool, int, tuple[str, ...]], ...] = ()
    """Release hooks as (point, command, once, timeout seconds[, ifChanged paths]): `afterBuild`, `afterPublish`,
    `onFailure`. With paths, the hook runs only when one of them differs from the live release's."""
    runs_once_hooks: bool = False
    """This server runs the app's `once` hooks (one server per app: the component picks its first)."""
    packages: tuple[tuple[str, str], ...] = (("ruby", "ruby"), ("bundler", "bundle"), ("git", "git"),
                                             ("curl", "curl"), ("nginx", "nginx"))
    """(Debian package, command that proves it is there) pairs the ruby step ensures."""

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------ derived paths
    @property
    def app_dir(self) -> str:
        return f"{self.deploy_root}/{self.app}"

    @property
    def shared_dir(self) -> str:
        return f"{self.app_dir}/shared"

    @property
    def current_dir(self) -> str:
        return f"{self.app_dir}/current"

    # puma runs in two slots, `a` and `b` (SLOTS): the live one serves, the other boots the next release (or keeps the
    # previous one as a standby). Each slot has its own unit instance, socket, pid file and release link.
    @property
    def slots_dir(self) -> str:
        """Root's folder of the slots' links: `<slot>` -> the release the slot runs, `puma.sock` -> the live
        slot's socket (nginx's upstream: a switch is one rename)."""
        return f"{self.app_dir}/slots"

    @property
    def live_socket(self) -> str:
        return f"{self.slots_dir}/puma.sock"

    @property
    def live_pid_file(self) -> str:
        """Root's link to the live slot's pid file, switched with `live_socket` (what Datadog's check reads)."""
        return f"{self.slots_dir}/puma.pid"

    @property
    def socket_dir(self) -> str:
        return f"{self.shared_dir}/tmp/sockets"

    def slot_socket(self, slot: str) -> str:
        return f"{self.socket_dir}/puma-{slot}.sock"

    @property
    def pid_dir(self) -> str:
        return f"{self.shared_dir}/tmp/pids"

    def pid_file(self, slot: str) -> str:
        return f"{self.pid_dir}/puma-{slot}.pid"

    @property
    def legacy_socket_path(self) -> str:
        """Where puma listened before the slots (one unit, `puma-<app>.service`): read to take such a host over."""
        return f"{self.socket_dir}/puma.sock"

    @property
    def legacy_pid_file(self) -> str:
        return f"{self.pid_dir}/puma.pid"

    @property
    def puma_config_path(self) -> str:
        # In the root-owned app folder: the app cannot rewrite how puma starts it.
        return f"{self.app_dir}/config/puma.rb"

    @property
    def puma_launcher_path(self) -> str:
        # Beside puma.rb, root's: what the unit runs is not the app's to change.
        return f"{self.app_dir}/config/puma-start.rb"

    @property
    def environment_file(self) -> str:
        # Secrets systemd reads as root: in the root-owned config folder, beside puma.rb, so the
        # app cannot plant a link there that systemd would follow.
        return f"{self.app_dir}/config/environment"

    @property
    def unit_name(self) -> str:
        """puma's service template; `unit(slot)` names an instance."""
        return f"puma-{self.app}@.service"

    def unit(self, slot: str) -> str:
        return f"puma-{self.app}@{slot}.service"

    @property
    def unit_path(self) -> str:
        return f"{self.systemd_dir}/{self.unit_name}"

    @property
    def socket_unit_name(self) -> str:
        """systemd's socket template: each slot's socket outlives its puma's restarts (systemd hosts only)."""
        return f"puma-{self.app}@.socket"

    def socket_unit(self, slot: str) -> str:
        return f"puma-{self.app}@{slot}.socket"

    @property
    def socket_unit_path(self) -> str:
        return f"{self.systemd_dir}/{self.socket_unit_name}"

    @property
    def legacy_units(self) -> tuple[str, str]:
        """The single puma service and socket of hosts deployed before the slots: stopped and removed once a slot
        serves."""
        return f"puma-{self.app}.service", f"puma-{self.app}.socket"

    @property
    def nginx_site_path(self) -> str:
        return f"{self.nginx_dir}/sites-available/{self.app}.conf"

    @property
    def nginx_enabled_path(self) -> str:
        return f"{self.nginx_dir}/sites-enabled/{self.app}.conf"

    @property
    def datadog_conf_path(self) -> str:
        return f"{self.datadog_conf_dir}/process.d/conf.yaml"

    @property
    def restart_flag(self) -> str:
        return f"{self.app_dir}/.restart-needed"

    @property
    def puma_command(self) -> tuple[str, ...]:
        """How puma starts: the unit's ExecStart and the `direct` start use the same words."""
        return ("/usr/bin/ruby", self.puma_launcher_path, "-C", self.puma_config_path)

    @property
    def app_environment(self) -> tuple[tuple[str, str], ...]:
        return (("RAILS_ENV", self.rails_env), ("RACK_ENV", self.rails_env), ("LANG", "C.UTF-8"))

    @property
    def build_environment(self) -> tuple[tuple[str, str], ...]:
        """What the build's commands (bundle, precompile) get besides deploy_vars: the plain variables
        and, unless one is set in plain text, a throw-away SECRET_KEY_BASE (Rails 6.1 will not boot
        for assets:precompile without one). Never the secrets: precompile has no use for them."""
        names = {name for name, _ in self.env}
        extra = () if "SECRET_KEY_BASE" in names else (("SECRET_KEY_BASE", BUILD_SECRET_KEY_BASE),)
        return tuple(sorted(self.env + extra))

    def hooks_at(self, point: str) -> list[tuple[str, str, bool, int, tuple[str, ...]]]:
        """(id, command, once, timeout, ifChanged paths) of the hooks at `point`, in order; the id names the
        hook in logs and its once-marker: the point, its position and a hash of the command (a changed
        command is a new hook; new paths are not, so adding ifChanged does not run a once hook again)."""
        return [(f"{h[0]}-{i + 1}-{content_hash(h[1])[:8]}", h[1], h[2], h[3], _if_changed(h))
                for i, h in enumerate(h for h in self.hooks if h[0] == point)]

    @property
    def health_url(self) -> str:
        """The health check goes through this host's nginx, on the address the site listens on."""
        return f"http://{self.http_bind or '127.0.0.1'}:{self.http_port}{self.health_path}"


def _if_changed(hook: tuple) -> tuple[str, ...]:
    return hook[4] if len(hook) > 4 else ()


def _check(ok: bool, key: str, problem: str, example: str | None = None) -> None:
    if not ok:
        raise ConfigError(f"app_server.{key}", problem, example)


def _validate(s: AppServerSpec) -> None:
    """Refuse values that could not be rendered safely; settings gives friendlier errors first."""
    _check(bool(APP_NAME.fullmatch(s.app)), "app", f"must be a lowercase app name, got {s.app!r}", "ecom-platform")
    _check(bool(_REPO_URL_RE.fullmatch(s.repo_url)), "repo_url",
           f"must be a git SSH URL, a file:// URL or an absolute path, got {s.repo_url!r}",
           "git@github.com:emami/ecom-platform.git")
    _check(bool(s.hostnames) and all(_HOST_RE.fullmatch(h) for h in s.hostnames), "hostnames",
           f"must be one or more DNS names, got {s.hostnames!r}", "('shop.example.com',)")
    _check(bool(BRANCH.fullmatch(s.branch)) and ".." not in s.branch, "branch",
           f"must be a git branch name, got {s.branch!r}", "master")
    _check(s.sha is None or bool(SHA.fullmatch(s.sha)), "sha",
           f"must be a 40-character lowercase hex commit sha or None, got {s.sha!r}")
    _check(s.git_host is None or bool(_HOST_RE.fullmatch(s.git_host)), "git_host",
           f"must be a host name, got {s.git_host!r}", "github.com")
    _check(s.git_host is None or bool(s.known_hosts), "known_hosts",
           "must pin at least one host key when git goes over SSH (no trust on first use)")
    _check(all(_KNOWN_HOST_RE.fullmatch(line) for line in s.known_hosts), "known_hosts",
           "must be known_hosts lines 'host keytype base64key'")
    for key in ("deploy_user", "deploy_group", "nginx_user"):
        _check(bool(UNIX_NAME.fullmatch(getattr(s, key))), key, f"must be a unix name, got {getattr(s, key)!r}")
    _check(s.deploy_user != "root", "deploy_user", "must not be root: the app runs unprivileged", "deploy")
    for key in ("deploy_root", "datadog_conf_dir", "nginx_dir", "nginx_conf", "nginx_pid_file", "systemd_dir"):
        value = getattr(s, key)
        _check(bool(ABS_PATH.fullmatch(value)) and "/../" not in f"{value}/" and "/./" not in f"{value}/", key,
               f"must be an absolute path without '.' or '..' parts, got {value!r}")
    _check(bool(URL_PATH.fullmatch(s.health_path)), "health_path", f"must be a URL path, got {s.health_path!r}",
           "/health")
    for key, low, high in (("keep_releases", *KEEP_RELEASES), ("health_timeout", *HEALTH_CHECK_TIMEOUT),
                           ("puma_workers", *PUMA_WORKERS), ("puma_threads_min", 0, PUMA_THREADS[1]),
                           ("puma_threads_max", *PUMA_THREADS), ("git_port", *PORT), ("http_port", *PORT),
                           ("lock_timeout", 1, 86400)):
        value = getattr(s, key)
        _check(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high, key,
               f"must be an integer from {low} to {high}, got {value!r}")
    _check(s.puma_threads_min <= s.puma_threads_max, "puma_threads_min",
           f"must not exceed puma_threads_max ({s.puma_threads_max}), got {s.puma_threads_min}")
    _check(s.ruby_source == D.RUBY_SOURCE, "ruby_source", f"must be 'distro', got {s.ruby_source!r}", "distro")
    _check(s.service_manager in SERVICE_MANAGERS, "service_manager",
           f"must be one of {', '.join(SERVICE_MANAGERS)}, got {s.service_manager!r}")
    _check(bool(UNIX_NAME.fullmatch(s.rails_env)), "rails_env", f"must be a Rails environment, got {s.rails_env!r}",
           "production")
    _check(s.http_bind is None or bool(re.fullmatch(r"^[0-9.]+$|^\[[0-9a-f:]+\]$", s.http_bind)), "http_bind",
           f"must be an IP address, got {s.http_bind!r}", "127.0.0.1")
    _check(bool(WHO.fullmatch(s.deployed_by)), "deployed_by", f"must be a short name, got {s.deployed_by!r}")
    _check(all(PACKAGE.fullmatch(p) for p in s.gem_packages), "gem_packages", "must be Debian package names")
    _check(all(ENV_NAME.fullmatch(n) and isinstance(v, str) and not set(v) & {"\n", "\r", "\0"}
               for n, v in s.env), "env", "must be (NAME, value) pairs without newlines or NUL")
    _check(not {n for n, _ in s.env} & {n for n, _ in s.app_environment}, "env",
           "must not set a variable the platform sets (RAILS_ENV, RACK_ENV, LANG)")
    links = s.linked_dirs + s.linked_files
    for key in ("linked_dirs", "linked_files"):
        _check(all(LINK_PATH.fullmatch(p) for p in getattr(s, key)), key,
               f"must be relative paths inside the release without '.' or '..' parts, got {getattr(s, key)!r}")
    for i, path in enumerate(links):
        for other in links[i + 1:] + RESERVED_LINK_PATHS:
            _check(not (path == other or path.startswith(other + "/") or other.startswith(path + "/")),
                   "linked_dirs", f"{path!r} overlaps {other!r}")
    _check(all(len(h) in (4, 5) and h[0] in HOOK_POINTS and isinstance(h[1], str) and h[1].strip()
               and not set(h[1]) & {"\n", "\r", "\0"} and isinstance(h[2], bool) and isinstance(h[3], int)
               and HOOK_TIMEOUT[0] <= h[3] <= HOOK_TIMEOUT[1] for h in s.hooks), "hooks",
           f"must be (point in {', '.join(HOOK_POINTS)}, one-line command, once, "
           f"timeout {HOOK_TIMEOUT[0]}-{HOOK_TIMEOUT[1]}[, ifChanged paths]) tuples")
    for h in s.hooks:
        paths = _if_changed(h)
        _check(isinstance(paths, tuple) and all(is_repo_path(p) for p in paths), "hooks",
               f"ifChanged must be relative repository paths without '.' or '..' parts, got {paths!r}")
        _check(not paths or h[0] in HOOK_IF_CHANGED_POINTS, "hooks",
               f"ifChanged is not allowed at {h[0]} (only at {', '.join(HOOK_IF_CHANGED_POINTS)})")
    _check(all(PACKAGE.fullmatch(p) and UNIX_NAME.fullmatch(c) for p, c in s.packages), "packages",
           "must be (Debian package, command) pairs")
