"""AppServer: one EC2 host running one app (puma behind nginx), and its release.

The host comes from `Ec2Host`; the steps that configure it and deploy a release come
from `renderers.app_server` as plain `Step`s and run as remote commands in order. The
last step (`release-publish`: switch, restart, health check) is created separately by
`publish()`, so the rolling restart (components/rolling_restart.py) can drain this server on the
load balancers around it; `built` is what it needs to know of the server before that.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command

from ecom_infra.host_names import ServerId
from ecom_infra.settings import App, Settings
from renderers.app_server.files import render_environment_file
from renderers.app_server.spec import AppServerSpec
from renderers.app_server.steps import APP_ENV_SECRET, DEPLOY_KEY_SECRET, PUBLISH_STEP, app_server_steps
from renderers.steps import Step

from .host import Ec2Host, HostArgs
from .remote_steps import TRIGGER_KEY, run_steps


@dataclass(frozen=True)
class Built:
    """An app server once every step before its release's switch is declared."""
    server: ServerId
    step: pulumi.Resource
    """The last of those steps (`release-build`, or the last setup step without a release): what may only run
    once the server is built (its publish, the HAProxy agent) waits for it."""
    publishes: bool
    """The server has a release (a sha) to publish: without one there is nothing to restart."""


class AppServer(pulumi.ComponentResource):
    def __init__(self, server: ServerId, app: App, sha: str | None, host_args: HostArgs, settings: Settings,
                 ssh_private_key: pulumi.Input[str], deploy_key: pulumi.Input[str],
                 app_secrets: pulumi.Input[dict] | None = None, opts: pulumi.ResourceOptions | None = None,
                 runs_once_hooks: bool = False):
        super().__init__("ecom:app:AppServer", server.name, None, opts)
        self.app = app
        self.server = server
        self.sha = sha
        self.host = Ec2Host(server.name, host_args, settings, ssh_private_key, pulumi.ResourceOptions(parent=self))
        spec = spec_from_settings(settings, app.name, sha, deployed_by=f"pulumi-{settings.stack}",
                                  runs_once_hooks=runs_once_hooks)
        steps = app_server_steps(spec)
        self._publish = next((s for s in steps if s.name == PUBLISH_STEP), None)
        # The environment file holds the app's secrets: rendered inside the secret, fed on stdin.
        secrets_of_app = pulumi.Output.secret(app_secrets if app_secrets is not None else {}).apply(
            lambda by_app: tuple(by_app.get(app.name, ())))
        # The deploy key also keys the hash of the environment in triggers (rotating it restarts puma once).
        self._secrets = {DEPLOY_KEY_SECRET: deploy_key, TRIGGER_KEY: deploy_key,
                         APP_ENV_SECRET: secrets_of_app.apply(
                             lambda pairs: render_environment_file(tuple(app.env) + tuple(map(tuple, pairs))))}
        self.commands = run_steps(server.name, [s for s in steps if s.name != PUBLISH_STEP], self.host.connection,
                                  self.host.instance_id, parent=self, secrets=self._secrets)
        self.register_outputs({"instance_id": self.host.instance_id, "private_ip": self.host.private_ip})

    @property
    def built(self) -> Built:
        return Built(self.server, self.commands[-1], self._publish is not None)

    def run_after_build(self, steps: list[Step]) -> list[command.remote.Command]:
        """Run `steps` (e.g. the HAProxy agent) on this host once it is built, named `<server>-<step>`."""
        return run_steps(self.server.name, steps, self.host.connection, self.host.instance_id, parent=self,
                         depends_on=[self.built.step])

    def publish(self, depends_on: list[pulumi.Resource],
                wrap: Callable[[Step], Step] | None = None) -> command.remote.Command | None:
        """Create the switch-and-restart step after `depends_on`, its script wrapped by `wrap` (the
        load balancers' drain around it); None without a release."""
        if self._publish is None:
            return None
        step = wrap(self._publish) if wrap else self._publish
        [cmd] = run_steps(self.server.name, [step], self.host.connection, self.host.instance_id,
                          parent=self, secrets=self._secrets, depends_on=[self.commands[-1], *depends_on])
        return cmd


def spec_from_settings(settings: Settings, app_name: str, sha: str | None, **overrides: Any) -> AppServerSpec:
    """The spec of an app server of `app_name` from the stack settings (the renderers never read settings).

    Only the known_hosts lines of the app's git host are pinned for it.
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
        "keep_standby": app.keep_standby,
        # One thread count in settings: min = max, as Rails' own puma.rb does.
        "puma_threads_min": app.puma_threads, "puma_threads_max": app.puma_threads,
        "ruby_source": settings.ruby.source, "bundle_local": settings.ruby.bundle_local,
        "datadog_enabled": settings.datadog.enabled, "datadog_conf_dir": settings.datadog.conf_dir,
        "linked_dirs": app.linked_dirs, "linked_files": app.linked_files, "env": app.env,
        "hooks": tuple((h.point, h.run, h.once, h.timeout, h.if_changed) for h in app.hooks),
    }
    values.update(overrides)
    return AppServerSpec(**values)
