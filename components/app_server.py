"""AppServer: one EC2 host running one app (puma behind nginx), and its release.

The host comes from `Ec2Host`; the steps that configure it and deploy a release come
from `renderers.app_server` as plain `Step`s and run as remote commands in order.
"""
from __future__ import annotations

import pulumi

from ecom_infra.settings import App, Settings
from .host import Ec2Host, HostArgs


class AppServer(pulumi.ComponentResource):
    def __init__(self, name: str, app: App, host_args: HostArgs, settings: Settings,
                 ssh_private_key: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__("ecom:app:AppServer", name, None, opts)
        self.app = app
        self.server_name = name
        self.host = Ec2Host(name, host_args, settings, ssh_private_key, pulumi.ResourceOptions(parent=self))
        self.register_outputs({"instance_id": self.host.instance_id, "private_ip": self.host.private_ip})
