"""One EC2 host (app server or HAProxy node) and the SSH connection its commands use.

Hardening every host gets: IMDSv2 required (hop limit 1), an encrypted root volume,
non-root processes blocked from the metadata service, and an SSH host key generated
by Pulumi (pulumi-tls), installed through cloud-init and pinned in `connection.host_key`
so no remote command ever trusts a host on first use. The user data carries that private
key, so it is a secret in state.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_command as command
import pulumi_tls as tls

from ecom_infra.settings import Settings, Subnet
from renderers.host import render_cloud_init

# Instance inputs whose change replaces the host; they apply only to the hosts in `rollHosts`.
ROLLED_ONLY = ["ami", "keyName", "userData"]


@dataclass(frozen=True)
class HostArgs:
    role: str                       # "app" or "haproxy"
    app: str | None                 # the app an app server runs
    instance_type: str
    subnet: Subnet
    security_group_id: pulumi.Input[str]
    ami_id: pulumi.Input[str]
    key_name: pulumi.Input[str]
    private_ip: str                 # static: see ecom_infra/addressing.py
    instance_profile: pulumi.Input[str] | None = None


class Ec2Host(pulumi.ComponentResource):
    def __init__(self, name: str, args: HostArgs, settings: Settings, ssh_private_key: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ecom:host:Ec2Host", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.host_name = name
        self.subnet = args.subnet

        self.host_key = tls.PrivateKey(f"{name}-host-key", algorithm="ED25519", opts=child)
        rendered: pulumi.Output[str] = pulumi.Output.all(
            self.host_key.private_key_openssh, self.host_key.public_key_openssh,
        ).apply(lambda keys: render_cloud_init(keys[0], keys[1]))
        user_data: pulumi.Output[str] = pulumi.Output[str].secret(rendered)

        tags = {"Name": f"{settings.environment}-{name}", "Environment": settings.environment,
                "Role": args.role, "App": args.app or "-"}
        self.instance = aws.ec2.Instance(
            name,
            ami=args.ami_id,
            instance_type=args.instance_type,
            subnet_id=args.subnet.id,
            private_ip=args.private_ip,
            availability_zone=args.subnet.az,
            vpc_security_group_ids=[args.security_group_id],
            key_name=args.key_name,
            iam_instance_profile=args.instance_profile,
            user_data=user_data,
            user_data_replace_on_change=True,  # a new host key means a new host
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": 1},
            root_block_device={"encrypted": True, "volume_type": "gp3", "volume_size": 20,
                               "delete_on_termination": True},
            monitoring=True,
            tags=tags,
            volume_tags=tags,
            # A replacement takes over the static address, so the old instance must go first.
            # A newer AMI, a rotated key pair or an edited cloud-init template would replace every
            # host at once (both HAProxy nodes included): those changes are ignored, except on the
            # hosts named in `rollHosts`, which a deliberate run replaces one at a time (README
            # runbook). `--replace` alone is not enough: the engine keeps an ignored property's
            # stored value, so the replacement would boot the old AMI and user data.
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["userData"],
                                        delete_before_replace=True,
                                        ignore_changes=[] if name in settings.roll_hosts else ROLLED_ONLY),
        )
        self.instance_id = self.instance.id
        self.private_ip = self.instance.private_ip
        self.connection = command.remote.ConnectionArgsDict(
            host=self.instance.private_ip,
            user=settings.ssh.user,
            private_key=ssh_private_key,
            host_key=self.host_key.public_key_openssh.apply(lambda k: k.strip()),
            dial_error_limit=30,      # a fresh instance needs a minute before sshd answers
            per_dial_timeout=10,
        )
        self.register_outputs({"instance_id": self.instance.id, "private_ip": self.instance.private_ip})

    def summary(self) -> pulumi.Output[dict]:
        """The outputs-schema entry for this host."""
        return pulumi.Output.all(self.instance.id, self.instance.private_ip).apply(
            lambda v: {"name": self.host_name, "instanceId": v[0], "privateIp": v[1], "az": self.subnet.az})
