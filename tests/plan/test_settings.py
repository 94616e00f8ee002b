"""Settings validation: every class of bad value is refused with one line naming the key."""
from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys

import pytest

from ecom_infra import plan as offline_plan
from ecom_infra import settings
from ecom_infra.errors import ConfigError

from ..conftest import ROOT

BASE = {
    "apps": [{"name": "ecom-platform", "repo": "git@github.com:emami/ecom-platform.git", "branch": "master",
              "servers": 2, "hostnames": ["shop.example.com"], "healthCheckPath": "/health"},
             {"name": "ecom-docs", "repo": "ssh://git@git.example.com:2222/emami/ecom-docs.git",
              "hostnames": ["docs.example.com"]}],
    "network": {"vpcId": "vpc-0a1b2c3d", "subnets": [{"id": "subnet-0a1b2c3d", "az": "us-east-1a",
                                                       "cidr": "10.0.1.0/24"}]},
    "ssh": {"adminCidrs": ["203.0.113.0/24"], "publicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops"},
    "gitKnownHosts": ["github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                      "[git.example.com]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"],
}


def parse(raw: dict, stack: str = "staging"):
    return settings.parse(raw, project="ecom-infra", stack=stack, region="us-east-1")


def with_(path: str, value) -> dict:
    """BASE with one value replaced; path like 'apps.0.branch' (None deletes the key)."""
    raw = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = raw
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if value is None:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return raw


def test_valid_settings_are_typed_and_defaulted():
    s = parse(BASE)
    assert s.environment == "staging"
    assert [a.name for a in s.apps] == ["ecom-platform", "ecom-docs"]
    docs = s.app("ecom-docs")
    assert (docs.repo.host, docs.repo.port, docs.repo.path) == ("git.example.com", 2222, "emami/ecom-docs.git")
    assert docs.servers == 2 and docs.branch == "master" and docs.health_check_path == "/health"
    assert s.deploy.user == "deploy" and s.deploy.root == "/srv/www" and s.deploy.keep_releases == 5
    assert s.sha_bucket.name == "emami-ci-packages" and s.sha_bucket.key == "sha_number.yml"
    assert s.sha_bucket.owner is False                        # staging only reads the bucket
    assert parse(BASE, stack="production").sha_bucket.owner is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.deploy.user = "root"                                # frozen


BAD_VALUES = [
    # (path, value, key named in the error)
    ("apps.0.branch", "master; rm -rf /", "ecom-infra:apps[ecom-platform].branch"),
    ("apps.0.branch", "release/../../x", "ecom-infra:apps[ecom-platform].branch"),
    ("apps.0.branch", "master\n", "ecom-infra:apps[ecom-platform].branch"),
    ("apps.0.name", "$(id)", "ecom-infra:apps[0].name"),
    ("deploy.user", "$(id)", "ecom-infra:deploy.user"),
    ("deploy.user", "root", "ecom-infra:deploy.user"),
    ("deploy.root", "../../etc", "ecom-infra:deploy.root"),
    ("deploy.root", "/srv/../etc", "ecom-infra:deploy.root"),
    ("apps.0.hostnames", ["shop.example.com\nevil.example.com"], "ecom-infra:apps[ecom-platform].hostnames[0]"),
    ("apps.0.healthCheckPath", "/health\n", "ecom-infra:apps[ecom-platform].healthCheckPath"),
    ("apps.0.repo", "https://github.com/emami/x.git", "ecom-infra:apps[ecom-platform].repo"),
    ("apps.0.repo", "git@github.com:emami/`id`.git", "ecom-infra:apps[ecom-platform].repo"),
    ("apps.0.servers", 0, "ecom-infra:apps[ecom-platform].servers"),
    ("apps.0.servers", "two", "ecom-infra:apps[ecom-platform].servers"),
    ("deploy.keepReleases", 1, "ecom-infra:deploy.keepReleases"),
    ("ssh.adminCidrs", ["10.0.0.0/33"], "ecom-infra:ssh.adminCidrs[0]"),
    ("ssh.adminCidrs", ["10.0.0.1/24"], "ecom-infra:ssh.adminCidrs[0]"),
    ("ssh.adminCidrs", ["0.0.0.0/0"], "ecom-infra:ssh.adminCidrs[0]"),
    ("ssh.adminCidrs", [], "ecom-infra:ssh.adminCidrs"),
    ("environment", "prod", "ecom-infra:environment"),
    ("apps", [], "ecom-infra:apps"),
    ("apps", None, "ecom-infra:apps"),
    ("network.subnets.0.id", "subnet-xyz", "ecom-infra:network.subnets[0].id"),
    ("network.subnets.0.cidr", "10.0.1.0/30", "ecom-infra:network.subnets[0].cidr"),
    ("shaBucket", {"name": "Bad_Bucket"}, "ecom-infra:shaBucket.name"),
    ("shaBucket", {"key": "../sha.yml"}, "ecom-infra:shaBucket.key"),
    ("gitKnownHosts", ["github.com ssh-ed25519 AAAA"], "ecom-infra:gitKnownHosts[0]"),
    ("deploy.colour", "blue", "ecom-infra:deploy.colour"),
    ("apps.1.hostnames", ["shop.example.com"], "ecom-infra:apps"),
    ("apps.0.linkedDirs", ["/var/log"], "ecom-infra:apps[ecom-platform].linkedDirs[0]"),
    ("apps.0.linkedDirs", ["log", "../shared"], "ecom-infra:apps[ecom-platform].linkedDirs[1]"),
    ("apps.0.linkedDirs", ["log", "log/old"], "ecom-infra:apps[ecom-platform].linkedDirs[1]"),
    ("apps.0.linkedDirs", ["public"], "ecom-infra:apps[ecom-platform].linkedDirs[0]"),     # holds public/assets
    ("apps.0.linkedDirs", "log", "ecom-infra:apps[ecom-platform].linkedDirs"),
    ("apps.0.linkedFiles", ["config/master.key\n"], "ecom-infra:apps[ecom-platform].linkedFiles[0]"),
    ("apps.0.linkedFiles", ["./config/master.key"], "ecom-infra:apps[ecom-platform].linkedFiles[0]"),
    ("apps.0.linkedFiles", ["log/x.log"], "ecom-infra:apps[ecom-platform].linkedFiles[0]"),   # inside linkedDirs
    ("apps.0.restartBatch", 0, "ecom-infra:apps[ecom-platform].restartBatch"),
    ("apps.0.restartBatch", 2, "ecom-infra:apps[ecom-platform].restartBatch"),     # 2 servers: the whole app
    ("apps.0.restartBatch", "all", "ecom-infra:apps[ecom-platform].restartBatch"),
    ("apps.0.drainRestarts", "no", "ecom-infra:apps[ecom-platform].drainRestarts"),
    ("apps.0.keepStandby", "yes", "ecom-infra:apps[ecom-platform].keepStandby"),
]


@pytest.mark.parametrize("path,value,key", BAD_VALUES, ids=[f"{p}={v!r}" for p, v, _ in BAD_VALUES])
def test_bad_value_names_the_key_in_one_line(path, value, key):
    with pytest.raises(ConfigError) as info:
        parse(with_(path, value))
    message = str(info.value)
    assert message.startswith(f"{key}:"), message
    assert "\n" not in message


def test_error_shows_a_valid_example():
    with pytest.raises(ConfigError) as info:
        parse(with_("apps.0.branch", "master; rm -rf /"))
    assert "example: master" in str(info.value)


def test_missing_region_and_bad_region():
    with pytest.raises(ConfigError, match=r"^aws:region: is required"):
        settings.parse(BASE, project="ecom-infra", stack="staging", region=None)
    with pytest.raises(ConfigError, match=r"^aws:region: must be an AWS region"):
        settings.parse(BASE, project="ecom-infra", stack="staging", region="us-east-1; id")


def test_unknown_stack_is_an_error():
    with pytest.raises(ConfigError, match="unknown stack 'qa'"):
        offline_plan.run("qa")


@pytest.mark.parametrize("override,key", [
    ({"ecom-infra:deploy": json.dumps({"keepReleases": 1})}, "ecom-infra:deploy.keepReleases"),
    ({"ecom-infra:environment": "prod"}, "ecom-infra:environment"),
    ({"ecom-infra:apps": "[{not json"}, "ecom-infra:apps"),
])
def test_program_fails_before_any_resource(override, key):
    """Through the whole program: the error comes before a single resource is declared."""
    from pulumi.runtime import mocks as pulumi_mocks

    from ecom_infra.mocks import PlanMocks

    class CountingMocks(PlanMocks):
        created: list = []

        def new_resource(self, args: pulumi_mocks.MockResourceArgs):
            CountingMocks.created.append(args.name)
            return super().new_resource(args)

    with pytest.raises(ConfigError) as info:
        offline_plan.run("staging", config_overrides=override, mocks=CountingMocks(stack="staging"))
    assert str(info.value).startswith(key)
    assert CountingMocks.created == []


def test_cli_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "sha_number.yml"
    bad.write_text("staging:\n  ecom-platform: " + "a" * 39 + "\n")
    proc = subprocess.run([sys.executable, "-m", "ecom_infra.cli", "plan", "--stack", "staging",
                           "--sha-file", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("ecom-deploy: error: s3://emami-ci-packages/sha_number.yml:")
    assert "39 characters" in lines[0]
    assert proc.stdout == ""


def test_linked_paths_default_to_what_releases_always_linked():
    app = parse(BASE).apps[0]
    assert app.linked_dirs == ("log", "tmp/pids", "tmp/sockets", "tmp/cache") and app.linked_files == ()
    raw = json.loads(json.dumps(BASE))
    raw["apps"][0].update(linkedDirs=["log", "storage"], linkedFiles=["config/master.key"])
    app = parse(raw).apps[0]
    assert app.linked_dirs == ("log", "storage") and app.linked_files == ("config/master.key",)


@pytest.mark.parametrize("servers, given, batch", [(1, None, 1), (2, None, 1), (5, None, 4), (5, 2, 2), (1, 1, 1)])
def test_restart_batch_defaults_to_all_but_one_and_never_the_whole_app(servers, given, batch):
    raw = with_("apps.0.servers", servers)
    if given is not None:
        raw["apps"][0]["restartBatch"] = given
    assert parse(raw).apps[0].restart_batch == batch


def test_a_batch_of_the_whole_app_is_refused_with_the_reason():
    raw = with_("apps.0.servers", 3)
    raw["apps"][0]["restartBatch"] = 3
    with pytest.raises(ConfigError, match=r"restartBatch: must be at most 2: the app has 3 servers and one keeps"):
        parse(raw)
