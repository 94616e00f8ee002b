"""The stand-ins under the real Pulumi engine: up, a replacing preview, refresh after drift, destroy.

Needs the CLI and Python language host built from Go modules (`make tools` in the engine worktree):
`ECOM_PULUMI_BIN_DIR` names their directory (default `<repo>/.tools/bin`). Everything runs in a tmp
dir: a file:// backend, PULUMI_HOME, the program; the stand-ins come first on PATH and automatic plugin
downloads are off, so a run that tried to fetch the real aws or tls plugin fails instead.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.support.moto_server import aws_env, moto_endpoint  # noqa: F401 (fixtures)

from .plugin import BIN, ROOT

pytestmark = pytest.mark.engine

TOOLS = Path(os.environ.get("ECOM_PULUMI_BIN_DIR", ROOT / ".tools" / "bin"))
PROGRAM = Path(__file__).with_name("engine_program.py")

if not (TOOLS / "pulumi").exists():
    pytest.skip(f"no Pulumi CLI at {TOOLS}/pulumi: build it (make tools) or set ECOM_PULUMI_BIN_DIR",
                allow_module_level=True)


class Project:
    def __init__(self, tmp: Path, endpoint: str, hook_log: Path):
        self.dir = tmp / "program"
        self.dir.mkdir()
        shutil.copy(PROGRAM, self.dir / "__main__.py")
        (self.dir / "Pulumi.yaml").write_text(
            "name: standin-test\nruntime:\n  name: python\n  options:\n    toolchain: pip\n"
            f"    virtualenv: {Path(sys.executable).parent.parent}\n")
        (tmp / "state").mkdir()
        hook = tmp / "hook.sh"
        hook.write_text(f"#!/bin/sh\ncat >> {hook_log}\necho >> {hook_log}\n")
        hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
        self.env = {
            "PATH": f"{TOOLS}:{BIN}:{os.environ['PATH']}",
            "HOME": str(tmp), "PULUMI_HOME": str(tmp / "pulumi-home"),
            "PULUMI_BACKEND_URL": f"file://{tmp / 'state'}", "PULUMI_CONFIG_PASSPHRASE": "standin-test",
            "PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
            "ECOM_STANDIN_INSTANCE_HOOK": str(hook),
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_EC2_METADATA_DISABLED": "true",
        }
        self.endpoint = endpoint

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(TOOLS / "pulumi"), *args, "--non-interactive", "--stack", "test"], cwd=self.dir,
                              env=self.env, capture_output=True, text=True, timeout=600, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def config(self, key: str, value: str) -> None:
        self.run("config", "set", key, value)

    def outputs(self) -> dict:
        return json.loads(self.run("stack", "output", "--json", "--show-secrets").stdout)


@pytest.fixture
def network(moto_endpoint: str) -> dict:  # noqa: F811 - fixture
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="test",
                       aws_secret_access_key="test")
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]
    return {"ec2": ec2, "vpc": vpc, "subnet": subnet}


@pytest.fixture
def project(tmp_path: Path, moto_endpoint: str, network: dict) -> Project:  # noqa: F811
    hook_log = tmp_path / "hook.log"
    project = Project(tmp_path, moto_endpoint, hook_log)
    project.hook_log = hook_log
    project.run("stack", "init")
    for key, value in (("endpoint", moto_endpoint), ("vpcId", network["vpc"]), ("subnetId", network["subnet"]),
                       ("privateIp", "10.77.1.10")):
        project.config(key, value)
    return project


def hook_events(project: Project) -> list[dict]:
    text = project.hook_log.read_text() if project.hook_log.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_up_replace_refresh_destroy_on_the_real_engine(project: Project, network: dict):
    ec2 = network["ec2"]
    up = project.run("up", "--yes", "--skip-preview")
    outputs = project.outputs()
    assert outputs["groupName"].startswith("standin-web-") and len(outputs["groupName"]) == len("standin-web-") + 26
    assert outputs["privateIp"] == "10.77.1.10"
    assert outputs["fingerprint"].startswith("SHA256:")
    [address] = ec2.describe_addresses(Filters=[{"Name": "association-id", "Values": [outputs["associationId"]]}])[
        "Addresses"]
    assert address["InstanceId"] == outputs["instanceId"]
    assert [e["event"] for e in hook_events(project)] == ["create"], up.stdout
    [created] = hook_events(project)
    assert created["instanceId"] == outputs["instanceId"] and created["privateIp"] == "10.77.1.10"
    assert created["userData"].startswith("#cloud-config") and created["tags"]["Name"] == "standin-host"
    assert created["tags"]["Project"] == "standin-test" and created["name"] == "host"

    # A second up changes nothing.
    again = project.run("preview", "--diff")
    assert "to update" not in again.stdout and "to replace" not in again.stdout, again.stdout

    # privateIp is ForceNew: the preview shows the instance replaced (and what depends on its id with it).
    project.config("privateIp", "10.77.1.11")
    preview = project.run("preview", "--diff")
    assert "+-aws:ec2/instance:Instance: (replace)" in preview.stdout, preview.stdout
    assert '~ privateIp: "10.77.1.10" => "10.77.1.11"' in preview.stdout, preview.stdout
    project.config("privateIp", "10.77.1.10")

    # keepalived (or anyone) moves the EIP behind Pulumi's back: refresh drops the association.
    ec2.disassociate_address(AssociationId=outputs["associationId"])
    project.run("refresh", "--yes", "--skip-preview")
    state = json.loads(project.run("stack", "export").stdout)
    types = [r["type"] for r in state["deployment"]["resources"]]
    assert "aws:ec2/eipAssociation:EipAssociation" not in types
    assert "aws:ec2/instance:Instance" in types
    # ...and the next up puts it back.
    project.run("up", "--yes", "--skip-preview")
    assert project.outputs()["associationId"] != outputs["associationId"]
    settled = project.run("preview", "--diff", "--expect-no-changes", check=False)
    assert settled.returncode == 0, settled.stdout          # refresh left no spurious diff behind

    project.run("destroy", "--yes", "--skip-preview")
    assert [e["event"] for e in hook_events(project)] == ["create", "delete"]
    reservations = ec2.describe_instances(InstanceIds=[outputs["instanceId"]])["Reservations"]
    assert reservations[0]["Instances"][0]["State"]["Name"] in ("terminated", "shutting-down")


def test_a_preview_with_an_sg_name_starting_with_sg_fails_with_the_providers_message(project: Project):
    project.config("sgName", "sg-bad")
    preview = project.run("preview", check=False)
    assert preview.returncode != 0
    # The same line the offline plan's mocks raise (ecom_infra.provider_rules.ProviderCheckError).
    assert ("aws:ec2/securityGroup:SecurityGroup resource 'web' has a problem: invalid value for name "
            "(cannot begin with sg-). Examine values at 'web.name'.") in preview.stdout, preview.stdout


def test_the_whole_program_previews_on_the_stand_ins(tmp_path: Path, moto_endpoint: str):  # noqa: F811
    """Every resource and function `__main__.py` uses is served: a preview of the local stack on moto passes."""
    import yaml  # noqa: PLC0415

    program = tmp_path / "ecom-infra"
    shutil.copytree(ROOT, program, ignore=shutil.ignore_patterns(".venv", ".git", ".tools", "__pycache__",
                                                                 ".pytest_cache", "Pulumi.*.yaml"))
    (program / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text().replace(
        "virtualenv: .venv", f"virtualenv: {Path(sys.executable).parent.parent}"))
    project = Project(tmp_path, moto_endpoint, tmp_path / "hook.log")
    project.dir = program
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="test",
                       aws_secret_access_key="test")
    # moto's register_image drops the architecture the program filters on; a copy keeps it.
    source = next(i for i in ec2.describe_images(Owners=["amazon"])["Images"] if i.get("Architecture") == "x86_64")
    ec2.copy_image(SourceImageId=source["ImageId"], SourceRegion="us-east-1", Name="debian-12-amd64-20261101-1")

    def pulumi(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(TOOLS / "pulumi"), "--non-interactive", *args], cwd=program, env=project.env,
                              capture_output=True, text=True, timeout=600, check=False)

    assert pulumi("stack", "init", "local").returncode == 0
    stack_file = program / "Pulumi.local.yaml"
    stack = yaml.safe_load(stack_file.read_text()) or {}
    stack["config"] = {**yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())["config"],
                       "ecom-infra:awsEndpoint": moto_endpoint,
                       "ecom-infra:ami": {"owners": ["123456789012"], "namePattern": "debian-12-amd64-*"}}
    stack_file.write_text(yaml.safe_dump(stack))
    placeholder = "-----BEGIN OPENSSH PRIVATE KEY-----\nstand-in test\n-----END OPENSSH PRIVATE KEY-----\n"
    for key in ("deployKey", "sshPrivateKey"):
        assert pulumi("config", "set", "--secret", key, "--", placeholder).returncode == 0
    preview = pulumi("preview", "--stack", "local")
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert re.search(r"\+ \d+ to create", preview.stdout), preview.stdout
    assert "error" not in preview.stdout.lower().replace("errored", ""), preview.stdout
