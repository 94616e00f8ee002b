"""The typed stack settings: frozen dataclasses mirroring the README's "Config reference".

`ecom_infra.settings` builds them (validated) and re-exports them; import them from there.
Field defaults come from `ecom_infra.defaults`.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from . import defaults as D


@dataclass(frozen=True)
class GitRemote:
    url: str
    user: str
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class Hook:
    """One release hook: a command run by bash as the deploy user inside the release."""
    point: str             # one of rules.HOOK_POINTS
    run: str
    once: bool = D.HOOK_ONCE   # on one server of the app (its first), once per release sha
    timeout: int = D.HOOK_TIMEOUT
    if_changed: tuple[str, ...] = D.HOOK_IF_CHANGED   # repository paths; () runs the hook every time


@dataclass(frozen=True)
class App:
    name: str
    repo: GitRemote
    branch: str
    servers: int
    instance_type: str
    hostnames: tuple[str, ...]
    health_check_path: str
    health_check_timeout: int
    puma_workers: int
    puma_threads: int
    restart_batch: int = 1   # servers whose puma restarts at once; default: all but one (parse_app)
    drain_restarts: bool = D.APP_DRAIN_RESTARTS   # True: drain the server on HAProxy around every publish
    keep_standby: bool = D.APP_KEEP_STANDBY       # the previous release's puma stays up after a publish
    linked_dirs: tuple[str, ...] = D.APP_LINKED_DIRS   # release paths linked to the same path under shared/
    linked_files: tuple[str, ...] = D.APP_LINKED_FILES
    env: tuple[tuple[str, str], ...] = ()   # plain variables from the stack file, sorted by name
    hooks: tuple[Hook, ...] = ()            # in HOOK_POINTS order, each point's in the order given


@dataclass(frozen=True)
class Deploy:
    user: str
    group: str
    root: str
    keep_releases: int
    rails_env: str


@dataclass(frozen=True)
class Ruby:
    source: str            # "distro": Debian packages ruby + bundler
    bundle_local: bool     # `bundle install --local`: gems come from the image, not rubygems.org


@dataclass(frozen=True)
class Subnet:
    id: str
    az: str
    cidr: ipaddress.IPv4Network


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnets: tuple[Subnet, ...]


@dataclass(frozen=True)
class Ssh:
    user: str
    admin_cidrs: tuple[str, ...]
    public_key: str

    # AWS takes IPv4 and IPv6 blocks in separate rule fields (it rejects IPv6 in `cidr_blocks`).
    @property
    def admin_cidrs_v4(self) -> tuple[str, ...]:
        return tuple(c for c in self.admin_cidrs if ipaddress.ip_network(c).version == 4)

    @property
    def admin_cidrs_v6(self) -> tuple[str, ...]:
        return tuple(c for c in self.admin_cidrs if ipaddress.ip_network(c).version == 6)


@dataclass(frozen=True)
class Ami:
    id: str | None
    owners: tuple[str, ...]
    name_pattern: str


@dataclass(frozen=True)
class ShaBucket:
    name: str
    key: str
    owner: bool            # exactly one stack owns (creates, protects) the bucket; the others only read it
    adopt: bool = D.SHA_BUCKET_ADOPT   # owner stack only: import the existing bucket instead of creating it
    noncurrent_days: int = D.NONCURRENT_DAYS   # owner stack only: noncurrent versions of the sha file expire
    noncurrent_kept: int = D.NONCURRENT_KEPT   # this long after they were replaced, except the newest
    #                                            `noncurrent_kept` (0: age alone)


@dataclass(frozen=True)
class Haproxy:
    instance_type: str
    vrrp_router_id: int
    check_interval: int


@dataclass(frozen=True)
class Datadog:
    enabled: bool
    conf_dir: str
    api_url: str = D.DATADOG_API_URL   # events go to <api_url>/api/v1/events
    api_key_set: bool = False   # `datadog.apiKey` (a secret) is set: deploy events go to Datadog


@dataclass(frozen=True)
class DeployEvents:
    """Where `ecom-deploy deploy-event` sends one event per publish (besides Datadog)."""
    webhook_url: str | None = None
    timeout: int = D.EVENT_TIMEOUT   # seconds per delivery; a failed delivery only warns


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    environment: str
    region: str
    aws_endpoint: str | None
    apps: tuple[App, ...]
    deploy: Deploy
    ruby: Ruby
    network: Network
    ssh: Ssh
    ami: Ami
    sha_bucket: ShaBucket
    haproxy: Haproxy
    datadog: Datadog
    deploy_events: DeployEvents
    git_known_hosts: tuple[str, ...]
    has_tls_certificate: bool
    tags: dict[str, str] = field(default_factory=dict)
    roll_hosts: tuple[str, ...] = ()   # hosts whose ami/keyName/userData changes apply in this run (replacing them)

    def app(self, name: str) -> App:
        for app in self.apps:
            if app.name == name:
                return app
        raise KeyError(name)


@dataclass(frozen=True)
class Secrets:
    """Secret inputs, kept as Pulumi Outputs so they stay secret end to end."""

    deploy_key: Any        # pulumi.Output[str]: the git deploy key (OpenSSH private key)
    ssh_private_key: Any   # pulumi.Output[str]: the key remote commands log in with
    tls_certificate: Any   # pulumi.Output[str] | None: PEM (cert + key) for HAProxy :443
    app_secrets: Any = None   # pulumi.Output[dict[str, tuple[tuple[str, str], ...]]]: per app, validated
