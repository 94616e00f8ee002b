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

import dataclasses
import json

import pulumi
import pulumi_aws as aws

from ecom_infra.settings import Settings
from renderers.haproxy.agent import agent_step, drained
from renderers.haproxy.layout import AGENT_PORT
from renderers.haproxy.node import haproxy_node_steps
from renderers.haproxy.spec import TLS_PEM_SECRET, Backend, BackendServer, HaproxyNodeSpec, HealthCheck
from renderers.steps import Step
from .app_server import AppServer
from .host import Ec2Host, HostArgs
from .remote_steps import run_steps

NODE_NAMES = ("haproxy-a", "haproxy-b")   # haproxy-a is the intended (initial) master
# HAProxy's checks of the app servers (also how long a publish stays drained after its restart).
APP_HEALTH = HealthCheck(interval_s=2, fall=2, rise=2)
KEEPALIVED_STEPS = ("keepalived-notify-master", "keepalived-config", "keepalived-eip-held")


class HaproxyPair(pulumi.ComponentResource):
    def __init__(self, name: str, settings: Settings, app_servers: list[AppServer],
                 addresses: dict, security_group_id,
                 ami_id, key_name, ssh_private_key, tls_certificate: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None):
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

        self.nodes = [
            Ec2Host(node, HostArgs(role="haproxy", app=None, instance_type=settings.haproxy.instance_type,
                                   subnet=addresses[node][0], private_ip=addresses[node][1],
                                   security_group_id=security_group_id, ami_id=ami_id, key_name=key_name,
                                   instance_profile=self.profile.name),
                    settings, ssh_private_key, child)
            for node in NODE_NAMES
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
        servers = [(s.server_name, self.addresses[s.server_name][1]) for s in self.app_servers]
        facts = pulumi.Output.all(self.addresses[NODE_NAMES[0]][1], self.addresses[NODE_NAMES[1]][1],
                                  self.master.instance_id, self.backup.instance_id, self.eip.allocation_id, servers)
        secrets = {TLS_PEM_SECRET: tls_certificate} if tls_certificate is not None else None
        after: list[pulumi.Resource] = []
        self.node_commands = []
        for index, node in enumerate(self.nodes):
            shape = self._steps(index, ["10.0.0.1", "10.0.0.2", "i-00000000", "i-00000001", "eipalloc-00000000",
                                        [(s.server_name, "10.0.0.3") for s in self.app_servers]])
            rendered = facts.apply(lambda f, i=index: self._steps(i, f))
            # keepalived's notify_master calls ec2:AssociateAddress with the instance profile's
            # credentials: its steps wait for the policy that allows it and for the profile.
            iam = [self.move_eip, self.profile]
            commands = run_steps(node.host_name, shape, node.connection, node.instance_id, parent=self,
                                 secrets=secrets, depends_on=after, rendered=rendered,
                                 step_depends_on={s.name: iam for s in shape if s.name in KEEPALIVED_STEPS})
            self.node_commands.append(commands)
            after = [commands[-1]]

    def _steps(self, index: int, facts: list) -> list[Step]:
        ips, ids, allocation, servers = facts[0:2], facts[2:4], facts[4], facts[5]
        s = self.settings
        node = HaproxyNodeSpec(name=NODE_NAMES[index], private_ip=ips[index], peer_private_ip=ips[1 - index],
                               instance_id=ids[index], is_master=index == 0, vrrp_router_id=s.haproxy.vrrp_router_id,
                               eip_allocation_id=allocation, region=s.region, aws_endpoint_url=s.aws_endpoint,
                               tls_cert=s.has_tls_certificate, check_interval_s=s.haproxy.check_interval)
        return haproxy_node_steps(node, backends(s, dict(servers)), default_app=s.apps[0].name,
                                  health=APP_HEALTH)

    def rolling_publish(self) -> None:
        """Restart each app's servers in batches of `apps[].restartBatch` (default all but one), after every
        server of the app has built its release, each server drained on both nodes while it restarts. Under
        systemd puma's socket outlives the restart (requests wait for the new puma): the drain then skips its
        wait for HAProxy's checks, and `apps[].drainRestarts: false` skips the drain itself unless the publish
        re-creates the socket.

        builds of all servers -> publish(batch 1) -> publish(batch 2) -> ... A build that fails stops the
        deploy before any server restarts; a publish that fails stops it before the next batch. The drain is
        not a step on the HAProxy nodes (the engine starts no step after a failure, so a `ready` step after a
        failed publish would never run): each app server runs an agent HAProxy asks at every check, and the
        publish holds the lock that makes it answer "drain" (`renderers.haproxy.agent.drained`). However the publish
        ends, the lock dies with it and the server is ready again.
        """
        for app in self.settings.apps:
            servers = [s for s in self.app_servers if s.app.name == app.name]
            agents = {s.server_name: run_steps(s.server_name, [agent_step()], s.host.connection, s.host.instance_id,
                                               parent=s, depends_on=[s.commands[-1]])
                      for s in servers}
            # Every build of the app (and its afterBuild hooks: db:migrate) before the first restart: a release
            # that cannot build anywhere restarts nowhere, and the old release keeps serving everywhere.
            after: list[pulumi.Resource] = [commands[-1] for commands in self.node_commands]
            after += [s.commands[-1] for s in servers]
            restarting = [s for s in servers if s.restart_triggers]   # no release on a server: nothing to restart
            for first in range(0, len(restarting), app.restart_batch):
                batch = restarting[first:first + app.restart_batch]
                published = [s.publish(depends_on=[*agents[s.server_name], *after],
                                       wrap=lambda step, s=s: drained(step, APP_HEALTH, socket_flag=s.socket_flag,
                                                                      drain_always=app.drain_restarts))
                             for s in batch]
                after = [p for p in published if p is not None]

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


def backends(settings: Settings, addresses: dict[str, str]) -> list[Backend]:
    """One backend per app with every app server of that app (this replaces the Chef search)."""
    result = []
    for app in settings.apps:
        members = tuple(BackendServer(name=name, address=addresses[name], port=80, agent_port=AGENT_PORT)
                        for name in sorted(addresses, key=_server_order) if name.rsplit("-", 1)[0] == app.name)
        result.append(Backend(app=app.name, hostnames=app.hostnames, health_path=app.health_check_path,
                              servers=members))
    return result


def _server_order(name: str) -> tuple[str, int]:
    app, _, index = name.rpartition("-")
    return app, int(index)
