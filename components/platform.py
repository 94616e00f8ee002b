"""The whole platform for one environment: what `__main__.py` declares."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from ecom_infra.addressing import host_addresses
from ecom_infra.host_names import server_ids
from ecom_infra.settings import Secrets, Settings

from .app_server import AppServer
from .haproxy_pair import HaproxyPair
from .host import HostArgs
from .network import SecurityGroups
from .rolling_restart import rolling_restart
from .sha_bucket import ShaBucket, read_release_shas


@dataclass
class Platform:
    settings: Settings
    shas: dict[str, str | None]
    sha_bucket: ShaBucket | None
    app_servers: dict[str, list[AppServer]]
    haproxy: HaproxyPair


def aws_provider(settings: Settings) -> aws.Provider:
    """One explicit provider: the region, default tags, and (local fleet) a moto endpoint."""
    args: dict = {"region": settings.region,
                  "default_tags": {"tags": {"Project": settings.project, "Environment": settings.environment,
                                            "ManagedBy": "pulumi", **settings.tags}}}
    if settings.aws_endpoint:
        services = ("ec2", "iam", "s3", "sts")
        args.update(endpoints=[{s: settings.aws_endpoint for s in services}],
                    skip_credentials_validation=True, skip_requesting_account_id=True,
                    skip_metadata_api_check=True, s3_use_path_style=True)
    return aws.Provider("aws", **args)


def ami_id(settings: Settings, provider: aws.Provider) -> str:
    if settings.ami.id:
        return settings.ami.id
    return aws.ec2.get_ami(most_recent=True, owners=list(settings.ami.owners),
                           filters=[{"name": "name", "values": [settings.ami.name_pattern]},
                                    {"name": "architecture", "values": ["x86_64"]}],
                           opts=pulumi.InvokeOptions(provider=provider)).id


def build(settings: Settings, secrets: Secrets) -> Platform:
    addresses = host_addresses(settings)      # fails on a subnet too small, before any resource
    provider = aws_provider(settings)
    opts = pulumi.ResourceOptions(provider=provider)
    shas = read_release_shas(settings, provider)
    sha_bucket = ShaBucket("sha-bucket", settings, opts) if settings.sha_bucket.owner else None
    groups = SecurityGroups("sg", settings, opts)
    image = ami_id(settings, provider)
    key_pair = aws.ec2.KeyPair("admin-key", public_key=settings.ssh.public_key, opts=opts)

    app_servers: dict[str, list[AppServer]] = {}
    for app in settings.apps:
        app_servers[app.name] = [
            AppServer(server, app, shas[app.name],
                      HostArgs(role="app", app=app.name, instance_type=app.instance_type,
                               subnet=addresses[server.name][0],
                               private_ip=addresses[server.name][1], security_group_id=groups.app.id,
                               ami_id=image, key_name=key_pair.key_name),
                      settings, secrets.ssh_private_key, secrets.deploy_key, secrets.app_secrets, opts,
                      # The app's `once` hooks (db:migrate) run on one server: its first, which stays
                      # when the app scales; it records each sha's success (renderers/app_server/).
                      runs_once_hooks=server.first)
            for server in server_ids(app.name, app.servers)
        ]
    every_server = [s for servers in app_servers.values() for s in servers]
    haproxy = HaproxyPair("haproxy", settings, every_server, addresses, groups.haproxy.id, image, key_pair.key_name,
                          secrets.ssh_private_key, secrets.tls_certificate, opts)
    rolling_restart(settings.apps, every_server, after=haproxy.configured, health=haproxy.health)
    return Platform(settings, shas, sha_bucket, app_servers, haproxy)
