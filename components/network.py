"""Security groups: least privilege between the internet, the HAProxy pair and the app servers.

- HAProxy nodes: HTTP/HTTPS from anywhere, SSH from the admin CIDRs, VRRP (IP protocol
  112) only from members of the same group (the two nodes).
- App servers: HTTP and the HAProxy agent's port only from the HAProxy group, SSH from the
  admin CIDRs.
Egress stays open: hosts install packages and the HAProxy nodes call the EC2 API.

Group names: AWS refuses a GroupName that begins with `sg-`, and pulumi-aws would autoname
these `sg-haproxy-<random>` from their resource names, so every group gets a `name_prefix`
(`<project>-<environment>-<role>-`; AWS adds a unique suffix, so a replacement can be created
before the old group is deleted). `ecom_infra/provider_rules.py` holds the rule the mocks check.
"""
from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from ecom_infra.settings import Settings
from renderers.haproxy import AGENT_PORT

VRRP_PROTOCOL = "112"
ALL_EGRESS: Any = [{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"],
               "description": "package mirrors, git host, EC2 API"}]


class SecurityGroups(pulumi.ComponentResource):
    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ecom:network:SecurityGroups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env = settings.environment
        ssh: Any = {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr_blocks": list(settings.ssh.admin_cidrs_v4),
               "ipv6_cidr_blocks": list(settings.ssh.admin_cidrs_v6), "description": "SSH from admin networks"}

        prefix = f"{settings.project}-{env}"
        self.haproxy = aws.ec2.SecurityGroup(
            f"{name}-haproxy", name_prefix=f"{prefix}-haproxy-", vpc_id=settings.network.vpc_id,
            description=f"HAProxy nodes ({env}): web from anywhere, VRRP between the pair",
            ingress=[
                {"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr_blocks": ["0.0.0.0/0"],
                 "ipv6_cidr_blocks": ["::/0"], "description": "HTTP"},
                {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"],
                 "ipv6_cidr_blocks": ["::/0"], "description": "HTTPS"},
                ssh,
                {"protocol": VRRP_PROTOCOL, "from_port": 0, "to_port": 0, "self": True,
                 "description": "VRRP between the two HAProxy nodes only"},
            ],
            egress=ALL_EGRESS, tags={"Role": "haproxy"}, opts=child)

        self.app = aws.ec2.SecurityGroup(
            f"{name}-app", name_prefix=f"{prefix}-app-", vpc_id=settings.network.vpc_id,
            description=f"App servers ({env}): HTTP only from HAProxy",
            ingress=[
                {"protocol": "tcp", "from_port": 80, "to_port": 80, "security_groups": [self.haproxy.id],
                 "description": "HTTP from the HAProxy nodes"},
                {"protocol": "tcp", "from_port": AGENT_PORT, "to_port": AGENT_PORT,
                 "security_groups": [self.haproxy.id], "description": "HAProxy agent-check (drain during a publish)"},
                ssh,
            ],
            egress=ALL_EGRESS, tags={"Role": "app"}, opts=child)
        self.register_outputs({"haproxy": self.haproxy.id, "app": self.app.id})
