"""The app server's steps, in the order they must run (see the package docstring)."""
from __future__ import annotations

from .. import content_hash, render
from ..steps import Step
from .files import (
    ENV_FILE_HEADER,
    _file_block,
    render_bundle_config,
    render_datadog_conf,
    render_nginx_site,
    render_puma_config,
    render_puma_launcher,
    render_puma_socket,
    render_puma_unit,
    render_ssh_config,
)
from .spec import SLOTS, AppServerSpec

STEP_ORDER = ("deploy-user", "git-ssh", "layout", "app-env", "ruby", "puma-config", "puma-unit", "nginx-site",
              "datadog", "release-build", "release-publish")
PUBLISH_STEP = "release-publish"
"""The step that restarts puma: the load balancers drain this server before it and set it ready after."""

DEPLOY_KEY_SECRET = "deploy_key"
APP_ENV_SECRET = "app_env"
"""The app's environment file (plain and secret variables): fed on stdin, hashed into triggers as a secret."""


def _script(template: str, spec: AppServerSpec, **extra: object) -> str:
    return render(f"app_server/{template}", spec=spec, slots=SLOTS, **extra)


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
    """puma.rb and the launcher the unit runs (puma-start.rb); re-run when either text changes."""
    config, launcher = render_puma_config(spec), render_puma_launcher(spec)
    return Step(name="puma-config", create=_script("puma_config.sh.j2", spec, content=_file_block(config),
                                                   launcher=_file_block(launcher)),
                triggers=(content_hash(config + launcher),))


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
                triggers=(spec.sha, content_hash(render_puma_config(spec) + render_puma_launcher(spec)),
                          content_hash(units)),
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
