"""The AWS stand-in driven over gRPC as the engine drives it, on a moto_server on loopback."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import uuid
from importlib import metadata
from pathlib import Path

import boto3
import grpc
import pytest
from pulumi.runtime import proto

from ecom_infra import provider_rules
from tests.support.moto_server import aws_env, moto_endpoint, unique_bucket  # noqa: F401 (fixtures)

from .plugin import BIN, UNKNOWN, Plugin

SG = "aws:ec2/securityGroup:SecurityGroup"
INSTANCE = "aws:ec2/instance:Instance"
KEY_PAIR = "aws:ec2/keyPair:KeyPair"
EIP = "aws:ec2/eip:Eip"
ASSOCIATION = "aws:ec2/eipAssociation:EipAssociation"
BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO1FNY49mlg696K4JUQhOqOhwWQz8px+0B1cpgefQt6t test"


def provider_config(endpoint: str) -> dict:
    # As the generated pulumi_aws.Provider sends them: non-string values JSON-encoded.
    return {"region": "us-east-1", "accessKey": "test", "secretKey": "test", "skipCredentialsValidation": "true",
            "endpoints": json.dumps([{s: endpoint for s in ("ec2", "iam", "s3", "sts")}]),
            "defaultTags": json.dumps({"tags": {"Project": "standins", "ManagedBy": "pulumi"}})}


def start(endpoint: str, env: dict | None = None) -> Plugin:
    plugin = Plugin("aws", env)
    plugin.configure(provider_config(endpoint))
    return plugin


@pytest.fixture(scope="module")
def aws(moto_endpoint: str):  # noqa: F811 - fixture
    plugin = start(moto_endpoint)
    yield plugin
    plugin.close()


@pytest.fixture(scope="module")
def ec2(moto_endpoint: str):  # noqa: F811
    return boto3.client("ec2", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")


@pytest.fixture(scope="module")
def s3(moto_endpoint: str):  # noqa: F811
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")


@pytest.fixture(scope="module")
def network(ec2) -> dict:
    vpc = ec2.create_vpc(CidrBlock="10.88.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.88.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return {"vpc": vpc, "subnet": subnet["SubnetId"], "ami": ami}


_next_ip = iter(range(20, 250))


def instance_inputs(network: dict, sg: str | None = None, **extra) -> dict:
    inputs = {"ami": network["ami"], "instanceType": "t3.micro", "subnetId": network["subnet"],
              "privateIp": f"10.88.1.{next(_next_ip)}", "userData": "#cloud-config\n", "userDataReplaceOnChange": True,
              "tags": {"Name": "host"}, "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1},
              "rootBlockDevice": {"encrypted": True, "volumeSize": 20}, "monitoring": True}
    if sg:
        inputs["vpcSecurityGroupIds"] = [sg]
    return {**inputs, **extra}


# ----------------------------------------------------------------------------- identity

def test_plugin_reports_the_versions_the_sdks_ask_for(aws):
    assert aws.info().version == metadata.version("pulumi_aws") == "7.51.1"
    tls = Plugin("tls")
    try:
        assert tls.info().version == metadata.version("pulumi_tls") == "5.6.2"
    finally:
        tls.close()


@pytest.mark.tools
def test_the_plugin_wrappers_pass_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed (make setup-system)")
    subprocess.run(["shellcheck", *map(str, sorted(BIN.iterdir()))], check=True)


def test_without_an_endpoint_nothing_is_sent_anywhere(moto_endpoint):  # noqa: F811
    plugin = Plugin("aws", {"ECOM_STANDIN_AWS_ENDPOINT": ""})
    try:
        plugin.configure({"region": "us-east-1"})
        with pytest.raises(grpc.RpcError, match="no endpoint for ec2"):
            plugin.create(SG, "web", {"name": "web", "description": "x"})
    finally:
        plugin.close()


# ----------------------------------------------------------------------------- check

def test_an_sg_name_starting_with_sg_is_refused_with_the_providers_message(aws):
    _, failures = aws.check(SG, "sg-haproxy", {"vpcId": "vpc-1"})
    assert failures == [("", "invalid value for name (cannot begin with sg-). Examine values at 'sg-haproxy.name'.")]
    _, failures = aws.check(SG, "web", {"namePrefix": "sg-web-"})
    assert failures == [("", "invalid value for name_prefix (cannot begin with sg-). "
                             "Examine values at 'web.namePrefix'.")]


def test_the_mocks_and_the_stand_in_word_a_check_failure_alike(aws):
    with pytest.raises(provider_rules.ProviderCheckError) as raised:
        provider_rules.check(SG, "sg-haproxy", {}, seed="x")
    _, [(_, reason)] = aws.check(SG, "sg-haproxy", {})
    assert str(raised.value) == f"{SG} resource 'sg-haproxy' has a problem: {reason}"


def test_lengths_characters_and_required_inputs_are_checked(aws):
    assert aws.check("aws:iam/role:Role", "r", {"name": "bad name!", "assumeRolePolicy": "{}"})[1][0][1].startswith(
        r"invalid value for name (must match [\w+=,.@-])")
    assert "expected length of name to be in the range (0 - 255)" in aws.check(SG, "web", {"name": "x" * 256})[1][0][1]
    _, failures = aws.check(KEY_PAIR, "admin", {})
    assert failures == [("", 'Missing required argument. The argument "public_key" is required, but no definition '
                             "was found.. Examine values at 'admin.publicKey'.")]


def test_autonames_have_the_providers_shape_and_survive_later_checks(aws):
    checked, failures = aws.check(SG, "web", {"vpcId": "vpc-1"})
    assert not failures
    assert re.fullmatch(r"web-[0-9a-f]{7}", checked["name"])
    assert checked["description"] == "Managed by Pulumi"
    again, _ = aws.check(SG, "web", {"vpcId": "vpc-1"}, olds=checked, seed=b"another-seed")
    assert again["name"] == checked["name"]                       # an update keeps the name
    fresh, _ = aws.check(SG, "web", {"vpcId": "vpc-1"}, seed=b"another-seed")
    assert fresh["name"] != checked["name"]                       # a new resource draws a new one
    bucket, _ = aws.check(BUCKET, "Sha-Bucket", {})
    assert re.fullmatch(r"sha-bucket-[0-9a-f]{7}", bucket["bucket"])
    prefixed, _ = aws.check(SG, "web", {"namePrefix": "ecom-web-"})
    assert "name" not in prefixed                                 # made by AWS-side naming at create


def test_a_prefix_becomes_a_26_character_unique_suffix_at_create(aws, network):
    checked, _ = aws.check(SG, "web", {"namePrefix": "ecom-web-", "vpcId": network["vpc"]})
    rid, outputs, _ = aws.create(SG, "web", checked)
    assert re.fullmatch(r"ecom-web-\d{18}[0-9a-f]{8}", outputs["name"])
    assert rid.startswith("sg-")
    aws.delete(SG, "web", rid, outputs)


# ----------------------------------------------------------------------------- diff

REPLACE_CASES = [
    (INSTANCE, "ami", "ami-1", "ami-2", True),
    (INSTANCE, "subnetId", "subnet-1", "subnet-2", True),
    (INSTANCE, "privateIp", "10.0.0.1", "10.0.0.2", True),
    (INSTANCE, "keyName", "a", "b", True),
    (INSTANCE, "availabilityZone", "us-east-1a", "us-east-1b", True),
    (INSTANCE, "instanceType", "t3.micro", "t3.small", False),
    (INSTANCE, "vpcSecurityGroupIds", ["sg-1"], ["sg-2"], False),
    (INSTANCE, "tags", {"A": "1"}, {"A": "2"}, False),
    (SG, "name", "a", "b", True),
    (SG, "namePrefix", "a-", "b-", True),
    (SG, "description", "a", "b", True),
    (SG, "vpcId", "vpc-1", "vpc-2", True),
    (SG, "ingress", [], [{"protocol": "tcp", "fromPort": 80, "toPort": 80}], False),
    (KEY_PAIR, "keyName", "a", "b", True),
    (KEY_PAIR, "publicKey", "ssh-ed25519 A", "ssh-ed25519 B", True),
    (KEY_PAIR, "tags", {}, {"A": "1"}, False),
    (EIP, "domain", "vpc", "standard", True),
    (EIP, "tags", {}, {"A": "1"}, False),
    (ASSOCIATION, "allocationId", "eipalloc-1", "eipalloc-2", True),
    (ASSOCIATION, "instanceId", "i-1", "i-2", True),
    ("aws:iam/role:Role", "name", "a", "b", True),
    ("aws:iam/role:Role", "assumeRolePolicy", "{}", '{"a": 1}', False),
    ("aws:iam/rolePolicy:RolePolicy", "role", "a", "b", True),
    ("aws:iam/rolePolicy:RolePolicy", "policy", "{}", '{"a": 1}', False),
    ("aws:iam/instanceProfile:InstanceProfile", "role", "a", "b", False),
    (BUCKET, "bucket", "a-bucket", "b-bucket", True),
    (BUCKET, "forceDestroy", False, True, False),
    ("aws:s3/bucketPolicy:BucketPolicy", "bucket", "a", "b", True),
    ("aws:s3/bucketPolicy:BucketPolicy", "policy", "{}", '{"a": 1}', False),
    ("aws:s3/bucketVersioning:BucketVersioning", "versioningConfiguration", {"status": "Enabled"},
     {"status": "Suspended"}, False),
]


@pytest.mark.parametrize("typ,prop,old,new,replaces", REPLACE_CASES, ids=[f"{c[0].split(':')[-1]}.{c[1]}"
                                                                         for c in REPLACE_CASES])
def test_replace_or_update_follows_the_table(aws, typ, prop, old, new, replaces):
    olds = {prop: old, "other": "same"}
    diff = aws.diff(typ, "r", olds, {prop: new, "other": "same"})
    assert diff.changes == proto.DiffResponse.DIFF_SOME
    assert list(diff.diffs) == [prop]
    assert list(diff.replaces) == ([prop] if replaces else [])
    assert (prop in provider_rules.REPLACE_ON_CHANGE[typ]) == replaces


def test_user_data_replaces_only_with_user_data_replace_on_change(aws):
    olds = {"userData": "a", "userDataReplaceOnChange": True}
    assert list(aws.diff(INSTANCE, "h", olds, {**olds, "userData": "b"}).replaces) == ["userData"]
    olds = {"userData": "a"}
    diff = aws.diff(INSTANCE, "h", olds, {"userData": "b"})
    assert list(diff.diffs) == ["userData"] and not diff.replaces


def test_nested_fields_replace_only_where_terraform_says(aws):
    olds = {"rootBlockDevice": {"encrypted": True, "volumeSize": 20}}
    grow = aws.diff(INSTANCE, "h", olds, {"rootBlockDevice": {"encrypted": True, "volumeSize": 30}})
    assert list(grow.diffs) == ["rootBlockDevice"] and not grow.replaces
    assert grow.detailedDiff["rootBlockDevice.volumeSize"].kind == proto.PropertyDiff.UPDATE
    clear = aws.diff(INSTANCE, "h", olds, {"rootBlockDevice": {"encrypted": False, "volumeSize": 20}})
    assert list(clear.replaces) == ["rootBlockDevice"]
    assert clear.detailedDiff["rootBlockDevice.encrypted"].kind == proto.PropertyDiff.UPDATE_REPLACE


def test_no_change_and_ignore_changes_and_unknowns(aws):
    olds = {"ami": "ami-1", "instanceType": "t3.micro", "tags": {"A": "1"}}
    assert aws.diff(INSTANCE, "h", olds, dict(olds)).changes == proto.DiffResponse.DIFF_NONE
    ignored = aws.diff(INSTANCE, "h", olds, {**olds, "ami": "ami-2"}, ignore=["ami"])
    assert ignored.changes == proto.DiffResponse.DIFF_NONE
    unknown = aws.diff(INSTANCE, "h", olds, {**olds, "ami": UNKNOWN})
    assert list(unknown.replaces) == ["ami"]                   # a ForceNew value not known yet may replace


def test_delete_before_replace_when_a_user_given_name_is_replaced(aws):
    named = aws.diff(BUCKET, "b", {"bucket": "a-bucket"}, {"bucket": "b-bucket"})
    assert named.deleteBeforeReplace
    checked, _ = aws.check(SG, "web", {"vpcId": "vpc-1"})
    autonamed = aws.diff(SG, "web", checked, {**checked, "vpcId": "vpc-2"})
    assert list(autonamed.replaces) == ["vpcId"] and not autonamed.deleteBeforeReplace


def test_preview_leaves_computed_outputs_unknown(aws, network):
    rid, outputs, _ = aws.create(INSTANCE, "h", instance_inputs(network, privateIp="10.88.1.5"), preview=True)
    assert rid == ""
    assert outputs["id"] is UNKNOWN and outputs["arn"] is UNKNOWN and outputs["publicIp"] is UNKNOWN
    assert outputs["privateIp"] == "10.88.1.5"                 # given, so known
    _, eip, _ = aws.create(EIP, "vip", {"domain": "vpc"}, preview=True)
    assert eip["allocationId"] is UNKNOWN and eip["publicIp"] is UNKNOWN


# ----------------------------------------------------------------------------- create, read, update, delete

def test_security_group_rules_tags_and_refresh_after_deletion_behind_pulumis_back(aws, ec2, network):
    inputs = {"namePrefix": "ecom-app-", "vpcId": network["vpc"], "tags": {"Role": "app"},
              "ingress": [{"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidrBlocks": ["10.0.0.0/8"]},
                          {"protocol": "112", "fromPort": 0, "toPort": 0, "self": True}],
              "egress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]}
    rid, outputs, checked = aws.up(SG, "app", inputs)
    [group] = ec2.describe_security_groups(GroupIds=[rid])["SecurityGroups"]
    assert {t["Key"]: t["Value"] for t in group["Tags"]} == {"Role": "app", "Project": "standins",
                                                             "ManagedBy": "pulumi"}
    assert sorted(p["IpProtocol"] for p in group["IpPermissions"]) == ["112", "tcp"]
    assert outputs["tags"] == {"Role": "app"} and outputs["tagsAll"]["Project"] == "standins"

    news = {**checked, "ingress": inputs["ingress"][:1]}
    updated = aws.update(SG, "app", rid, outputs, news, old_inputs=checked)
    [group] = ec2.describe_security_groups(GroupIds=[rid])["SecurityGroups"]
    assert [p["IpProtocol"] for p in group["IpPermissions"]] == ["tcp"]

    found_id, state, read_inputs = aws.read(SG, "app", rid, updated, news)
    assert found_id == rid and state["name"] == outputs["name"] and read_inputs["tags"] == {"Role": "app"}
    ec2.delete_security_group(GroupId=rid)
    assert aws.read(SG, "app", rid, updated, news)[0] == ""     # gone: refresh drops it
    aws.delete(SG, "app", rid, updated)                          # deleting what is gone is not an error


def test_instance_eip_and_association_and_a_refresh_after_keepalived_moved_the_eip(aws, ec2, network):
    key_id, key, _ = aws.up(KEY_PAIR, "admin-key", {"publicKey": PUBLIC_KEY})
    assert re.fullmatch(r"admin-key-[0-9a-f]{7}", key_id)
    a_id, a, a_in = aws.up(INSTANCE, "a", instance_inputs(network, keyName=key_id))
    b_id, b, b_in = aws.up(INSTANCE, "b", instance_inputs(network))
    assert a["privateIp"] == a_in["privateIp"] and a["instanceState"] == "running"
    assert a["arn"].endswith(f":instance/{a_id}") and a["keyName"] == key_id
    eip_id, eip, _ = aws.up(EIP, "vip", {"domain": "vpc", "tags": {"Role": "vip"}})
    assoc_id, assoc, assoc_in = aws.up(ASSOCIATION, "vip-master", {"allocationId": eip_id, "instanceId": a_id,
                                                                   "allowReassociation": True})
    assert ec2.describe_addresses(AllocationIds=[eip_id])["Addresses"][0]["InstanceId"] == a_id
    assert aws.read(ASSOCIATION, "vip-master", assoc_id, assoc, assoc_in)[0] == assoc_id

    # keepalived on node b takes the address over: a new association id, the old one is gone.
    ec2.associate_address(AllocationId=eip_id, InstanceId=b_id, AllowReassociation=True)
    assert aws.read(ASSOCIATION, "vip-master", assoc_id, assoc, assoc_in)[0] == ""
    _, eip_now, eip_inputs = aws.read(EIP, "vip", eip_id, eip, {"domain": "vpc", "tags": {"Role": "vip"}})
    assert eip_now["instance"] == b_id and "instance" not in eip_inputs     # Optional+Computed: output only

    # Instance updates in place; a terminated instance is gone on refresh.
    updated = aws.update(INSTANCE, "a", a_id, a, {**a_in, "instanceType": "t3.small", "tags": {"Name": "a2"}},
                         old_inputs=a_in)
    assert updated["instanceType"] == "t3.small" and updated["tagsAll"]["Name"] == "a2"
    ec2.terminate_instances(InstanceIds=[b_id])
    assert aws.read(INSTANCE, "b", b_id, b, b_in)[0] == ""
    aws.delete(INSTANCE, "a", a_id, updated)
    aws.delete(EIP, "vip", eip_id, eip)
    assert not ec2.describe_addresses(Filters=[{"Name": "allocation-id", "Values": [eip_id]}])["Addresses"]


def test_a_replacement_can_take_over_the_static_address(aws, network):
    inputs = instance_inputs(network)
    first_id, first, _ = aws.up(INSTANCE, "h", inputs)
    aws.delete(INSTANCE, "h", first_id, first)                 # delete-before-replace, as the program asks
    second_id, second, _ = aws.up(INSTANCE, "h", inputs)
    assert second_id != first_id and second["privateIp"] == inputs["privateIp"]
    aws.delete(INSTANCE, "h", second_id, second)


def test_iam_role_policy_and_instance_profile(aws, moto_endpoint):  # noqa: F811
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="test",
                       aws_secret_access_key="test")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                               "Principal": {"Service": "ec2.amazonaws.com"}}]})
    role_id, role, role_in = aws.up("aws:iam/role:Role", "haproxy-role", {"assumeRolePolicy": trust,
                                                                          "description": "move the EIP"})
    assert re.fullmatch(r"haproxy-role-[0-9a-f]{7}", role_id) and role["arn"].endswith(f":role/{role_id}")
    profile_id, profile, _ = aws.up("aws:iam/instanceProfile:InstanceProfile", "haproxy-profile", {"role": role_id})
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:AssociateAddress",
                                                                "Resource": "*"}]})
    policy_id, policy_state, _ = aws.up("aws:iam/rolePolicy:RolePolicy", "move-eip", {"role": role_id, "policy": policy})
    assert policy_id.startswith(f"{role_id}:move-eip-")
    assert iam.get_instance_profile(InstanceProfileName=profile_id)["InstanceProfile"]["Roles"][0]["RoleName"] == role_id
    _, read_role, read_in = aws.read("aws:iam/role:Role", "haproxy-role", role_id, role, role_in)
    assert read_role["assumeRolePolicy"] == trust and read_in["assumeRolePolicy"] == trust   # same document kept
    aws.delete("aws:iam/rolePolicy:RolePolicy", "move-eip", policy_id, policy_state)
    aws.delete("aws:iam/instanceProfile:InstanceProfile", "haproxy-profile", profile_id, profile)
    aws.delete("aws:iam/role:Role", "haproxy-role", role_id, role)
    assert aws.read("aws:iam/role:Role", "haproxy-role", role_id, role, role_in)[0] == ""


def test_bucket_and_its_settings_and_an_import(aws, s3):
    name = unique_bucket("sha")
    bucket_id, bucket, bucket_in = aws.up(BUCKET, "sha-bucket", {"bucket": name, "forceDestroy": False,
                                                                  "tags": {"Role": "sha-bucket"}})
    assert bucket_id == name and bucket["arn"] == f"arn:aws:s3:::{name}"
    settings = [
        ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", {"blockPublicAcls": True, "blockPublicPolicy": True,
                                                                     "ignorePublicAcls": True,
                                                                     "restrictPublicBuckets": True}),
        ("aws:s3/bucketOwnershipControls:BucketOwnershipControls", {"rule": {"objectOwnership": "BucketOwnerEnforced"}}),
        ("aws:s3/bucketVersioning:BucketVersioning", {"versioningConfiguration": {"status": "Enabled"}}),
        ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
         {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}, "bucketKeyEnabled": True}]}),
        ("aws:s3/bucketPolicy:BucketPolicy", {"policy": json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": f"arn:aws:s3:::{name}/*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})}),
    ]
    made = []
    for typ, inputs in settings:
        rid, state, checked = aws.up(typ, "setting", {"bucket": name, **inputs})
        assert rid == name
        found_id, found, found_in = aws.read(typ, "setting", rid, state, checked)
        assert found_id == name
        for key, value in inputs.items():
            assert found_in[key] == value, (typ, key, found_in[key])
        made.append((typ, rid, state))
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"

    # `import_`: Read from nothing gives the bucket's inputs, tags included.
    imported_id, imported, imported_in = aws.read(BUCKET, "sha-bucket", name)
    assert imported_id == name and imported_in["bucket"] == name and imported_in["forceDestroy"] is False
    assert imported_in["tags"] == {"Role": "sha-bucket"}

    for typ, rid, state in reversed(made):
        aws.delete(typ, "setting", rid, state)
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Suspended"     # versioning can only be suspended
    aws.delete(BUCKET, "sha-bucket", bucket_id, bucket)
    assert aws.read(BUCKET, "sha-bucket", name, bucket, bucket_in)[0] == ""


# ----------------------------------------------------------------------------- functions

def test_get_object_fills_body_only_for_text_and_body_base64_only_when_asked(aws, s3):
    name = unique_bucket("objects")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="sha_number.yml", Body=b"staging: {}\n", ContentType="text/yaml")
    s3.put_object(Bucket=name, Key="binary.yml", Body=b"staging: {}\n", ContentType="binary/octet-stream")
    text, _ = aws.invoke("aws:s3/getObject:getObject", {"bucket": name, "key": "sha_number.yml"})
    assert text["body"] == "staging: {}\n" and text["bodyBase64"] == "" and text["contentType"] == "text/yaml"
    binary, _ = aws.invoke("aws:s3/getObject:getObject", {"bucket": name, "key": "binary.yml"})
    assert binary["body"] == "" and binary["bodyBase64"] == ""
    downloaded, _ = aws.invoke("aws:s3/getObject:getObject", {"bucket": name, "key": "binary.yml",
                                                              "downloadBody": "true"})
    assert downloaded["body"] == "" and base64.b64decode(downloaded["bodyBase64"]) == b"staging: {}\n"
    with pytest.raises(grpc.RpcError, match=r"reading S3 Bucket \(.*\) Object \(missing.yml\): NoSuchKey"):
        aws.invoke("aws:s3/getObject:getObject", {"bucket": name, "key": "missing.yml"})

    listing, _ = aws.invoke("aws:s3/getObjects:getObjects", {"bucket": name, "prefix": "sha_number.yml",
                                                             "maxKeys": 10})
    assert listing["keys"] == ["sha_number.yml"]
    found, _ = aws.invoke("aws:s3/getBuckets:getBuckets", {"prefix": name})
    assert [b["name"] for b in found["buckets"]] == [name]
    none, _ = aws.invoke("aws:s3/getBuckets:getBuckets", {"prefix": f"absent-{uuid.uuid4().hex}"})
    assert none["buckets"] == []


def test_get_ami_and_caller_identity(aws):
    image, _ = aws.invoke("aws:ec2/getAmi:getAmi", {"mostRecent": True, "owners": ["amazon"],
                                                    "filters": [{"name": "architecture", "values": ["x86_64"]}]})
    assert image["id"].startswith("ami-") and image["architecture"] == "x86_64"
    with pytest.raises(grpc.RpcError, match="Your query returned no results"):
        aws.invoke("aws:ec2/getAmi:getAmi", {"mostRecent": True, "owners": ["amazon"],
                                             "filters": [{"name": "name", "values": ["no-such-image-*"]}]})
    me, _ = aws.invoke("aws:index/getCallerIdentity:getCallerIdentity", {})
    assert me["accountId"] == "123456789012"


# ----------------------------------------------------------------------------- the instance hook

def write_hook(tmp_path: Path, body: str) -> tuple[Path, Path]:
    log = tmp_path / "hook.jsonl"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\n{{ cat; echo; }} >> {log}\n{body}\n")
    hook.chmod(0o755)
    return hook, log


def test_the_instance_hook_gets_create_and_delete_with_the_instance_document(tmp_path, moto_endpoint, network):  # noqa: F811
    hook, log = write_hook(tmp_path, "exit 0")
    plugin = start(moto_endpoint, {"ECOM_STANDIN_INSTANCE_HOOK": str(hook)})
    try:
        rid, state, checked = plugin.up(INSTANCE, "haproxy-a", instance_inputs(network, userData="#cloud-config\nx: 1\n"))
        plugin.delete(INSTANCE, "haproxy-a", rid, state)
    finally:
        plugin.close()
    created, deleted = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert created == {"event": "create", "instanceId": rid, "privateIp": checked["privateIp"],
                       "userData": "#cloud-config\nx: 1\n", "name": "haproxy-a",
                       "tags": {"Name": "host", "Project": "standins", "ManagedBy": "pulumi"},
                       "urn": Plugin.urn(INSTANCE, "haproxy-a")}
    assert deleted == {**created, "event": "delete"}


def test_a_failing_hook_fails_the_create_with_its_stderr_and_leaves_no_instance(tmp_path, moto_endpoint, ec2,  # noqa: F811
                                                                                 network):
    hook, _ = write_hook(tmp_path, "echo 'booting 10.88.1.x' >&2\necho 'no free host slot' >&2\nexit 3")
    plugin = start(moto_endpoint, {"ECOM_STANDIN_INSTANCE_HOOK": str(hook)})
    inputs = instance_inputs(network, tags={"Name": "doomed"})
    try:
        with pytest.raises(grpc.RpcError) as raised:
            plugin.up(INSTANCE, "doomed", inputs)
    finally:
        plugin.close()
    message = raised.value.details()
    assert "failed on create" in message and "(exit 3)" in message and message.endswith("no free host slot")
    assert "Traceback" not in message
    running = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["doomed"]},
                                              {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    assert running["Reservations"] == []
    # ...and the address is free again for the next attempt.
    ok = start(moto_endpoint)
    try:
        rid, state, _ = ok.up(INSTANCE, "doomed", inputs)
        ok.delete(INSTANCE, "doomed", rid, state)
    finally:
        ok.close()


def test_a_failing_delete_hook_keeps_the_instance(tmp_path, moto_endpoint, ec2, network):  # noqa: F811
    plugin = start(moto_endpoint)
    rid, state, _ = plugin.up(INSTANCE, "kept", instance_inputs(network))
    plugin.close()
    hook, _ = write_hook(tmp_path, "echo 'host would not stop' >&2\nexit 1")
    failing = start(moto_endpoint, {"ECOM_STANDIN_INSTANCE_HOOK": str(hook)})
    try:
        with pytest.raises(grpc.RpcError, match="host would not stop"):
            failing.delete(INSTANCE, "kept", rid, state)
        assert failing.read(INSTANCE, "kept", rid, state)[0] == rid
    finally:
        failing.close()
    ec2.terminate_instances(InstanceIds=[rid])


def test_an_unknown_input_during_preview_counts_as_given(aws):
    checked, failures = aws.check("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "pab",
                                  {"bucket": UNKNOWN, "blockPublicAcls": True})
    assert not failures and checked["bucket"] is UNKNOWN
    _, failures = aws.check(SG, "web", {"name": UNKNOWN})
    assert not failures


def test_the_fleet_can_name_the_eips_public_address(moto_endpoint):  # noqa: F811
    plugin = start(moto_endpoint, {"ECOM_STANDIN_EIP_ADDRESS": "10.213.0.250"})
    try:
        rid, eip, _ = plugin.up(EIP, "vip", {"domain": "vpc"})
        assert eip["publicIp"] == "10.213.0.250"
        _, planned, _ = plugin.create(EIP, "vip", {"domain": "vpc", "tags": {"Role": "vip"}}, preview=True)
        assert planned["tagsAll"] == {"Role": "vip", "Project": "standins", "ManagedBy": "pulumi"}
        plugin.delete(EIP, "vip", rid, eip)
    finally:
        plugin.close()
