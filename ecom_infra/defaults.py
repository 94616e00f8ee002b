"""Every default in one place: what a stack gets for a key it leaves out, and the release tools' settings.

Like Capistrano's `defaults.rb`: settings (`ecom_infra.settings`), the release code and CLI
(`ecom_infra.release`, `ecom_infra.release_cli`), the renderers and the local fleet read their
defaults from here, and the README's "Config reference" table is checked against `README_TABLE`
(tests/plan/test_defaults_readme.py). Allowed ranges and patterns live in `ecom_infra.rules`.

Public API: the constants below, grouped by config section; `restart_batch(servers)`,
`sha_bucket_owner(environment)` and `subnet_cidr(index)` for defaults that depend on another
value; `README_TABLE`, each README key with its default as the README states it.
"""
from __future__ import annotations

from typing import Any

# ----------------------------------------------------------------------------- ecom-infra:apps[]
APP_BRANCH = "master"
APP_SERVERS = 2
APP_INSTANCE_TYPE = "t3.small"
APP_HEALTH_CHECK_PATH = "/health"
APP_HEALTH_CHECK_TIMEOUT = 60       # seconds the deploy waits for a healthy app
APP_PUMA_WORKERS = 2
APP_PUMA_THREADS = 5                # puma's max threads (its min stays PUMA_THREADS_MIN)
# No HAProxy drain around a publish: the new release boots in puma's idle slot and nginx switches to it, so no
# request waits for or misses a puma (0 failed on the fleet). `true` drains anyway.
APP_DRAIN_RESTARTS = False
# The slot a publish switched away from keeps running the previous release, so a rollback to it is a switch.
# Each deploy boots two pumas side by side anyway, so the host must have room for two either way.
APP_KEEP_STANDBY = True
# What every release linked before these were settings (Capistrano's linked_dirs for a Rails app).
# `public/assets` is not among them: it always links to shared/assets, where the asset cleanup and
# the manifest copies in meta/ look.
APP_LINKED_DIRS: tuple[str, ...] = ("log", "tmp/pids", "tmp/sockets", "tmp/cache")
APP_LINKED_FILES: tuple[str, ...] = ()
HOOK_ONCE = False
HOOK_TIMEOUT = 600                  # seconds a hook may run before it is killed (and fails the deploy)
HOOK_IF_CHANGED: tuple[str, ...] = ()   # no paths: the hook runs on every deploy, changed or not


def restart_batch(servers: int) -> int:
    """`apps[].restartBatch`: all but one server at once (some server must serve while the others
    restart); 1 when the app has one server."""
    return max(1, servers - 1)


# ----------------------------------------------------------------------------- ecom-infra:deploy
DEPLOY_USER = "deploy"              # deploy.group defaults to the user
DEPLOY_ROOT = "/srv/www"
KEEP_RELEASES = 5
RAILS_ENV = "production"

# ----------------------------------------------------------------------------- ecom-infra:ruby
RUBY_SOURCE = "distro"
RUBY_BUNDLE_LOCAL = False

# ----------------------------------------------------------------------------- network, ssh, ami


def subnet_cidr(index: int) -> str:
    """`network.subnets[i].cidr` (informational on AWS; the plan and the fleet give addresses from it)."""
    return f"10.0.{index + 1}.0/24"


SSH_USER = "admin"                  # Debian AMIs' login user
AMI_OWNERS: tuple[str, ...] = ("136693071363",)   # Debian's AWS account
AMI_NAME_PATTERN = "debian-12-amd64-*"

# ----------------------------------------------------------------------------- ecom-infra:shaBucket
SHA_BUCKET_NAME = "emami-ci-packages"
SHA_BUCKET_KEY = "sha_number.yml"
SHA_BUCKET_ADOPT = False
NONCURRENT_DAYS = 365
NONCURRENT_KEPT = 100


def sha_bucket_owner(environment: str) -> bool:
    """`shaBucket.owner`: production owns (creates, protects) the bucket; the others only read it."""
    return environment == "production"


# ----------------------------------------------------------------------------- haproxy, datadog, events
HAPROXY_INSTANCE_TYPE = "t3.micro"
VRRP_ROUTER_ID = 51
CHECK_INTERVAL = 1                  # seconds between keepalived's checks of haproxy
DATADOG_ENABLED = True
DATADOG_CONF_DIR = "/etc/datadog-agent/conf.d"
DATADOG_API_URL = "https://api.datadoghq.com"   # events go to <api_url>/api/v1/events
EVENT_TIMEOUT = 5                   # seconds per deploy-event delivery; a failed delivery only warns

# ----------------------------------------------------------------------------- release tools (not config)
# Compare-and-swap retries on the sha file: a handful of concurrent CI jobs settle within a few
# rounds; full jitter (a random sleep up to an exponentially growing cap) keeps them from colliding
# again in lock step.
CAS_ATTEMPTS = 25
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0
LIVE_KEEP = 100                     # live records kept per env/app: enough history, a bounded file
GIT_TIMEOUT_S = 60                  # `git ls-remote`/`fetch` from the release CLI
S3_MAX_ATTEMPTS = 3                 # botocore's own retries of one S3 call (throttling, 5xx)
S3_CONNECT_TIMEOUT_S = 5
S3_READ_TIMEOUT_S = 30

# ----------------------------------------------------------------------------- app server host (renderer)
PUMA_THREADS_MIN = 1
LOCK_TIMEOUT = 900                  # seconds a deploy waits for another deploy of the same app on a host
HTTP_PORT = 80                      # nginx on the app servers (HAProxy's backends)
GIT_PORT = 22

# ----------------------------------------------------------------------------- the README's table
# Each README config key with its default as the README shows it: a value (rendered as YAML flow:
# `true`, `5`, `[a, b]`, `{}`), or one of these words when there is none to show.
REQUIRED = "required"
NO_DEFAULT = "–"


def _text(value: Any) -> str:
    """A default as the README writes it (YAML flow style, unquoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) + "}"
    return str(value)


# Keys as the README spells them (without `ecom-infra:`). Defaults computed from another value
# carry the README's own words for them.
README_TABLE: dict[str, str] = {
    "aws:region": REQUIRED,
    "environment": "the stack name",
    "apps[]": REQUIRED,
    "apps[].name": REQUIRED,
    "apps[].repo": REQUIRED,
    "apps[].branch": _text(APP_BRANCH),
    "apps[].servers": _text(APP_SERVERS),
    "apps[].instanceType": _text(APP_INSTANCE_TYPE),
    "apps[].hostnames": REQUIRED,
    "apps[].healthCheckPath": _text(APP_HEALTH_CHECK_PATH),
    "apps[].healthCheckTimeout": _text(APP_HEALTH_CHECK_TIMEOUT),
    "apps[].pumaWorkers": _text(APP_PUMA_WORKERS),
    "apps[].pumaThreads": _text(APP_PUMA_THREADS),
    "apps[].drainRestarts": _text(APP_DRAIN_RESTARTS),
    "apps[].keepStandby": _text(APP_KEEP_STANDBY),
    "apps[].restartBatch": "servers - 1 (1 with one server)",
    "apps[].linkedDirs": _text(APP_LINKED_DIRS),
    "apps[].env": _text({}),
    "apps[].linkedFiles": _text(APP_LINKED_FILES),
    "apps[].hooks": _text({}),
    "apps[].hooks.<point>[].run": REQUIRED,
    "apps[].hooks.<point>[].once": _text(HOOK_ONCE),
    "apps[].hooks.<point>[].timeout": _text(HOOK_TIMEOUT),
    "apps[].hooks.<point>[].ifChanged": "– (always runs)",
    "deploy.user": _text(DEPLOY_USER),
    "deploy.group": "same as user",
    "deploy.root": _text(DEPLOY_ROOT),
    "deploy.keepReleases": _text(KEEP_RELEASES),
    "deploy.railsEnv": _text(RAILS_ENV),
    "ruby.source": _text(RUBY_SOURCE),
    "ruby.bundleLocal": _text(RUBY_BUNDLE_LOCAL),
    "network.vpcId": REQUIRED,
    "network.subnets[]": REQUIRED,
    "ssh.user": _text(SSH_USER),
    "ssh.adminCidrs": REQUIRED,
    "ssh.publicKey": REQUIRED,
    "ami.id": NO_DEFAULT,
    "ami.owners": _text(AMI_OWNERS),
    "ami.namePattern": _text(AMI_NAME_PATTERN),
    "shaBucket.name": _text(SHA_BUCKET_NAME),
    "shaBucket.key": _text(SHA_BUCKET_KEY),
    "shaBucket.owner": "`true` in production only",
    "shaBucket.adopt": _text(SHA_BUCKET_ADOPT),
    "shaBucket.noncurrentDays": _text(NONCURRENT_DAYS),
    "shaBucket.noncurrentKept": _text(NONCURRENT_KEPT),
    "rollHosts": _text([]),
    "haproxy.instanceType": _text(HAPROXY_INSTANCE_TYPE),
    "haproxy.vrrpRouterId": _text(VRRP_ROUTER_ID),
    "haproxy.checkInterval": _text(CHECK_INTERVAL),
    "datadog.enabled": _text(DATADOG_ENABLED),
    "datadog.confDir": _text(DATADOG_CONF_DIR),
    "datadog.apiKey": NO_DEFAULT,
    "datadog.apiUrl": _text(DATADOG_API_URL),
    "deployEvents.webhookUrl": NO_DEFAULT,
    "deployEvents.timeout": _text(EVENT_TIMEOUT),
    "gitKnownHosts[]": REQUIRED,
    "awsEndpoint": NO_DEFAULT,
    "tags": _text({}),
    "deployKey": REQUIRED,
    "sshPrivateKey": REQUIRED,
    "tlsCertificate": NO_DEFAULT,
    "appSecrets": _text({}),
}
