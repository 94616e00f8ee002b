"""App server steps: everything one host needs to run one Rails app behind nginx.

`app_server_steps(spec)` returns the host's steps in the order they must run:

    deploy-user  [git-ssh]  layout  app-env  ruby  puma-config  puma-unit  nginx-site  [datadog]
    [release-build  release-publish]           (only when the spec names a sha)

(`git-ssh` only when git goes over SSH, `datadog` only when enabled.) `spec_from_settings`
builds the spec from the stack settings.

Every script is bash, runs as root (the component wraps it in `sudo -n bash`) and drops
to the deploy user (`runuser`) for everything that touches app code: git, bundler, rake.
Config files travel inside their step's script, are validated by their own program
before they replace the old file, and are installed (and reloaded) only when changed.

The release is two steps so that the load balancers can drain this server around the
second one only: `release-build` does everything before the switch (fetch, materialise,
bundle, precompile) while the old release keeps serving; `release-publish` switches
`current`, restarts puma, checks health through nginx and rolls back on failure.

Directory layout on the host (Capistrano's, hardened): `<root>/<app>/` holds `releases/`,
`shared/`, `repo/` (bare mirror), `current` (link), `meta/` (per-release state written by
root), `revisions.log` and the deploy lock. The structure that decides what runs (the app
dir, `releases/`, `meta/`, `current`) is root's; what the app or its build must write
(`shared/`, `repo/`, each release's files) is the deploy user's.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ecom_infra.errors import ConfigError

from . import content_hash, render
from .steps import Step

STEP_ORDER = ("deploy-user", "git-ssh", "layout", "app-env", "ruby", "puma-config", "puma-unit", "nginx-site", "datadog",
              "release-build", "release-publish")
PUBLISH_STEP = "release-publish"
"""The step that restarts puma: the load balancers drain this server before it and set it ready after."""

DEPLOY_KEY_SECRET = "deploy_key"
APP_ENV_SECRET = "app_env"
"""The app's environment file (plain and secret variables): fed on stdin, hashed into triggers as a secret."""
ENV_FILE_HEADER = "# Written by ecom-infra (apps[].env, ecom-infra:appSecrets): edits are overwritten."
BUILD_SECRET_KEY_BASE = "ecom-infra-build-placeholder-never-used-to-serve"
FILE_EOF = "ECOM_FILE_EOF"  # here-document terminator for file contents inside scripts

# Shapes of values that reach paths, unit files, nginx and ruby code, not only shells.
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
_UNIX_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
_PATH_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_BRANCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
_URL_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]{0,200}$")
_REPO_URL_RE = re.compile(r"^(ssh://[A-Za-z0-9_.@:/~-]+|[a-z_][a-z0-9_-]*@[A-Za-z0-9.-]+:[A-Za-z0-9._/~-]+"
                          r"|file://(/[A-Za-z0-9._-]+)+|(/[A-Za-z0-9._-]+)+)$")
_KNOWN_HOST_RE = re.compile(r"^[][A-Za-z0-9.,:-]+ [a-z0-9@.-]+ [A-Za-z0-9+/]+={0,3}$")
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]+$")
_WHO_RE = re.compile(r"^[A-Za-z0-9@._ -]{0,64}$")
_ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
_LINK_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9_][A-Za-z0-9._-]{0,99}){0,9}$")
# The release steps manage these themselves (public/assets always links to shared/assets).
_RESERVED_LINKS = ("public/assets", ".bundle", "REVISION", "Gemfile", "Gemfile.lock")

SERVICE_MANAGERS = ("systemd", "direct")
HOOK_POINTS = ("afterBuild", "afterPublish", "onFailure")


@dataclass(frozen=True)
class AppServerSpec:
    """What one app server needs: plain values, validated by settings before they get here."""

    app: str
    repo_url: str
    """git SSH URL (`git@host:path`, `ssh://user@host[:port]/path`) or, on test hosts, a local path / file:// URL."""
    hostnames: tuple[str, ...]
    """nginx `server_name`s; the first is the Host the health check sends."""
    branch: str = "master"
    sha: str | None = None
    """The commit to run; None provisions the host without a release."""
    git_host: str | None = None
    """Host of `repo_url` for the SSH config entry (None for a local repository)."""
    git_port: int = 22
    known_hosts: tuple[str, ...] = ()
    """Pinned known_hosts lines for `git_host` (`[host]:port key` when the port is not 22)."""
    deploy_user: str = "deploy"
    deploy_group: str = "deploy"
    deploy_root: str = "/srv/www"
    keep_releases: int = 5
    health_path: str = "/health"
    health_timeout: int = 60
    puma_workers: int = 2
    puma_threads_min: int = 1
    puma_threads_max: int = 5
    ruby_source: str = "distro"
    """`distro`: Debian's ruby and bundler packages (the only source so far)."""
    bundle_local: bool = False
    """`bundle install --local` against the gems Debian installed (no rubygems.org); else
    `deployment` mode into shared/bundle from the Gemfile's source."""
    gem_packages: tuple[str, ...] = ("ruby-rails", "puma", "ruby-sprockets-rails", "ruby-sqlite3")
    """Debian packages that provide the app's gems when `bundle_local`."""
    rails_env: str = "production"
    datadog_enabled: bool = False
    datadog_conf_dir: str = "/etc/datadog-agent/conf.d"
    deployed_by: str = ""
    """Who the revisions.log names; empty: the user the step runs as (through sudo)."""
    lock_timeout: int = 900
    """Seconds a deploy waits for another deploy of the same app on this host."""
    # Where things live on the host: the defaults are Debian's; tests point them at a temp dir.
    http_port: int = 80
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
    linked_dirs: tuple[str, ...] = ("log", "tmp/pids", "tmp/sockets", "tmp/cache")
    """Release folders that are links to the same path under shared/ (Capistrano's linked_dirs)."""
    linked_files: tuple[str, ...] = ()
    """Release files that are links to the same path under shared/; the build fails while one is missing."""
    env: tuple[tuple[str, str], ...] = ()
    """The app's plain variables (apps[].env); they reach puma through the environment file, and the build."""
    hooks: tuple[tuple[str, str, bool, int], ...] = ()
    """Release hooks as (point, command, once, timeout seconds): `afterBuild`, `afterPublish`, `onFailure`."""
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

    @property
    def socket_path(self) -> str:
        return f"{self.shared_dir}/tmp/sockets/puma.sock"

    @property
    def pid_file(self) -> str:
        return f"{self.shared_dir}/tmp/pids/puma.pid"

    @property
    def state_file(self) -> str:
        return f"{self.shared_dir}/tmp/pids/puma.state"

    @property
    def puma_config_path(self) -> str:
        # In the root-owned app folder: the app cannot rewrite how puma starts it.
        return f"{self.app_dir}/config/puma.rb"

    @property
    def environment_file(self) -> str:
        # Secrets systemd reads as root: in the root-owned config folder, beside puma.rb, so the
        # app cannot plant a link there that systemd would follow.
        return f"{self.app_dir}/config/environment"

    @property
    def unit_name(self) -> str:
        return f"puma-{self.app}.service"

    @property
    def unit_path(self) -> str:
        return f"{self.systemd_dir}/{self.unit_name}"

    @property
    def socket_unit_name(self) -> str:
        """systemd's unit that holds puma's socket across restarts (systemd hosts only)."""
        return f"puma-{self.app}.socket"

    @property
    def socket_unit_path(self) -> str:
        return f"{self.systemd_dir}/{self.socket_unit_name}"

    @property
    def socket_flag(self) -> str:
        """Set when the socket unit changed: the next publish re-creates the socket (puma stopped meanwhile)."""
        return f"{self.app_dir}/.socket-changed"

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
        return ("/usr/bin/bundle", "exec", "puma", "-C", self.puma_config_path)

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

    def hooks_at(self, point: str) -> list[tuple[str, str, bool, int]]:
        """(id, command, once, timeout) of the hooks at `point`, in order; the id names the hook in logs
        and its once-marker: the point, its position and a hash of the command (a changed command is a
        new hook)."""
        return [(f"{p}-{i + 1}-{content_hash(run)[:8]}", run, once, limit)
                for i, (p, run, once, limit) in enumerate(h for h in self.hooks if h[0] == point)]

    @property
    def health_url(self) -> str:
        """The health check goes through this host's nginx, on the address the site listens on."""
        return f"http://{self.http_bind or '127.0.0.1'}:{self.http_port}{self.health_path}"


def _check(ok: bool, key: str, problem: str, example: str | None = None) -> None:
    if not ok:
        raise ConfigError(f"app_server.{key}", problem, example)


def _validate(s: AppServerSpec) -> None:
    """Refuse values that could not be rendered safely; settings gives friendlier errors first."""
    _check(bool(_NAME_RE.fullmatch(s.app)), "app", f"must be a lowercase app name, got {s.app!r}", "ecom-platform")
    _check(bool(_REPO_URL_RE.fullmatch(s.repo_url)), "repo_url",
           f"must be a git SSH URL, a file:// URL or an absolute path, got {s.repo_url!r}",
           "git@github.com:emami/ecom-platform.git")
    _check(bool(s.hostnames) and all(_HOST_RE.fullmatch(h) for h in s.hostnames), "hostnames",
           f"must be one or more DNS names, got {s.hostnames!r}", "('shop.example.com',)")
    _check(bool(_BRANCH_RE.fullmatch(s.branch)) and ".." not in s.branch, "branch",
           f"must be a git branch name, got {s.branch!r}", "master")
    _check(s.sha is None or bool(_SHA_RE.fullmatch(s.sha)), "sha",
           f"must be a 40-character lowercase hex commit sha or None, got {s.sha!r}")
    _check(s.git_host is None or bool(_HOST_RE.fullmatch(s.git_host)), "git_host",
           f"must be a host name, got {s.git_host!r}", "github.com")
    _check(s.git_host is None or bool(s.known_hosts), "known_hosts",
           "must pin at least one host key when git goes over SSH (no trust on first use)")
    _check(all(_KNOWN_HOST_RE.fullmatch(line) for line in s.known_hosts), "known_hosts",
           "must be known_hosts lines 'host keytype base64key'")
    for key in ("deploy_user", "deploy_group", "nginx_user"):
        _check(bool(_UNIX_NAME_RE.fullmatch(getattr(s, key))), key, f"must be a unix name, got {getattr(s, key)!r}")
    _check(s.deploy_user != "root", "deploy_user", "must not be root: the app runs unprivileged", "deploy")
    for key in ("deploy_root", "datadog_conf_dir", "nginx_dir", "nginx_conf", "nginx_pid_file", "systemd_dir"):
        value = getattr(s, key)
        _check(bool(_PATH_RE.fullmatch(value)) and "/../" not in f"{value}/" and "/./" not in f"{value}/", key,
               f"must be an absolute path without '.' or '..' parts, got {value!r}")
    _check(bool(_URL_PATH_RE.fullmatch(s.health_path)), "health_path", f"must be a URL path, got {s.health_path!r}",
           "/health")
    for key, low, high in (("keep_releases", 2, 100), ("health_timeout", 1, 3600), ("puma_workers", 0, 64),
                           ("puma_threads_min", 0, 256), ("puma_threads_max", 1, 256), ("git_port", 1, 65535),
                           ("http_port", 1, 65535), ("lock_timeout", 1, 86400)):
        value = getattr(s, key)
        _check(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high, key,
               f"must be an integer from {low} to {high}, got {value!r}")
    _check(s.puma_threads_min <= s.puma_threads_max, "puma_threads_min",
           f"must not exceed puma_threads_max ({s.puma_threads_max}), got {s.puma_threads_min}")
    _check(s.ruby_source == "distro", "ruby_source", f"must be 'distro', got {s.ruby_source!r}", "distro")
    _check(s.service_manager in SERVICE_MANAGERS, "service_manager",
           f"must be one of {', '.join(SERVICE_MANAGERS)}, got {s.service_manager!r}")
    _check(bool(_UNIX_NAME_RE.fullmatch(s.rails_env)), "rails_env", f"must be a Rails environment, got {s.rails_env!r}",
           "production")
    _check(s.http_bind is None or bool(re.fullmatch(r"^[0-9.]+$|^\[[0-9a-f:]+\]$", s.http_bind)), "http_bind",
           f"must be an IP address, got {s.http_bind!r}", "127.0.0.1")
    _check(bool(_WHO_RE.fullmatch(s.deployed_by)), "deployed_by", f"must be a short name, got {s.deployed_by!r}")
    _check(all(_PACKAGE_RE.fullmatch(p) for p in s.gem_packages), "gem_packages", "must be Debian package names")
    _check(all(_ENV_NAME_RE.fullmatch(n) and isinstance(v, str) and not set(v) & {"\n", "\r", "\0"}
               for n, v in s.env), "env", "must be (NAME, value) pairs without newlines or NUL")
    _check(not {n for n, _ in s.env} & {n for n, _ in s.app_environment}, "env",
           "must not set a variable the platform sets (RAILS_ENV, RACK_ENV, LANG)")
    links = s.linked_dirs + s.linked_files
    for key in ("linked_dirs", "linked_files"):
        _check(all(_LINK_RE.fullmatch(p) for p in getattr(s, key)), key,
               f"must be relative paths inside the release without '.' or '..' parts, got {getattr(s, key)!r}")
    for i, path in enumerate(links):
        for other in links[i + 1:] + _RESERVED_LINKS:
            _check(not (path == other or path.startswith(other + "/") or other.startswith(path + "/")),
                   "linked_dirs", f"{path!r} overlaps {other!r}")
    _check(all(point in HOOK_POINTS and isinstance(run, str) and run.strip() and not set(run) & {"\n", "\r", "\0"}
               and isinstance(once, bool) and isinstance(limit, int) and 1 <= limit <= 86400
               for point, run, once, limit in s.hooks), "hooks",
           f"must be (point in {', '.join(HOOK_POINTS)}, one-line command, once, timeout 1-86400) tuples")
    _check(all(_PACKAGE_RE.fullmatch(p) and _UNIX_NAME_RE.fullmatch(c) for p, c in s.packages), "packages",
           "must be (Debian package, command) pairs")


# ---------------------------------------------------------------------------- quoting helpers


def _ruby_str(value: str) -> str:
    """A single-quoted Ruby string literal (no interpolation)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _yaml_str(value: str) -> str:
    """A double-quoted YAML scalar (JSON string syntax is valid YAML)."""
    return json.dumps(value)


def _file_block(content: str) -> str:
    """File content ready to sit in a quoted here-document: ends with a newline, no terminator inside."""
    if not content.endswith("\n"):
        content += "\n"
    if any(line == FILE_EOF for line in content.splitlines()):
        raise ValueError(f"file content contains the here-document terminator {FILE_EOF}")
    return content


# ---------------------------------------------------------------------------- config files


def _env_quote(value: str) -> str:
    """A double-quoted value as systemd's EnvironmentFile reads it (and load_app_environment)."""
    return '"' + re.sub(r'(["\\`$])', r"\\\1", value) + '"'


def render_environment_file(variables: Any) -> str:
    """puma's environment file: plain and secret variables, one `NAME="value"` a line, sorted.

    Called inside an apply on secret values: the text is a secret and travels on stdin only."""
    lines = [ENV_FILE_HEADER]
    for name, value in sorted(variables):
        if not _ENV_NAME_RE.fullmatch(name) or set(value) & {"\n", "\r", "\0"}:
            raise ConfigError(f"app_server.env.{name if _ENV_NAME_RE.fullmatch(name) else '?'}",
                              "must be a variable name with a value without newlines or NUL")
        lines.append(f"{name}={_env_quote(value)}")
    return "\n".join(lines) + "\n"


def render_puma_config(spec: AppServerSpec) -> str:
    return render("app_server/puma.rb.j2", spec=spec, rb=_ruby_str)


def render_puma_unit(spec: AppServerSpec) -> str:
    return render("app_server/puma.service.j2", spec=spec)


def render_puma_socket(spec: AppServerSpec) -> str:
    return render("app_server/puma.socket.j2", spec=spec)


def render_nginx_site(spec: AppServerSpec) -> str:
    listen = f"{spec.http_bind}:{spec.http_port}" if spec.http_bind else str(spec.http_port)
    return render("app_server/nginx_site.conf.j2", spec=spec, listen=listen,
                  upstream=f"puma-{spec.app}")


def render_datadog_conf(spec: AppServerSpec) -> str:
    return render("app_server/datadog_process.yaml.j2", spec=spec, y=_yaml_str)


def render_ssh_config(spec: AppServerSpec) -> str:
    if spec.git_host is None:
        raise ValueError("render_ssh_config needs spec.git_host")
    return render("app_server/ssh_config.j2", spec=spec)


def render_bundle_config(spec: AppServerSpec) -> str:
    """A release's `.bundle/config`: read by `bundle install` and by `bundle exec` at run time."""
    return render("app_server/bundle_config.yml.j2", spec=spec, y=_yaml_str)


# ---------------------------------------------------------------------------- steps


def _script(template: str, spec: AppServerSpec, **extra: object) -> str:
    return render(f"app_server/{template}", spec=spec, **extra)


def deploy_user_step(spec: AppServerSpec) -> Step:
    return Step(name="deploy-user", create=_script("deploy_user.sh.j2", spec))


def git_ssh_step(spec: AppServerSpec) -> Step:
    """Deploy key from stdin (never in the text), pinned known_hosts, an SSH config entry."""
    return Step(name="git-ssh", create=_script("git_ssh.sh.j2", spec, ssh_config=_file_block(render_ssh_config(spec)),
                                               known_hosts=_file_block("\n".join(spec.known_hosts))),
                stdin=DEPLOY_KEY_SECRET, secret_output=True)


def layout_step(spec: AppServerSpec) -> Step:
    return Step(name="layout", create=_script("layout.sh.j2", spec))


def app_env_step(spec: AppServerSpec) -> Step:
    """The environment file from stdin (it holds secrets); re-run, through a secret hash, when it changes."""
    return Step(name="app-env", create=_script("app_env.sh.j2", spec, header=ENV_FILE_HEADER),
                stdin=APP_ENV_SECRET, secret_triggers=(APP_ENV_SECRET,), secret_output=True)


def ruby_step(spec: AppServerSpec) -> Step:
    packages = list(spec.packages)
    if spec.bundle_local:
        packages += [(p, "") for p in spec.gem_packages]  # probed with dpkg: they ship no command
    else:
        # bundle install from rubygems.org builds native extensions (nokogiri, puma, pg...).
        packages += [("build-essential", "gcc"), ("ruby-dev", "")]
    return Step(name="ruby", create=_script("ruby.sh.j2", spec, packages=packages))


def _file_step(name: str, template: str, spec: AppServerSpec, text: str) -> Step:
    """A step that installs one rendered file; re-run exactly when the file's text changes."""
    return Step(name=name, create=_script(template, spec, content=_file_block(text)), triggers=(content_hash(text),))


def puma_config_step(spec: AppServerSpec) -> Step:
    return _file_step("puma-config", "puma_config.sh.j2", spec, render_puma_config(spec))


def puma_unit_step(spec: AppServerSpec) -> Step:
    """puma's service unit and, under systemd, the socket unit that keeps its socket across restarts."""
    unit = render_puma_unit(spec)
    if spec.service_manager != "systemd":
        return _file_step("puma-unit", "puma_unit.sh.j2", spec, unit)
    socket = render_puma_socket(spec)
    return Step(name="puma-unit", create=_script("puma_unit.sh.j2", spec, content=_file_block(unit),
                                                 socket_content=_file_block(socket)),
                triggers=(content_hash(unit + socket),))


def nginx_site_step(spec: AppServerSpec) -> Step:
    return _file_step("nginx-site", "nginx_site.sh.j2", spec, render_nginx_site(spec))


def datadog_step(spec: AppServerSpec) -> Step:
    return _file_step("datadog", "datadog.sh.j2", spec, render_datadog_conf(spec))


def release_build_step(spec: AppServerSpec) -> Step:
    """Everything before the switch; the old release keeps serving meanwhile."""
    if spec.sha is None:
        raise ValueError("release_build_step needs spec.sha")
    return Step(name="release-build",
                create=_script("release_build.sh.j2", spec, bundle_config=_file_block(render_bundle_config(spec))),
                triggers=(spec.sha,))


def release_publish_step(spec: AppServerSpec) -> Step:
    """Switch, restart, health check, roll back on failure.

    Replaced (so re-run) when the sha changes and when puma's config, unit or socket unit changes,
    since those need a restart too; the script restarts only when something actually changed.
    """
    if spec.sha is None:
        raise ValueError("release_publish_step needs spec.sha")
    # The environment's hash is a secret trigger (added by the component): a changed variable restarts
    # puma through the drained publish, with no new release.
    units = render_puma_unit(spec) + (render_puma_socket(spec) if spec.service_manager == "systemd" else "")
    return Step(name=PUBLISH_STEP, create=_script("release_publish.sh.j2", spec),
                triggers=(spec.sha, content_hash(render_puma_config(spec)), content_hash(units)),
                secret_triggers=(APP_ENV_SECRET,))


def app_server_steps(spec: AppServerSpec) -> list[Step]:
    """The host's steps, in the order they must run (see the module docstring)."""
    steps = [deploy_user_step(spec)]
    if spec.git_host is not None:  # a local repository (test hosts) needs no key
        steps.append(git_ssh_step(spec))
    steps += [layout_step(spec), app_env_step(spec), ruby_step(spec), puma_config_step(spec), puma_unit_step(spec),
              nginx_site_step(spec)]
    if spec.datadog_enabled:
        steps.append(datadog_step(spec))
    if spec.sha is not None:
        steps += [release_build_step(spec), release_publish_step(spec)]
    return steps


def spec_from_settings(settings: Any, app_name: str, sha: str | None, **overrides: Any) -> AppServerSpec:
    """The spec of an app server of `app_name` from `ecom_infra.settings.Settings`.

    Settings are read by attribute only, so this module imports neither Pulumi nor the
    settings module. Only the known_hosts lines of the app's git host are pinned for it.
    """
    app = settings.app(app_name)
    pinned_as = app.repo.host if app.repo.port == 22 else f"[{app.repo.host}]:{app.repo.port}"
    known_hosts = tuple(line for line in settings.git_known_hosts
                        if pinned_as in line.split(" ", 1)[0].split(","))
    values: dict[str, Any] = {
        "app": app.name, "repo_url": app.repo.url, "hostnames": tuple(app.hostnames), "branch": app.branch,
        "sha": sha, "git_host": app.repo.host, "git_port": app.repo.port, "known_hosts": known_hosts,
        "deploy_user": settings.deploy.user, "deploy_group": settings.deploy.group,
        "deploy_root": settings.deploy.root, "keep_releases": settings.deploy.keep_releases,
        "rails_env": settings.deploy.rails_env, "health_path": app.health_check_path,
        "health_timeout": app.health_check_timeout, "puma_workers": app.puma_workers,
        # One thread count in settings: min = max, as Rails' own puma.rb does.
        "puma_threads_min": app.puma_threads, "puma_threads_max": app.puma_threads,
        "ruby_source": settings.ruby.source, "bundle_local": settings.ruby.bundle_local,
        "datadog_enabled": settings.datadog.enabled, "datadog_conf_dir": settings.datadog.conf_dir,
        "linked_dirs": app.linked_dirs, "linked_files": app.linked_files, "env": app.env,
        "hooks": tuple((h.point, h.run, h.once, h.timeout) for h in app.hooks),
    }
    values.update(overrides)
    return AppServerSpec(**values)


__all__ = ["AppServerSpec", "app_server_steps", "spec_from_settings", "PUBLISH_STEP", "DEPLOY_KEY_SECRET",
           "APP_ENV_SECRET", "render_environment_file",
           "STEP_ORDER"]
