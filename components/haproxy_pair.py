"""HaproxyPair: two HAProxy nodes, keepalived between them, and the Elastic IP they share.

AWS side: the two hosts (in different subnets/AZs when there are several), an IAM role
whose only rights are associating *this* Elastic IP with *these* two instances (plus the
Describe call the takeover script needs) and the EIP. keepalived alone owns the EIP's
association: there is no `aws.ec2.EipAssociation` (after a failover AWS gives the association a
new id, `pulumi refresh` drops the resource and the next `up` would re-create it on haproxy-a,
taking the EIP from the current master; `ignore_changes` does not prevent that). On first boot
the intended master wins the election and its notify_master associates the EIP; its
`keepalived-eip-held` step waits for that before the peer's keepalived starts.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import pulumi
import pulumi_aws as aws

from ecom_infra import defaults as D
from ecom_infra.host_names import HAPROXY_NODES, ServerId
from ecom_infra.settings import Settings
from renderers.haproxy.layout import AGENT_PORT
from renderers.haproxy.node import haproxy_node_steps
from renderers.haproxy.spec import TLS_PEM_SECRET, Backend, BackendServer, HaproxyNodeSpec, HealthCheck
from renderers.steps import Step

from .app_server import AppServer
from .host import Ec2Host, HostArgs
from .remote_steps import run_steps

# HAProxy's checks of the app servers (also how long a publish stays drained after its restart).
APP_HEALTH = HealthCheck(interval_s=2, fall=2, rise=2)
KEEPALIVED_STEPS = ("keepalived-notify-master", "keepalived-config", "keepalived-eip-held")


@dataclass(frozen=True)
class PairIds:
    """What the nodes' steps need that AWS decides (addresses are static, ecom_infra/addressing.py)."""
    instance_ids: tuple[str, str]
    """haproxy-a's and haproxy-b's instance ids, in HAPROXY_NODES order."""
    eip_allocation_id: str


# Same names, stdin and count as the real steps: the static shape `run_steps` declares them by.
SHAPE_IDS = PairIds(("i-00000000", "i-00000001"), "eipalloc-00000000")


class HaproxyPair(pulumi.ComponentResource):
    def __init__(self, name: str, settings: Settings, app_servers: list[AppServer],
                 addresses: dict, security_group_id,
                 ami_id, key_name, ssh_private_key, tls_certificate: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("ecom:haproxy:HaproxyPair", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env = settings.environment
        self.app_servers = app_servers
        self.health = APP_HEALTH

        self.role = aws.iam.Role(f"{name}-role", description=f"HAProxy nodes ({env}): move the Elastic IP",
                                 assume_role_policy=json.dumps({
                                     "Version": "2012-10-17",
                                     "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "ec2.amazonaws.com"}}],
                                 }, sort_keys=True),
                                 opts=child)
        self.profile = aws.iam.InstanceProfile(f"{name}-profile", role=self.role.name, opts=child)

        self.nodes = [
            Ec2Host(node, HostArgs(role="haproxy", app=None, instance_type=settings.haproxy.instance_type,
                                   subnet=addresses[node][0], private_ip=addresses[node][1],
                                   security_group_id=security_group_id, ami_id=ami_id, key_name=key_name,
                                   instance_profile=self.profile.name),
                    settings, ssh_private_key, child)
            for node in HAPROXY_NODES
        ]
        self.master, self.backup = self.nodes

        # The public address behind DNS: losing it is an outage, so it is protected.
        self.eip = aws.ec2.Eip(f"{name}-eip", domain="vpc", tags={"Role": "haproxy-vip"},
                               opts=pulumi.ResourceOptions(parent=self, protect=True))
        self.move_eip = aws.iam.RolePolicy(f"{name}-move-eip", role=self.role.id,
                           policy=pulumi.Output.all(self.eip.arn, self.master.instance.arn,
                                                    self.backup.instance.arn).apply(
                               lambda arns: move_eip_policy(arns[0], arns[1:])),
                           opts=child)
        self.settings = settings
        self.addresses = addresses
        self.configure_nodes(tls_certificate)
        self.register_outputs({"eip": self.eip.public_ip, "allocation_id": self.eip.allocation_id})

    def configure_nodes(self, tls_certificate: pulumi.Input[str] | None) -> None:
        """haproxy + keepalived on each node; node b only after node a, never both at once."""
        # Addresses are static plain values (ecom_infra/addressing.py): only the ids are Outputs, so
        # replacing an app server does not show every HAProxy step as changing in a preview.
        ids = pulumi.Output.all(self.master.instance_id, self.backup.instance_id, self.eip.allocation_id).apply(
            lambda v: PairIds(instance_ids=(v[0], v[1]), eip_allocation_id=v[2]))
        secrets = {TLS_PEM_SECRET: tls_certificate} if tls_certificate is not None else None
        after: list[pulumi.Resource] = []
        self.node_commands = []
        for index, node in enumerate(self.nodes):
            shape = self._steps(index, SHAPE_IDS)
            rendered = ids.apply(partial(self._steps, index))
            # keepalived's notify_master calls ec2:AssociateAddress with the instance profile's
            # credentials: its steps wait for the policy that allows it and for the profile.
            iam = [self.move_eip, self.profile]
            commands = run_steps(node.host_name, shape, node.connection, node.instance_id, parent=self,
                                 secrets=secrets, depends_on=after, rendered=rendered,
                                 step_depends_on={s.name: iam for s in shape if s.name in KEEPALIVED_STEPS})
            self.node_commands.append(commands)
            after = [commands[-1]]

    @property
    def configured(self) -> list[pulumi.Resource]:
        """The last step of each node: HAProxy and keepalived are set up once these have run."""
        return [commands[-1] for commands in self.node_commands]

    def _steps(self, index: int, ids: PairIds) -> list[Step]:
        s = self.settings
        ips = [self.addresses[name][1] for name in HAPROXY_NODES]
        node = HaproxyNodeSpec(name=HAPROXY_NODES[index], private_ip=ips[index], peer_private_ip=ips[1 - index],
                               instance_id=ids.instance_ids[index], is_master=index == 0,
                               vrrp_router_id=s.haproxy.vrrp_router_id, eip_allocation_id=ids.eip_allocation_id,
                               region=s.region, aws_endpoint_url=s.aws_endpoint,
                               tls_cert=s.has_tls_certificate, check_interval_s=s.haproxy.check_interval)
        servers = [(server.server, self.addresses[server.server.name][1]) for server in self.app_servers]
        return haproxy_node_steps(node, backends(s, servers), default_app=s.apps[0].name, health=self.health)

    def summary(self) -> pulumi.Output[dict]:
        return pulumi.Output.all(self.eip.public_ip, self.eip.allocation_id,
                                 *[n.summary() for n in self.nodes]).apply(
            lambda v: {"eip": v[0], "allocationId": v[1], "nodes": list(v[2:]), "master": HAPROXY_NODES[0]})


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


def backends(settings: Settings, servers: Sequence[tuple[ServerId, str]]) -> list[Backend]:
    """One backend per app with every app server of that app, given as (server, address) (this replaces the Chef
    search)."""
    result = []
    for app in settings.apps:
        members = tuple(BackendServer(name=server.name, address=address, port=D.HTTP_PORT, agent_port=AGENT_PORT)
                        for server, address in sorted(servers) if server.app == app.name)
        result.append(Backend(app=app.name, hostnames=app.hostnames, health_path=app.health_check_path,
                              servers=members))
    return result
