"""HaproxyPair: two HAProxy nodes, keepalived between them, and the Elastic IP they share.

AWS side: the two hosts (in different subnets/AZs when there are several), an IAM role
whose only rights are associating *this* Elastic IP with *these* two instances (plus the
Describe call the takeover script needs), the EIP and its initial association to the
intended master. keepalived moves the association later; Pulumi ignores that drift
(`ignore_changes`) so a `pulumi up` never yanks the EIP back from a healthy backup.
"""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from ecom_infra.settings import Settings
from .app_server import AppServer
from .host import Ec2Host, HostArgs

NODE_NAMES = ("haproxy-a", "haproxy-b")   # haproxy-a is the intended (initial) master


class HaproxyPair(pulumi.ComponentResource):
    def __init__(self, name: str, settings: Settings, app_servers: list[AppServer], security_group_id,
                 ami_id, key_name, ssh_private_key, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ecom:haproxy:HaproxyPair", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env = settings.environment
        self.app_servers = app_servers

        self.role = aws.iam.Role(f"{name}-role", description=f"HAProxy nodes ({env}): move the Elastic IP",
                                 assume_role_policy=json.dumps({
                                     "Version": "2012-10-17",
                                     "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "ec2.amazonaws.com"}}],
                                 }, sort_keys=True),
                                 opts=child)
        self.profile = aws.iam.InstanceProfile(f"{name}-profile", role=self.role.name, opts=child)

        subnets = settings.network.subnets
        self.nodes = [
            Ec2Host(node, HostArgs(role="haproxy", app=None, instance_type=settings.haproxy.instance_type,
                                   subnet=subnets[i % len(subnets)], security_group_id=security_group_id,
                                   ami_id=ami_id, key_name=key_name, instance_profile=self.profile.name),
                    settings, ssh_private_key, child)
            for i, node in enumerate(NODE_NAMES)
        ]
        self.master, self.backup = self.nodes

        self.eip = aws.ec2.Eip(f"{name}-eip", domain="vpc", tags={"Role": "haproxy-vip"}, opts=child)
        self.association = aws.ec2.EipAssociation(
            f"{name}-eip-master", allocation_id=self.eip.allocation_id, instance_id=self.master.instance_id,
            allow_reassociation=True,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["instanceId"]))
        aws.iam.RolePolicy(f"{name}-move-eip", role=self.role.id,
                           policy=pulumi.Output.all(self.eip.arn, self.master.instance.arn,
                                                    self.backup.instance.arn).apply(
                               lambda arns: move_eip_policy(arns[0], arns[1:])),
                           opts=child)
        self.register_outputs({"eip": self.eip.public_ip, "allocation_id": self.eip.allocation_id})

    def summary(self) -> pulumi.Output[dict]:
        return pulumi.Output.all(self.eip.public_ip, self.eip.allocation_id,
                                 *[n.summary() for n in self.nodes]).apply(
            lambda v: {"eip": v[0], "allocationId": v[1], "nodes": list(v[2:]), "master": NODE_NAMES[0]})


def move_eip_policy(eip_arn: str, instance_arns: list[str]) -> str:
    """Least privilege for the takeover script: associate this EIP with these instances."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "MoveThisEip", "Effect": "Allow", "Action": "ec2:AssociateAddress",
             "Resource": [eip_arn, *sorted(instance_arns)]},
            # Describe* calls do not support resource-level permissions.
            {"Sid": "SeeWhoHoldsIt", "Effect": "Allow", "Action": "ec2:DescribeAddresses", "Resource": "*"},
        ],
    }, sort_keys=True)
