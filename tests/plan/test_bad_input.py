"""Issue 12: what a hostile or careless stack file finds, refused in one line naming the key."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ecom_infra import plan as offline_plan
from ecom_infra.errors import ConfigError

from ..conftest import ROOT
from .test_settings import parse, with_

GITHUB_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def refused(path: str, value, key: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(with_(path, value))
    message = str(info.value)
    assert message.startswith(f"{key}:"), message
    assert "\n" not in message
    return message


# -- 5. deploy.root: never a system folder or a parent of one ------------------------------------------
@pytest.mark.parametrize("root", ["/tmp", "/var/tmp", "/dev/shm", "/proc", "/root", "/home", "/etc", "/var",
                                  "/usr", "/srv", "/opt", "/dev", "/tmp/www", "/home/deploy", "/etc/ecom",
                                  "/proc/1/root", "/run/ecom", "/usr/local/www"])
def test_deploy_root_refuses_system_folders_and_their_parents(root):
    refused("deploy.root", root, "ecom-infra:deploy.root")


@pytest.mark.parametrize("root", ["/srv/www", "/opt/ecom", "/var/www/apps", "/var/lib/ecom", "/data/apps"])
def test_deploy_root_accepts_a_dedicated_folder(root):
    assert parse(with_("deploy.root", root)).deploy.root == root


# -- 6. deploy.group / deploy.user: no privileged or system accounts ----------------------------------
@pytest.mark.parametrize("group", ["root", "sudo", "adm", "shadow", "disk", "docker", "www-data", "staff",
                                   "systemd-journal", "wheel"])
def test_deploy_group_refuses_privileged_groups(group):
    assert "must not be the system group" in refused("deploy", {"user": "deploy", "group": group},
                                                     "ecom-infra:deploy.group")


@pytest.mark.parametrize("user", ["root", "www-data", "daemon", "nobody"])
def test_deploy_user_refuses_system_users(user):
    refused("deploy", {"user": user}, "ecom-infra:deploy.user")


# -- 7. ssh.adminCidrs: judge the union; IPv6 goes to the IPv6 field ---------------------------------
@pytest.mark.parametrize("cidrs,key", [
    (["0.0.0.0/1", "128.0.0.0/1"], "ecom-infra:ssh.adminCidrs[0]"),
    (["::/1", "8000::/1"], "ecom-infra:ssh.adminCidrs[0]"),
    (["10.0.0.0/7"], "ecom-infra:ssh.adminCidrs[0]"),
    ([f"{n}.0.0.0/8" for n in range(1, 3)], "ecom-infra:ssh.adminCidrs"),      # two /8s: more than a /8
    ([f"2001:{n:x}::/32" for n in range(2)], "ecom-infra:ssh.adminCidrs"),
])
def test_admin_cidrs_union_is_bounded(cidrs, key):
    refused("ssh.adminCidrs", cidrs, key)


def test_admin_cidrs_accept_a_slash_8_and_split_ipv6(plans):
    s = parse(with_("ssh.adminCidrs", ["10.0.0.0/8", "2001:db8::/48"]))
    assert s.ssh.admin_cidrs_v4 == ("10.0.0.0/8",) and s.ssh.admin_cidrs_v6 == ("2001:db8::/48",)
    result = offline_plan.run("staging", config_overrides={
        "ecom-infra:ssh": json.dumps({"user": "admin", "adminCidrs": ["203.0.113.0/24", "2001:db8::/48"],
                                      "publicKey": f"ssh-ed25519 {GITHUB_KEY} ops"})}).to_dict()
    groups = [r for r in result["resources"] if r["type"] == "aws:ec2/securityGroup:SecurityGroup"]
    ssh_rules = [rule for g in groups for rule in g["inputs"]["ingress"] if rule.get("fromPort") == 22]
    assert ssh_rules and all(rule["cidrBlocks"] == ["203.0.113.0/24"] and
                             rule["ipv6CidrBlocks"] == ["2001:db8::/48"] for rule in ssh_rules)


# -- 8. typos in top-level keys, secrets in plain text ---------------------------------------------------
@pytest.mark.parametrize("typo,hint", [("ecom-infra:shaBuckets", "did you mean shaBucket?"),
                                       ("ecom-infra:awsEndpiont", "did you mean awsEndpoint?")])
def test_a_top_level_typo_is_refused(typo, hint):
    with pytest.raises(ConfigError) as info:
        offline_plan.run("staging", config_overrides={typo: "{}"})
    assert str(info.value).startswith(f"{typo}: is not a known setting ({hint}")


def stack_copy(tmp_path: Path, extra: str) -> Path:
    for name in ("__main__.py", "Pulumi.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "Pulumi.staging.yaml").write_text((ROOT / "Pulumi.staging.yaml").read_text() + extra)
    return tmp_path


@pytest.mark.parametrize("key", ["deployKey", "sshPrivateKey", "tlsCertificate"])
def test_a_secret_in_plain_text_is_refused_with_the_command_to_use(tmp_path, key):
    where = stack_copy(tmp_path, f"  ecom-infra:{key}: not-so-secret-value\n")
    with pytest.raises(ConfigError) as info:
        offline_plan.run("staging", project_dir=where)
    message = str(info.value)
    assert message.startswith(f"ecom-infra:{key}: is in plain text")
    assert f"pulumi config set --secret ecom-infra:{key}" in message
    assert "not-so-secret-value" not in message


def test_an_encrypted_secret_is_accepted(tmp_path):
    where = stack_copy(tmp_path, "  ecom-infra:deployKey:\n    secure: AAABAKxyz\n")
    assert offline_plan.run("staging", project_dir=where).resources


# -- 9. wrong shapes give one line, not a traceback -------------------------------------------------------
@pytest.mark.parametrize("path,value,key", [
    ("apps.0.servers", "\u00b2", "ecom-infra:apps[ecom-platform].servers"),
    ("apps.0.servers", "\u0663", "ecom-infra:apps[ecom-platform].servers"),     # Arabic-Indic 3: not a 3
    ("deploy.keepReleases", "\uff15", "ecom-infra:deploy.keepReleases"),        # fullwidth 5
    ("apps.0.servers", 10 ** 5000, "ecom-infra:apps[ecom-platform].servers"),
], ids=["superscript-2", "arabic-3", "fullwidth-5", "huge"])
def test_only_ascii_digits_are_integers(path, value, key):
    refused(path, value, key)


@pytest.mark.parametrize("override,key", [
    ({"ecom-infra:network": "garbage"}, "ecom-infra:network: must be a mapping"),
    ({"ecom-infra:network": json.dumps({"vpcId": "vpc-0a1b2c3d", "subnets": 5})}, "ecom-infra:network.subnets:"),
    ({"ecom-infra:network": json.dumps([1, 2])}, "ecom-infra:network: must be a mapping"),
    ({"ecom-infra:apps": "9" * 5000}, "ecom-infra:apps:"),      # JSON too long for int(): still one line
])
def test_wrong_shapes_through_the_plan_are_one_line(override, key):
    with pytest.raises(ConfigError) as info:
        offline_plan.run("staging", config_overrides=override)
    assert str(info.value).startswith(key), str(info.value)


@pytest.mark.parametrize("text,problem", [("- a\n- b\n", "must be a mapping with a config: key"),
                                          (b"config:\n  aws:region: \xff\n", "is not valid UTF-8")])
def test_a_stack_file_of_the_wrong_shape_is_one_line(tmp_path, text, problem):
    path = tmp_path / "Pulumi.staging.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as info:
        offline_plan.run("staging", project_dir=tmp_path)
    assert str(info.value).startswith(f"Pulumi.staging.yaml: {problem}")


# -- 12. messages and values that looked valid --------------------------------------------------------------
def test_duplicate_subnet_cidrs_name_the_setting():
    subnets = [{"id": "subnet-0a1b2c3d", "az": "us-east-1a", "cidr": "10.0.1.0/24"},
               {"id": "subnet-0a1b2c3e", "az": "us-east-1b", "cidr": "10.0.1.0/25"}]
    message = refused("network.subnets", subnets, "ecom-infra:network.subnets[1].cidr")
    assert "overlaps ecom-infra:network.subnets[0].cidr" in message


@pytest.mark.parametrize("line", ["github.com ssh-ed25519 AAAA",
                                  f"github.com ssh-rsa {GITHUB_KEY}",                # blob of another type
                                  f"github.com ssh-ed25519 {GITHUB_KEY[:-8]}"])      # truncated
def test_known_hosts_keys_must_be_real_keys(line):
    refused("gitKnownHosts", [line, f"[git.example.com]:2222 ssh-ed25519 {GITHUB_KEY}"],
            "ecom-infra:gitKnownHosts[0]")


def test_the_ssh_public_key_must_be_a_real_key():
    refused("ssh.publicKey", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO1F ops", "ecom-infra:ssh.publicKey")


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://127.0.0.1:0"])
def test_the_endpoint_port_must_exist(url):
    with pytest.raises(ConfigError, match=r"^ecom-infra:awsEndpoint: port must be 1-65535"):
        parse({**with_("deploy.root", "/srv/www"), "awsEndpoint": url})


def test_a_huge_unknown_key_is_not_echoed_in_full():
    with pytest.raises(ConfigError) as info:
        parse({**with_("deploy.root", "/srv/www"), "x" * 10_000: 1})
    assert len(str(info.value)) < 400


# -- 9. the plan verbs' file arguments -------------------------------------------------------------------
def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from ecom_infra import cli

    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(result: tuple[int, str, str], starts_with: str) -> None:
    code, out, err = result
    assert code == 2 and out == "", result
    assert len(err.splitlines()) == 1 and err.startswith(f"ecom-deploy: error: {starts_with}"), err


def test_a_non_utf8_sha_file_is_one_line(capsys, tmp_path):
    sha_file = tmp_path / "sha_number.yml"
    sha_file.write_bytes(b"staging:\n  ecom-platform: \xff\xfe\n")
    one_line_error(run_cli(capsys, "plan", "--stack", "staging", "--sha-file", str(sha_file)),
                   f"--sha-file {sha_file}: is not valid UTF-8 (byte 26)")


@pytest.mark.parametrize("content,problem", [
    (b'{"resources": [{"type": "x"}]}', ": resources[0].urn: is missing"),
    (b'{"resources": ["x"]}', ": resources[0].urn: is missing"),
    (b'{"resources": [], "hosts": {"a": 1}}', ": hosts: must map host names"),
    (b'{"resources": []}\xff', ": is not valid UTF-8"),
], ids=["no-urn", "not-an-object", "bad-hosts", "not-utf8"])
def test_a_diff_input_of_the_wrong_shape_is_one_line(capsys, tmp_path, plans, content, problem):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(plans("staging")))
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    one_line_error(run_cli(capsys, "diff", str(good), str(bad)), f"{bad}{problem}")


def test_a_relative_project_dir_plans(capsys, monkeypatch):
    monkeypatch.chdir(ROOT.parent)
    code, out, _ = run_cli(capsys, "plan", "--stack", "staging", "--json", "--project-dir", ROOT.name)
    assert code == 0 and json.loads(out)["stack"] == "staging"
