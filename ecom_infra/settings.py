"""Stack settings: the only reader of Pulumi config.

`load()` reads `Pulumi.<stack>.yaml` through `pulumi.Config`, and `parse()` turns the raw
values into frozen dataclasses, validating every value that can reach a shell, a path or
a config file against a strict pattern. Any problem raises `ConfigError` with one line
that names the key, says what is wrong and shows a valid example, before any resource
is declared.

Config keys (all under the `ecom-infra:` namespace unless noted) are documented in the
README's "Config reference"; the dataclasses in `ecom_infra.settings_types` (re-exported
here) mirror them. Patterns, ranges and checks come from `ecom_infra.rules`, defaults from
`ecom_infra.defaults`.

Why this module is longer than ~400 lines: it holds one parser per config section (apps,
hooks, env, deploy, ruby, network, ssh, ami, shaBucket, haproxy, datadog, deployEvents,
gitKnownHosts, rollHosts), each short and independent, next to the entry points that call
them; read it section by section.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from . import defaults as D
from . import rules
from .errors import ConfigError  # noqa: F401 - callers catch it from here too
from .host_names import HAPROXY_NODES, server_ids
from .rules import (
    ADMIN_MIN_PREFIX,
    AMI_ID,
    AMI_NAME,
    AMI_OWNER,
    APP_NAME,
    AZ,
    BUCKET,
    ENV_NAME,
    GIT_SCP,
    GIT_SSH,
    HOOK_POINTS,
    HOSTNAME,
    HTTP_URL,
    INSTANCE_TYPE,
    KNOWN_HOST,
    LINK_PATH,
    REGION,
    RESERVED_ENV_NAMES,
    RESERVED_LINK_PATHS,
    S3_KEY,
    SSH_PUBKEY,
    SUBNET_ID,
    SYSTEM_ACCOUNTS,
    SYSTEM_DIRS,
    SYSTEM_TREES,
    TAG_KEY,
    TAG_VALUE,
    UNIX_NAME,
    URL_PATH,
    VPC_ID,
    check_bool,
    check_branch,
    check_cidr,
    check_count,
    check_http_url,
    check_list,
    check_mapping,
    check_path,
    check_unknown_keys,
    fail,
    key_name,
    match,
    redact_url,
    show,
)
from .settings_types import (  # noqa: F401
    Ami,
    App,
    Datadog,
    Deploy,
    DeployEvents,
    GitRemote,
    Haproxy,
    Hook,
    Network,
    Ruby,
    Secrets,
    Settings,
    ShaBucket,
    Ssh,
    Subnet,
)

ENVIRONMENTS = ("staging", "production", "local")

EXAMPLE_APP = ("{name: ecom-platform, repo: 'git@github.com:emami/ecom-platform.git', branch: master, servers: 2, "
               "hostnames: [shop.example.com]}")


# ----------------------------------------------------------------------------- helpers


def _deploy_root(value: Any, key: str) -> str:
    example = "/srv/www"
    path = check_path(value, key, example)
    if path in SYSTEM_DIRS or any(d.startswith(path + "/") for d in SYSTEM_DIRS):
        fail(key, f"must be a dedicated folder, not the system folder {path}", example)
    for tree in SYSTEM_TREES:
        if path.startswith(tree + "/"):
            fail(key, f"must not be inside the system folder {tree}, got {show(path)}", example)
    return path


def _account(value: Any, key: str, what: str, example: str) -> str:
    name = match(value, UNIX_NAME, key, f"a unix {what} name", example)
    if name in SYSTEM_ACCOUNTS:
        fail(key, f"must not be the system {what} {name!r}: the app runs unprivileged, in its own {what}",
             example)
    return name


def _ssh_key(value: Any, pattern: re.Pattern[str], key: str, what: str, example: str) -> str:
    """A key line whose base64 blob really is a key of the declared type (not `AAAA`)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - only when validating
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    line = match(value, pattern, key, what, example)
    keytype, blob = line.split(" ")[-2:] if pattern is KNOWN_HOST else line.split(" ")[:2]
    try:
        loaded = serialization.load_ssh_public_key(f"{keytype} {blob}".encode())
    except (ValueError, TypeError):   # bad base64, truncated, or the blob holds another key type
        loaded = None
    if loaded is None or (isinstance(loaded, rsa.RSAPublicKey) and loaded.key_size < 2048):
        fail(key, f"has no valid {keytype} key (truncated, corrupt or too weak)", example)
    return line


def parse_git_remote(value: Any, key: str) -> GitRemote:
    example = "git@github.com:emami/ecom-platform.git"
    if not isinstance(value, str):
        fail(key, f"must be a git SSH URL, got {type(value).__name__}", example)
    m = GIT_SCP.fullmatch(value) or GIT_SSH.fullmatch(value)
    if not m:
        fail(key, f"must be a git SSH URL (user@host:path or ssh://user@host[:port]/path), "
                  f"got {show(redact_url(value))}", example)
    if ".." in m.group("path").split("/") or not HOSTNAME.fullmatch(m.group("host")):
        fail(key, f"has a bad host or path: {show(redact_url(value))}", example)
    port = int(m.groupdict().get("port") or D.GIT_PORT)
    if not rules.PORT[0] <= port <= rules.PORT[1]:
        fail(key, f"port must be 1-65535, got {port}", example)
    return GitRemote(url=value, user=m.group("user"), host=m.group("host"), port=port, path=m.group("path"))


# ----------------------------------------------------------------------------- sections


def _parse_app(raw: Any, index: int) -> App:
    key = f"ecom-infra:apps[{index}]"
    obj = check_mapping(raw, key, EXAMPLE_APP)
    check_unknown_keys(obj, {"name", "repo", "branch", "servers", "instanceType", "hostnames", "healthCheckPath",
                             "healthCheckTimeout", "pumaWorkers", "pumaThreads", "restartBatch", "drainRestarts",
                             "keepStandby", "linkedDirs", "linkedFiles", "env", "hooks"}, key)
    if "name" not in obj:
        fail(f"{key}.name", "is required", "ecom-platform")
    name = match(obj["name"], APP_NAME, f"{key}.name",
                 "a lowercase app name (letters, digits, '-', 2-40 characters)", "ecom-platform")
    key = f"ecom-infra:apps[{name}]"
    if "repo" not in obj:
        fail(f"{key}.repo", "is required", "git@github.com:emami/ecom-platform.git")
    hostnames = check_list(obj.get("hostnames"), f"{key}.hostnames", "[shop.example.com]", min_items=1)
    servers = check_count(obj.get("servers", D.APP_SERVERS), f"{key}.servers", *rules.SERVERS, str(D.APP_SERVERS))
    return App(
        name=name,
        repo=parse_git_remote(obj["repo"], f"{key}.repo"),
        branch=check_branch(obj.get("branch", D.APP_BRANCH), f"{key}.branch"),
        servers=servers,
        restart_batch=_restart_batch(obj.get("restartBatch", D.restart_batch(servers)), f"{key}.restartBatch",
                                     servers),
        drain_restarts=check_bool(obj.get("drainRestarts", D.APP_DRAIN_RESTARTS), f"{key}.drainRestarts"),
        keep_standby=check_bool(obj.get("keepStandby", D.APP_KEEP_STANDBY), f"{key}.keepStandby"),
        instance_type=match(obj.get("instanceType", D.APP_INSTANCE_TYPE), INSTANCE_TYPE,
                            f"{key}.instanceType", "an EC2 instance type", D.APP_INSTANCE_TYPE),
        hostnames=tuple(match(h, HOSTNAME, f"{key}.hostnames[{i}]", "a lowercase DNS name",
                              "shop.example.com") for i, h in enumerate(hostnames)),
        health_check_path=match(obj.get("healthCheckPath", D.APP_HEALTH_CHECK_PATH), URL_PATH,
                                f"{key}.healthCheckPath", "a URL path starting with '/'", D.APP_HEALTH_CHECK_PATH),
        health_check_timeout=check_count(obj.get("healthCheckTimeout", D.APP_HEALTH_CHECK_TIMEOUT),
                                         f"{key}.healthCheckTimeout", *rules.HEALTH_CHECK_TIMEOUT,
                                         str(D.APP_HEALTH_CHECK_TIMEOUT)),
        puma_workers=check_count(obj.get("pumaWorkers", D.APP_PUMA_WORKERS), f"{key}.pumaWorkers",
                                 *rules.PUMA_WORKERS, str(D.APP_PUMA_WORKERS)),
        puma_threads=check_count(obj.get("pumaThreads", D.APP_PUMA_THREADS), f"{key}.pumaThreads",
                                 *rules.PUMA_THREADS, str(D.APP_PUMA_THREADS)),
        **_linked_paths(obj, key),
        env=env_pairs(obj.get("env"), f"{key}.env", secret=False),
        hooks=_hooks(obj.get("hooks"), f"{key}.hooks"),
    )


def _restart_batch(raw: Any, key: str, servers: int) -> int:
    """How many of an app's servers restart at once: 1 up to all but one (all, when the app has one server)."""
    most = D.restart_batch(servers)   # never the whole app at once, unless it has one server
    value = check_count(raw, key, *rules.RESTART_BATCH, str(most))
    if value > most:
        fail(key, f"must be at most {most}: the app has {servers} server{'s' if servers > 1 else ''} and "
             "one keeps serving while the others restart", str(most))
    return value


def _hooks(raw: Any, key: str) -> tuple[Hook, ...]:
    """`hooks: {afterBuild: [cmd | {run, once, timeout, ifChanged}], afterPublish: [...], onFailure: [...]}`."""
    example = "{afterBuild: [{run: 'bin/rails db:migrate', once: true}]}"
    obj = check_mapping(raw, key, example)
    check_unknown_keys(obj, set(HOOK_POINTS), key)
    hooks = []
    for point in HOOK_POINTS:
        for i, item in enumerate(check_list(obj.get(point), f"{key}.{point}", example)):
            item_key = f"{key}.{point}[{i}]"
            if isinstance(item, str):
                item = {"run": item}
            item = check_mapping(item, item_key, "{run: 'bin/rails db:migrate', once: true, timeout: 600}")
            check_unknown_keys(item, {"run", "once", "timeout", "ifChanged"}, item_key)
            run = item.get("run")
            if not isinstance(run, str) or not run.strip():
                fail(f"{item_key}.run", f"must be a non-empty command, got {show(run)}", "bin/rails db:migrate")
            if set(run) & {"\n", "\r", "\0"} or len(run) > rules.HOOK_COMMAND_MAX:
                fail(f"{item_key}.run", f"must be one line of at most {rules.HOOK_COMMAND_MAX} characters, "
                                        f"got {show(run)}", "bin/rails db:migrate")
            hooks.append(Hook(point=point, run=run, once=check_bool(item.get("once", D.HOOK_ONCE), f"{item_key}.once"),
                              timeout=check_count(item.get("timeout", D.HOOK_TIMEOUT), f"{item_key}.timeout",
                                                  *rules.HOOK_TIMEOUT, str(D.HOOK_TIMEOUT)),
                              if_changed=_if_changed(item, point, f"{item_key}.ifChanged")))

    return tuple(hooks)


def _if_changed(item: dict[str, Any], point: str, key: str) -> tuple[str, ...]:
    """`ifChanged: [db/migrate, db/schema.rb]`: paths in the app's repository (files or folders); the hook
    runs only when one differs from the live release's. Absent: the hook always runs."""
    example = "[db/migrate, db/schema.rb]"
    if "ifChanged" not in item:
        return D.HOOK_IF_CHANGED
    if point not in rules.HOOK_IF_CHANGED_POINTS:
        fail(key, f"is not allowed at {point}: onFailure hooks run after a failure, whatever changed "
                  f"(only at {', '.join(rules.HOOK_IF_CHANGED_POINTS)})")
    paths = check_list(item["ifChanged"], key, example, min_items=1)
    if len(paths) > rules.HOOK_IF_CHANGED_MAX:
        fail(key, f"must list at most {rules.HOOK_IF_CHANGED_MAX} paths, got {len(paths)}", example)
    for i, path in enumerate(paths):
        if not rules.is_repo_path(path):
            fail(f"{key}[{i}]", "must be a relative path in the app's repository (letters, digits, '.', '_', '-'; "
                                f"no '.' or '..' parts, no leading or trailing '/'), got {show(path)}", "db/migrate")
    return tuple(paths)


def env_pairs(raw: Any, key: str, *, secret: bool) -> tuple[tuple[str, str], ...]:
    """An app's variables `{NAME: value}` as sorted pairs. A secret's value never appears in an error."""
    obj = check_mapping(raw, key, "{PAYMENT_API_URL: 'https://pay.example.com'}")
    pairs = []
    for name, value in obj.items():
        item_key = f"{key}.{key_name(str(name))}"
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            fail(item_key, "must be a variable name: capital letters, digits and '_', not starting with a digit",
                 "PAYMENT_API_URL")
        if name in RESERVED_ENV_NAMES:
            fail(item_key, f"is set by the platform itself (reserved: {', '.join(sorted(RESERVED_ENV_NAMES))})")
        if isinstance(value, int) and not isinstance(value, bool) and not secret:
            value = str(value)
        if not isinstance(value, str):
            fail(item_key, f"must be a string, got {type(value).__name__}", "'value'")
        if "\n" in value or "\r" in value or "\0" in value:
            fail(item_key, "must not contain a newline or NUL character" + ("" if secret else f", got {show(value)}"))
        if len(value) > rules.ENV_VALUE_MAX:
            fail(item_key, f"must be at most {rules.ENV_VALUE_MAX} characters, got {len(value)}")
        pairs.append((name, value))
    return tuple(sorted(pairs))


def parse_app_secrets(raw: Any, apps: tuple[App, ...]) -> dict[str, tuple[tuple[str, str], ...]]:
    """`ecom-infra:appSecrets`: `{app: {NAME: value}}`, one secret object for every app of the stack."""
    key = "ecom-infra:appSecrets"
    if not isinstance(raw, dict):
        fail(key, f"must be a JSON object {{app: {{NAME: value}}}}, got {type(raw).__name__}",
             "'{\"ecom-platform\": {\"SECRET_KEY_BASE\": \"...\"}}'")
    known = {a.name: a for a in apps}
    found: dict[str, tuple[tuple[str, str], ...]] = {}
    for app_name, variables in raw.items():
        if app_name not in known:
            fail(f"{key}.{key_name(str(app_name))}", f"is not an app of this stack (apps: {', '.join(known)})")
        pairs = env_pairs(variables, f"{key}.{app_name}", secret=True)
        plain = {name for name, _ in known[app_name].env}
        for name, _ in pairs:
            if name in plain:
                fail(f"{key}.{app_name}.{name}", f"is also set in plain text (apps[{app_name}].env.{name}): keep one")
        found[app_name] = pairs
    return {name: found.get(name, ()) for name in known}


def _linked_paths(obj: dict[str, Any], key: str) -> dict[str, tuple[str, ...]]:
    """linkedDirs and linkedFiles: relative paths inside a release, none inside another."""
    found: dict[str, tuple[str, ...]] = {}
    seen: list[tuple[str, str]] = []     # (path, its key) across both lists
    for name, field_name, default, example in (
            ("linkedDirs", "linked_dirs", D.APP_LINKED_DIRS, "[log, tmp/pids, tmp/sockets, tmp/cache, storage]"),
            ("linkedFiles", "linked_files", D.APP_LINKED_FILES, "[config/master.key]")):
        items = check_list(obj.get(name, list(default)), f"{key}.{name}", example)
        paths = []
        for i, item in enumerate(items):
            item_key = f"{key}.{name}[{i}]"
            path = match(item, LINK_PATH, item_key,
                         "a relative path inside the release (letters, digits, '.', '_', '-'; no '..', no leading "
                         "'/' or '.')", example.strip("[]").split(",")[0])
            for reserved in RESERVED_LINK_PATHS:
                if _nested(path, reserved):
                    fail(item_key, f"{path!r} overlaps {reserved!r}, which the release steps manage themselves")
            for other, other_key in seen:
                if _nested(path, other):
                    fail(item_key, f"{path!r} overlaps {other!r} ({other_key}): a link inside a linked folder "
                                   "would land in shared/")
            seen.append((path, item_key))
            paths.append(path)
        found[field_name] = tuple(paths)
    return found


def _nested(a: str, b: str) -> bool:
    """True when one path is the other or lies inside it."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _parse_apps(raw: Any) -> tuple[App, ...]:
    items = check_list(raw, "ecom-infra:apps", f"[{EXAMPLE_APP}]", min_items=1)
    apps = tuple(_parse_app(item, i) for i, item in enumerate(items))
    names = [a.name for a in apps]
    for name in names:
        if names.count(name) > 1:
            fail(f"ecom-infra:apps[{name}]", "is declared more than once")
    hosts = [h for a in apps for h in a.hostnames]
    for h in hosts:
        if hosts.count(h) > 1:
            fail("ecom-infra:apps", f"hostname {h!r} is used by more than one app")
    return apps


def _parse_deploy(raw: Any) -> Deploy:
    key = "ecom-infra:deploy"
    obj = check_mapping(raw, key, "{user: deploy, root: /srv/www, keepReleases: 5}")
    check_unknown_keys(obj, {"user", "group", "root", "keepReleases", "railsEnv"}, key)
    user = _account(obj.get("user", D.DEPLOY_USER), f"{key}.user", "user", D.DEPLOY_USER)
    return Deploy(
        user=user,
        group=_account(obj.get("group", user), f"{key}.group", "group", D.DEPLOY_USER),
        root=_deploy_root(obj.get("root", D.DEPLOY_ROOT), f"{key}.root"),
        keep_releases=check_count(obj.get("keepReleases", D.KEEP_RELEASES), f"{key}.keepReleases",
                                  *rules.KEEP_RELEASES, str(D.KEEP_RELEASES)),
        rails_env=match(obj.get("railsEnv", D.RAILS_ENV), UNIX_NAME, f"{key}.railsEnv", "a Rails environment",
                        D.RAILS_ENV),
    )


def _parse_ruby(raw: Any) -> Ruby:
    key = "ecom-infra:ruby"
    obj = check_mapping(raw, key, "{source: distro, bundleLocal: false}")
    check_unknown_keys(obj, {"source", "bundleLocal"}, key)
    source = obj.get("source", D.RUBY_SOURCE)
    if source != "distro":
        fail(f"{key}.source", f"must be 'distro' (Debian's ruby and bundler packages), got {show(source)}",
             "distro")
    return Ruby(source=source, bundle_local=check_bool(obj.get("bundleLocal", D.RUBY_BUNDLE_LOCAL),
                                                       f"{key}.bundleLocal"))


def _parse_network(raw: Any) -> Network:
    key = "ecom-infra:network"
    example = "{vpcId: vpc-0a1b2c3d, subnets: [{id: subnet-0a1b2c3d, az: us-east-1a, cidr: 10.0.1.0/24}]}"
    obj = check_mapping(raw, key, example)
    check_unknown_keys(obj, {"vpcId", "subnets"}, key)
    if "vpcId" not in obj:
        fail(f"{key}.vpcId", "is required", "vpc-0a1b2c3d")
    vpc_id = match(obj["vpcId"], VPC_ID, f"{key}.vpcId", "a VPC id", "vpc-0a1b2c3d")
    subnets: list[Subnet] = []
    for i, item in enumerate(check_list(obj.get("subnets"), f"{key}.subnets", example, min_items=1)):
        skey = f"{key}.subnets[{i}]"
        sub = check_mapping(item, skey, "{id: subnet-0a1b2c3d, az: us-east-1a, cidr: 10.0.1.0/24}")
        check_unknown_keys(sub, {"id", "az", "cidr"}, skey)
        # The cidr is informational on AWS (addresses come from AWS); the offline plan and
        # the local fleet use it to give instances addresses. Default: 10.0.<i+1>.0/24.
        cidr = ipaddress.ip_network(check_cidr(sub.get("cidr", D.subnet_cidr(i)), f"{skey}.cidr"))
        if cidr.version != 4 or cidr.prefixlen > 28:
            fail(f"{skey}.cidr", f"must be an IPv4 block of /28 or larger, got {cidr}", "10.0.1.0/24")
        for j, other in enumerate(subnets):   # overlapping blocks would give two hosts one address
            if cidr.overlaps(other.cidr):
                fail(f"{skey}.cidr", f"{cidr} overlaps {key}.subnets[{j}].cidr {other.cidr}", "10.0.2.0/24")
        subnets.append(Subnet(
            id=match(sub.get("id"), SUBNET_ID, f"{skey}.id", "a subnet id", "subnet-0a1b2c3d"),
            az=match(sub.get("az"), AZ, f"{skey}.az", "an availability zone", "us-east-1a"),
            cidr=cidr,
        ))
    ids = [s.id for s in subnets]
    if len(set(ids)) != len(ids):
        fail(f"{key}.subnets", "lists a subnet twice")
    return Network(vpc_id=vpc_id, subnets=tuple(subnets))


def _parse_ssh(raw: Any) -> Ssh:
    key = "ecom-infra:ssh"
    example = "{user: admin, adminCidrs: [203.0.113.0/24], publicKey: 'ssh-ed25519 AAAA... ops'}"
    obj = check_mapping(raw, key, example)
    check_unknown_keys(obj, {"user", "adminCidrs", "publicKey"}, key)
    cidrs = check_list(obj.get("adminCidrs"), f"{key}.adminCidrs", "[203.0.113.0/24]", min_items=1)
    parsed = tuple(check_cidr(c, f"{key}.adminCidrs[{i}]") for i, c in enumerate(cidrs))
    for i, c in enumerate(parsed):
        net = ipaddress.ip_network(c)
        if net.prefixlen < ADMIN_MIN_PREFIX[net.version]:
            fail(f"{key}.adminCidrs[{i}]", f"opens SSH to {'the whole internet' if net.prefixlen == 0 else 'too much'}"
                                           f" ({c}, wider than /{ADMIN_MIN_PREFIX[net.version]}); name your admin "
                                           "networks", "203.0.113.0/24")
    for version, low in ADMIN_MIN_PREFIX.items():
        # Judge the union: 0.0.0.0/1 + 128.0.0.0/1 is the whole internet too.
        blocks: list[Any] = [ipaddress.ip_network(c) for c in parsed  # one family: collapse_addresses wants that
                             if ipaddress.ip_network(c).version == version]
        covered = sum(b.num_addresses for b in ipaddress.collapse_addresses(blocks))
        if covered > 2 ** ((32 if version == 4 else 128) - low):
            fail(f"{key}.adminCidrs", f"opens SSH to too much of the internet (IPv{version} blocks together must "
                                      f"cover no more than a /{low}); name your admin networks", "203.0.113.0/24")
    if "publicKey" not in obj:
        fail(f"{key}.publicKey", "is required (the public half of the key remote commands log in with)",
             "ssh-ed25519 AAAAC3Nza... ops")
    return Ssh(
        user=match(obj.get("user", D.SSH_USER), UNIX_NAME, f"{key}.user", "a unix user name", D.SSH_USER),
        admin_cidrs=parsed,
        public_key=_ssh_key(obj["publicKey"], SSH_PUBKEY, f"{key}.publicKey", "an OpenSSH public key line",
                            "ssh-ed25519 AAAAC3Nza... ops"),
    )


def _parse_ami(raw: Any) -> Ami:
    key = "ecom-infra:ami"
    obj = check_mapping(raw, key, "{owners: ['136693071363'], namePattern: 'debian-12-amd64-*'}")
    check_unknown_keys(obj, {"id", "owners", "namePattern"}, key)
    ami_id = obj.get("id")
    if ami_id is not None:
        match(ami_id, AMI_ID, f"{key}.id", "an AMI id", "ami-0a1b2c3d4e5f60718")
    owners = check_list(obj.get("owners", list(D.AMI_OWNERS)), f"{key}.owners", "['136693071363']", min_items=1)
    return Ami(
        id=ami_id,
        owners=tuple(match(o, AMI_OWNER, f"{key}.owners[{i}]", "a 12-digit account id or 'amazon'",
                           "136693071363") for i, o in enumerate(owners)),
        name_pattern=match(obj.get("namePattern", D.AMI_NAME_PATTERN), AMI_NAME, f"{key}.namePattern",
                           "an AMI name pattern", D.AMI_NAME_PATTERN),
    )


def _parse_sha_bucket(raw: Any, environment: str) -> ShaBucket:
    key = "ecom-infra:shaBucket"
    obj = check_mapping(raw, key, "{name: emami-ci-packages, key: sha_number.yml, owner: false}")
    check_unknown_keys(obj, {"name", "key", "owner", "adopt", "noncurrentDays", "noncurrentKept"}, key)
    s3_key = match(obj.get("key", D.SHA_BUCKET_KEY), S3_KEY, f"{key}.key", "an S3 object key", D.SHA_BUCKET_KEY)
    if ".." in s3_key:
        fail(f"{key}.key", f"must not contain '..', got {show(s3_key)}", D.SHA_BUCKET_KEY)
    owner = check_bool(obj.get("owner", D.sha_bucket_owner(environment)), f"{key}.owner")
    adopt = check_bool(obj.get("adopt", D.SHA_BUCKET_ADOPT), f"{key}.adopt")
    if adopt and not owner:
        fail(f"{key}.adopt", "is only for the stack that owns the bucket (shaBucket.owner: true)", "false")
    return ShaBucket(
        name=match(obj.get("name", D.SHA_BUCKET_NAME), BUCKET, f"{key}.name", "an S3 bucket name",
                   D.SHA_BUCKET_NAME),
        key=s3_key,
        owner=owner,
        adopt=adopt,
        noncurrent_days=check_count(obj.get("noncurrentDays", D.NONCURRENT_DAYS), f"{key}.noncurrentDays",
                                    *rules.NONCURRENT_DAYS, str(D.NONCURRENT_DAYS)),
        noncurrent_kept=check_count(obj.get("noncurrentKept", D.NONCURRENT_KEPT), f"{key}.noncurrentKept",
                                    *rules.NONCURRENT_KEPT, str(D.NONCURRENT_KEPT)),
    )


def _parse_haproxy(raw: Any) -> Haproxy:
    key = "ecom-infra:haproxy"
    obj = check_mapping(raw, key, "{instanceType: t3.micro}")
    check_unknown_keys(obj, {"instanceType", "vrrpRouterId", "checkInterval"}, key)
    return Haproxy(
        instance_type=match(obj.get("instanceType", D.HAPROXY_INSTANCE_TYPE), INSTANCE_TYPE, f"{key}.instanceType",
                            "an EC2 instance type", D.HAPROXY_INSTANCE_TYPE),
        vrrp_router_id=check_count(obj.get("vrrpRouterId", D.VRRP_ROUTER_ID), f"{key}.vrrpRouterId",
                                   *rules.VRRP_ROUTER_ID, str(D.VRRP_ROUTER_ID)),
        check_interval=check_count(obj.get("checkInterval", D.CHECK_INTERVAL), f"{key}.checkInterval",
                                   *rules.CHECK_INTERVAL, str(D.CHECK_INTERVAL)),
    )


DATADOG_API_KEY_HINT = "pulumi config set --secret --path ecom-infra:datadog.apiKey < file"


def _parse_datadog(raw: Any, *, stack_file: bool = False) -> Datadog:
    """`datadog`. Only whether `apiKey` is set leaves here, never its value. `stack_file`: `raw` is the
    stack file's own text (the CLI's view), where a secret reads `{secure: ...}` and a string is plain."""
    key = "ecom-infra:datadog"
    obj = check_mapping(raw, key, "{enabled: true, confDir: /etc/datadog-agent/conf.d}")
    check_unknown_keys(obj, {"enabled", "confDir", "apiUrl", "apiKey"}, key)
    api_key = obj.get("apiKey")
    if isinstance(api_key, dict) and set(api_key) == {"secure"}:
        api_key = "set"
    elif isinstance(api_key, str) and stack_file:
        fail(f"{key}.apiKey", f"is in plain text in the stack file: remove it and set it with `{DATADOG_API_KEY_HINT}`")
    if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
        fail(f"{key}.apiKey", f"must be a non-empty secret string; set it with `{DATADOG_API_KEY_HINT}`")
    return Datadog(
        enabled=check_bool(obj.get("enabled", D.DATADOG_ENABLED), f"{key}.enabled"),
        conf_dir=check_path(obj.get("confDir", D.DATADOG_CONF_DIR), f"{key}.confDir", D.DATADOG_CONF_DIR),
        api_url=_base_url(obj.get("apiUrl", D.DATADOG_API_URL), f"{key}.apiUrl", "https://api.datadoghq.eu"),
        api_key_set=api_key is not None,
    )


def _base_url(value: Any, key: str, example: str) -> str:
    url = match(value, HTTP_URL, key, "an http(s) URL without query, user or password", example)
    return url.rstrip("/")


def _parse_deploy_events(raw: Any) -> DeployEvents:
    key = "ecom-infra:deployEvents"
    obj = check_mapping(raw, key, "{webhookUrl: 'https://hooks.example.com/deploys'}")
    check_unknown_keys(obj, {"webhookUrl", "timeout"}, key)
    url = obj.get("webhookUrl")
    return DeployEvents(
        webhook_url=None if url is None else match(url, HTTP_URL, f"{key}.webhookUrl",
                                                   "an http(s) URL without query, user or password",
                                                   "https://hooks.example.com/deploys"),
        timeout=check_count(obj.get("timeout", D.EVENT_TIMEOUT), f"{key}.timeout", *rules.EVENT_TIMEOUT,
                            str(D.EVENT_TIMEOUT)),
    )


def event_settings(stack_config: dict[str, Any]) -> tuple[Datadog, DeployEvents]:
    """The deploy events' settings from a stack file's raw `config:` (for `ecom-deploy deploy-event`)."""
    return (_parse_datadog(stack_config.get("ecom-infra:datadog"), stack_file=True),
            _parse_deploy_events(stack_config.get("ecom-infra:deployEvents")))


def _parse_known_hosts(raw: Any, apps: tuple[App, ...]) -> tuple[str, ...]:
    key = "ecom-infra:gitKnownHosts"
    example = "['github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl']"
    lines = check_list(raw, key, example, min_items=1)
    parsed = tuple(_ssh_key(line, KNOWN_HOST, f"{key}[{i}]", "a known_hosts line 'host keytype base64'", example)
                   for i, line in enumerate(lines))
    pinned = {line.split(" ", 1)[0] for line in parsed}
    for app in apps:
        wanted = app.repo.host if app.repo.port == 22 else f"[{app.repo.host}]:{app.repo.port}"
        if wanted not in pinned:
            fail(key, f"has no host key for {wanted} (app {app.name}); git host keys are pinned, never trusted "
                      "on first use", example)
    return parsed


def _parse_roll_hosts(raw: Any, apps: tuple[App, ...]) -> tuple[str, ...]:
    key = "ecom-infra:rollHosts"
    known = [*HAPROXY_NODES] + [server.name for a in apps for server in server_ids(a.name, a.servers)]
    hosts = check_list(raw, key, "[haproxy-b]")
    for i, host in enumerate(hosts):
        if host not in known:
            fail(f"{key}[{i}]", f"must name a host of this stack ({', '.join(known[:4])}...), got {show(host)}",
                 "haproxy-b")
    if len(set(hosts)) != len(hosts):
        fail(key, "names a host twice", "[haproxy-b]")
    return tuple(hosts)


# ----------------------------------------------------------------------------- entry points


def parse(raw: dict[str, Any], *, project: str, stack: str, region: Any, has_tls_certificate: bool = False) -> Settings:
    """Validate raw config values (already JSON-decoded) into `Settings`.

    `raw` maps keys without the `ecom-infra:` prefix (e.g. "apps") to values.
    """
    _unknown_top_level(raw)
    environment = raw.get("environment", stack)
    if environment not in ENVIRONMENTS:
        fail("ecom-infra:environment", f"unknown environment {show(environment)} "
                                       f"(known: {', '.join(ENVIRONMENTS)})", "staging")
    if region is None:
        fail("aws:region", "is required", "us-east-1")
    region = match(region, REGION, "aws:region", "an AWS region", "us-east-1")
    endpoint = raw.get("awsEndpoint")
    if endpoint is not None:
        endpoint = check_http_url(endpoint, "ecom-infra:awsEndpoint")
    if "apps" not in raw:
        fail("ecom-infra:apps", "is required: the apps this environment runs", f"[{EXAMPLE_APP}]")
    apps = _parse_apps(raw["apps"])
    tags = check_mapping(raw.get("tags"), "ecom-infra:tags", "{CostCenter: shop}")
    for k, v in tags.items():
        match(k, TAG_KEY, f"ecom-infra:tags.{k}", "a tag key", "Team")
        match(v, TAG_VALUE, f"ecom-infra:tags.{k}", "a tag value", "shop")

    return Settings(
        project=project,
        stack=stack,
        environment=environment,
        region=region,
        aws_endpoint=endpoint,
        apps=apps,
        deploy=_parse_deploy(raw.get("deploy")),
        ruby=_parse_ruby(raw.get("ruby")),
        network=_parse_network(raw.get("network")),
        ssh=_parse_ssh(raw.get("ssh")),
        ami=_parse_ami(raw.get("ami")),
        sha_bucket=_parse_sha_bucket(raw.get("shaBucket"), environment),
        haproxy=_parse_haproxy(raw.get("haproxy")),
        datadog=_parse_datadog(raw.get("datadog")),
        deploy_events=_parse_deploy_events(raw.get("deployEvents")),
        git_known_hosts=_parse_known_hosts(raw.get("gitKnownHosts"), apps),
        has_tls_certificate=has_tls_certificate,
        tags=dict(sorted(tags.items())),
        roll_hosts=_parse_roll_hosts(raw.get("rollHosts"), apps),
    )


STRUCTURED_KEYS = ("apps", "deploy", "ruby", "network", "ssh", "ami", "shaBucket", "haproxy", "datadog",
                   "deployEvents", "gitKnownHosts", "tags", "rollHosts")
PLAIN_KEYS = ("environment", "awsEndpoint")
SECRET_KEYS = ("deployKey", "sshPrivateKey", "tlsCertificate", "appSecrets")
KNOWN_KEYS = frozenset(STRUCTURED_KEYS + PLAIN_KEYS + SECRET_KEYS)


def _unknown_top_level(names: Any) -> None:
    """A typo (`shaBuckets`) would otherwise be ignored and the defaults silently apply."""
    import difflib  # noqa: PLC0415

    for name in sorted(names):
        if name not in KNOWN_KEYS:
            close = difflib.get_close_matches(name, KNOWN_KEYS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            fail(f"ecom-infra:{key_name(name)}",
                 f"is not a known setting ({hint}known: {', '.join(sorted(KNOWN_KEYS))})")


def _config_keys() -> set[str]:
    """Every config key the engine (or the offline plan) passed to this run."""
    from pulumi.runtime import config as runtime_config  # noqa: PLC0415

    return set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())


def load() -> tuple[Settings, Secrets]:
    """Read this stack's config through `pulumi.Config` and validate it."""
    import pulumi

    config = pulumi.Config("ecom-infra")
    prefix = "ecom-infra:"
    _unknown_top_level({k[len(prefix):] for k in _config_keys() if k.startswith(prefix)})
    for name in SECRET_KEYS:
        if config.get(name) is not None and not pulumi.runtime.is_config_secret(prefix + name):
            fail(prefix + name, f"is in plain text in the stack file: remove it and set it with "
                                f"`pulumi config set --secret {prefix}{name} < file`")
    raw: dict[str, Any] = {}
    for name in STRUCTURED_KEYS:
        try:
            value = config.get_object(name)
        except (ValueError, pulumi.ConfigTypeError):   # JSONDecodeError, or a number too long to convert
            value = config.get(name)   # a plain string: the section's parser says what it should be
        if value is not None:
            raw[name] = value
    # A secret set with --path makes the whole section secret; a section that is not holds it in plain text.
    # (`{secure: ...}` is what the offline plan sees of an encrypted value: not plain text.)
    if isinstance(raw.get("datadog"), dict) and isinstance(raw["datadog"].get("apiKey"), str) \
            and not pulumi.runtime.is_config_secret(prefix + "datadog"):
        fail(prefix + "datadog.apiKey", f"is in plain text in the stack file: remove it and set it with "
                                        f"`{DATADOG_API_KEY_HINT}`")
    for name in PLAIN_KEYS:
        value = config.get(name)
        if value is not None:
            raw[name] = value
    _require_secret_key(config, "deployKey", "the git deploy key (OpenSSH private key)")
    _require_secret_key(config, "sshPrivateKey", "the private key remote commands log in with")
    tls = config.get_secret("tlsCertificate")
    settings = parse(raw, project=pulumi.get_project(), stack=pulumi.get_stack(),
                     region=pulumi.Config("aws").get("region"), has_tls_certificate=tls is not None)
    # Read raw (the value is known at run time) so bad names fail before anything is declared; only
    # the validated result leaves this function, and only as a secret.
    secrets_text = pulumi.runtime.get_config(prefix + "appSecrets")
    app_secrets = parse_app_secrets(_json_object(secrets_text, prefix + "appSecrets") if secrets_text else {},
                                    settings.apps)
    secrets = Secrets(
        deploy_key=config.require_secret("deployKey"),
        ssh_private_key=config.require_secret("sshPrivateKey"),
        tls_certificate=tls,
        app_secrets=pulumi.Output.secret(app_secrets),
    )
    return settings, secrets


def _json_object(text: str, key: str) -> Any:
    import json  # noqa: PLC0415

    try:
        return json.loads(text)
    except ValueError:
        # The text is secret: say what is wrong, never what it is.
        fail(key, "is not valid JSON", "pulumi config set --secret ecom-infra:appSecrets "
                                       "'{\"ecom-platform\": {\"SECRET_KEY_BASE\": \"...\"}}'")
    return None


def _require_secret_key(config: Any, name: str, what: str) -> None:
    if config.get_secret(name) is None:
        fail(f"ecom-infra:{name}", f"is required: {what}; set it with "
                                   f"`pulumi config set --secret ecom-infra:{name} < file`")

