"""AppServer: one EC2 host running one app (puma behind nginx), and its release.

The host comes from `Ec2Host`; the steps that configure it and deploy a release come
from `renderers.app_server` as plain `Step`s and run as remote commands in order. The
last step (`release-publish`: switch, restart, health check) is created separately by
`publish()`, so the platform can drain this server on the load balancers around it.
"""
from __future__ import annotations

import pulumi
import pulumi_command as command

from ecom_infra.settings import App, Settings
from renderers.app_server import DEPLOY_KEY_SECRET, PUBLISH_STEP, AppServerSpec, app_server_steps
from .host import Ec2Host, HostArgs
from .remote_steps import run_steps


def app_server_spec(settings: Settings, app: App, sha: str | None) -> AppServerSpec:
    """The renderer's plain inputs for one server of `app` (all validated in settings)."""
    pinned = app.repo.host if app.repo.port == 22 else f"[{app.repo.host}]:{app.repo.port}"
    return AppServerSpec(
        app=app.name, repo_url=app.repo.url, hostnames=app.hostnames, branch=app.branch, sha=sha,
        git_host=app.repo.host, git_port=app.repo.port,
        known_hosts=tuple(line for line in settings.git_known_hosts if line.split(" ", 1)[0] == pinned),
        deploy_user=settings.deploy.user, deploy_group=settings.deploy.group, deploy_root=settings.deploy.root,
        keep_releases=settings.deploy.keep_releases, health_path=app.health_check_path,
        health_timeout=app.health_check_timeout, puma_workers=app.puma_workers,
        puma_threads_min=1, puma_threads_max=app.puma_threads, ruby_source=settings.ruby.source,
        bundle_local=settings.ruby.bundle_local, rails_env=settings.deploy.rails_env,
        datadog_enabled=settings.datadog.enabled, datadog_conf_dir=settings.datadog.conf_dir,
        deployed_by=f"pulumi-{settings.stack}",
    )


class AppServer(pulumi.ComponentResource):
    def __init__(self, name: str, app: App, sha: str | None, host_args: HostArgs, settings: Settings,
                 ssh_private_key: pulumi.Input[str], deploy_key: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ecom:app:AppServer", name, None, opts)
        self.app = app
        self.server_name = name
        self.sha = sha
        self.host = Ec2Host(name, host_args, settings, ssh_private_key, pulumi.ResourceOptions(parent=self))
        steps = app_server_steps(app_server_spec(settings, app, sha))
        self._publish = next((s for s in steps if s.name == PUBLISH_STEP), None)
        self._secrets = {DEPLOY_KEY_SECRET: deploy_key}
        self.commands = run_steps(name, [s for s in steps if s.name != PUBLISH_STEP], self.host.connection,
                                  self.host.instance_id, parent=self, secrets=self._secrets)
        self.register_outputs({"instance_id": self.host.instance_id, "private_ip": self.host.private_ip})

    @property
    def restart_triggers(self) -> tuple[str, ...]:
        """What makes the publish step (and so the drain around it) run again."""
        return self._publish.triggers if self._publish else ()

    def publish(self, depends_on: list[pulumi.Resource]) -> command.remote.Command | None:
        """Create the switch-and-restart step after `depends_on` (the drains); None without a release."""
        if self._publish is None:
            return None
        [cmd] = run_steps(self.server_name, [self._publish], self.host.connection, self.host.instance_id,
                          parent=self, secrets=self._secrets, depends_on=[self.commands[-1], *depends_on])
        return cmd
