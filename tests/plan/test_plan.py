"""The offline plan of each stack: what is declared, how it is protected, what it exports."""
from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from ecom_infra import plan as offline_plan
from ecom_infra.errors import ConfigError

from ..conftest import ROOT, SHA_A, SHA_B, resources_of

SCHEMA = json.loads((ROOT / "docs" / "outputs.schema.json").read_text())
INSTANCE = "aws:ec2/instance:Instance"


@pytest.mark.parametrize("stack,platform,docs", [("staging", 2, 1), ("production", 3, 1), ("synthetic", 20, 20)])
def test_one_instance_per_server_plus_two_haproxy_nodes(plans, stack, platform, docs):
    plan = plans(stack)
    names = sorted(r["name"] for r in resources_of(plan, INSTANCE))
    expected = sorted([f"ecom-platform-{i + 1}" for i in range(platform)] +
                      [f"ecom-docs-{i + 1}" for i in range(docs)] + ["haproxy-a", "haproxy-b"])
    assert names == expected
    assert len(resources_of(plan, "ecom:app:AppServer")) == platform + docs
    assert len(resources_of(plan, "tls:index/privateKey:PrivateKey")) == platform + docs + 2


@pytest.mark.parametrize("stack", ["staging", "production", "synthetic"])
def test_outputs_match_the_schema(plans, stack):
    outputs = plans(stack)["outputs"]
    jsonschema.validate(outputs, SCHEMA)
    assert outputs["environment"] == ("production" if stack == "production" else "staging")
    servers = [s["name"] for s in outputs["apps"]["ecom-platform"]["servers"]]
    assert servers == [f"ecom-platform-{i + 1}" for i in range(len(servers))]


def test_outputs_carry_the_shas_of_the_environment(plans):
    assert plans("staging")["outputs"]["apps"]["ecom-platform"]["sha"] == SHA_A
    assert plans("staging")["outputs"]["apps"]["ecom-docs"]["sha"] == SHA_B
    assert plans("production")["outputs"]["apps"]["ecom-platform"]["sha"] == SHA_B
    assert plans("production")["outputs"]["apps"]["ecom-docs"]["sha"] is None


def test_schema_rejects_a_broken_document(plans):
    outputs = json.loads(json.dumps(plans("staging")["outputs"]))
    outputs["apps"]["ecom-platform"]["sha"] = "abc"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(outputs, SCHEMA)


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_every_instance_is_hardened_and_tagged(plans, stack):
    for r in resources_of(plans(stack), INSTANCE):
        i = r["inputs"]
        assert i["metadataOptions"]["httpTokens"] == "required", r["name"]
        assert i["metadataOptions"]["httpPutResponseHopLimit"] == 1
        assert i["rootBlockDevice"]["encrypted"] is True
        assert i["userData"] == "[secret]"                      # it carries the host's private key
        assert "userData" in r["options"]["additional_secret_outputs"]
        role = "haproxy" if r["name"].startswith("haproxy") else "app"
        assert i["tags"]["Role"] == role and i["tags"]["Environment"] == stack
        if role == "app":
            assert i["tags"]["App"] == r["name"].rsplit("-", 1)[0]


def test_a_new_ami_key_pair_or_cloud_init_never_replaces_hosts_by_itself(plans):
    # A cloud-init template edit changes every host's user data: with user_data_replace_on_change
    # and delete-before-replace that deleted every instance at once, both HAProxy nodes included.
    for r in resources_of(plans("production"), INSTANCE):
        assert r["options"]["ignore_changes"] == ["ami", "keyName", "userData"], r["name"]
        assert "userData" not in r["options"]["replace_on_changes"]
        assert r["options"]["delete_before_replace"]        # the replacement takes over the static address


def test_roll_hosts_lets_exactly_the_named_hosts_take_a_new_image_or_user_data():
    plan = offline_plan.run("production", sha_file_text=None,
                            config_overrides={"ecom-infra:rollHosts": '["haproxy-b"]'}).to_dict()
    ignored = {r["name"]: r["options"]["ignore_changes"] for r in resources_of(plan, INSTANCE)}
    assert ignored.pop("haproxy-b") == []
    assert set(map(tuple, ignored.values())) == {("ami", "keyName", "userData")}
    [node_b] = [r for r in resources_of(plan, INSTANCE) if r["name"] == "haproxy-b"]
    assert node_b["inputs"]["userDataReplaceOnChange"] is True   # so its new user data replaces it


@pytest.mark.parametrize("value,problem", [('["haproxy-c"]', "must name a host of this stack"),
                                           ('["haproxy-b", "haproxy-b"]', "names a host twice"),
                                           ('"haproxy-b"', "must be a list")])
def test_roll_hosts_must_name_hosts_of_the_stack(value, problem):
    with pytest.raises(ConfigError, match=r"^ecom-infra:rollHosts(\[0\])?: " + problem):
        offline_plan.run("production", sha_file_text=None, config_overrides={"ecom-infra:rollHosts": value})


def test_tls_certificate_travels_only_on_stdin_of_the_cert_steps():
    pem = "-----BEGIN CERTIFICATE-----MARKER-PEM-----END CERTIFICATE-----"
    result = offline_plan.run("staging", sha_file_text=None, secrets={"ecom-infra:tlsCertificate": pem})
    revealed, masked = result.to_dict(reveal_secrets=True), result.to_dict()
    carriers = sorted(r["name"] for r in revealed["resources"] if "MARKER-PEM" in json.dumps(r["inputs"]))
    assert carriers == ["haproxy-a-haproxy-tls-cert", "haproxy-b-haproxy-tls-cert"]
    for r in revealed["resources"]:
        if r["name"] in carriers:
            assert r["inputs"]["stdin"] == pem and "MARKER-PEM" not in r["inputs"]["create"]
            assert r["inputs"]["logging"] == "none"
    assert "MARKER-PEM" not in json.dumps(masked)


def test_servers_are_spread_over_subnets_and_azs(plans):
    instances = {r["name"]: r["inputs"] for r in resources_of(plans("production"), INSTANCE)}
    assert {instances[f"ecom-platform-{i}"]["availabilityZone"] for i in (1, 2, 3)} == {"us-east-1a", "us-east-1b"}
    assert instances["haproxy-a"]["subnetId"] != instances["haproxy-b"]["subnetId"]


def test_user_data_pins_the_host_key_and_blocks_imds():
    result = offline_plan.run("staging", sha_file_text=None)
    revealed = result.to_dict(reveal_secrets=True)
    keys = {r["name"]: r for r in revealed["resources"] if r["type"] == "tls:index/privateKey:PrivateKey"}
    for r in resources_of(revealed, INSTANCE):
        user_data = r["inputs"]["userData"]
        assert user_data.startswith("#cloud-config\n")
        assert "ssh_deletekeys: true" in user_data
        assert "BEGIN OPENSSH PRIVATE KEY" in user_data
        assert user_data.count("169.254.169.254 meta skuid != 0 reject") == 2      # every boot, and after packages
        doc = yaml.safe_load(user_data)
        assert "ssh_genkeytypes" not in doc          # cloud-init's schema refuses an empty list
        assert doc["packages"] == ["nftables"] and doc["ssh_keys"]["ed25519_public"].startswith("ssh-ed25519 ")
        assert doc["ssh_keys"]["ed25519_private"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        assert keys[f"{r['name']}-host-key"]["inputs"]["algorithm"] == "ED25519"


def test_security_groups_are_least_privilege(plans):
    groups = {r["name"]: r["inputs"] for r in resources_of(plans("staging"), "aws:ec2/securityGroup:SecurityGroup")}
    haproxy, app = groups["sg-haproxy"]["ingress"], groups["sg-app"]["ingress"]
    web = {(rule["fromPort"], tuple(rule.get("cidrBlocks", []))) for rule in haproxy if rule["protocol"] == "tcp"}
    assert web == {(80, ("0.0.0.0/0",)), (443, ("0.0.0.0/0",)), (22, ("203.0.113.0/24",))}
    vrrp = [rule for rule in haproxy if rule["protocol"] == "112"]
    assert len(vrrp) == 1 and vrrp[0]["self"] is True and not vrrp[0].get("cidrBlocks")
    app_http = [rule for rule in app if rule["fromPort"] == 80]
    assert len(app_http) == 1 and not app_http[0].get("cidrBlocks") and len(app_http[0]["securityGroups"]) == 1
    assert [rule["cidrBlocks"] for rule in app if rule["fromPort"] == 22] == [["203.0.113.0/24"]]
    assert {rule["fromPort"] for rule in app} == {80, 22, 8099}
    [agent] = [rule for rule in app if rule["fromPort"] == 8099]    # the HAProxy agent-check, from HAProxy only
    assert agent["toPort"] == 8099 and not agent.get("cidrBlocks") and agent["securityGroups"] == app_http[0]["securityGroups"]


def test_only_the_owner_stack_declares_the_bucket(plans):
    assert resources_of(plans("staging"), "aws:s3/bucket:Bucket") == []
    [bucket] = resources_of(plans("production"), "aws:s3/bucket:Bucket")
    assert bucket["inputs"]["bucket"] == "emami-ci-packages"
    assert bucket["options"]["protect"] and bucket["options"]["retain_on_delete"]
    children = {r["type"]: r for r in plans("production")["resources"] if r["parent"] == bucket["parent"]}
    assert children["aws:s3/bucketVersioning:BucketVersioning"]["inputs"]["versioningConfiguration"] == {
        "status": "Enabled"}
    assert children["aws:s3/bucketVersioning:BucketVersioning"]["options"]["protect"]
    block = children["aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"]["inputs"]
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    enc = children["aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"]
    assert enc["inputs"]["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    policy = json.loads(children["aws:s3/bucketPolicy:BucketPolicy"]["inputs"]["policy"])
    [deny] = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # The sha file itself is never a Pulumi resource: CI owns its content.
    assert not [r for r in plans("production")["resources"] if "bucketObject" in r["type"]]


def test_haproxy_role_may_only_move_this_eip(plans):
    plan = plans("staging")
    [policy] = resources_of(plan, "aws:iam/rolePolicy:RolePolicy")
    doc = json.loads(policy["inputs"]["policy"])
    actions = sorted(s["Action"] for s in doc["Statement"])
    assert actions == ["ec2:AssociateAddress", "ec2:DescribeAddresses"]
    assoc = next(s for s in doc["Statement"] if s["Action"] == "ec2:AssociateAddress")
    [eip] = resources_of(plan, "aws:ec2/eip:Eip")
    nodes = sorted(plan["hosts"][n]["instanceId"] for n in ("haproxy-a", "haproxy-b"))
    assert sorted(arn.rsplit("/", 1)[1] for arn in assoc["Resource"]) == sorted([eip["id"], *nodes])
    assert eip["options"]["protect"]                                       # the address behind DNS


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_no_eip_association_is_declared_keepalived_owns_it(plans, stack):
    # A refresh after a failover drops a Pulumi-managed association (new id) and the next `up` re-creates it on
    # haproxy-a, taking the EIP from the master; ignore_changes does not prevent that.
    plan = plans(stack)
    assert not resources_of(plan, "aws:ec2/eipAssociation:EipAssociation")
    assert "ssociation" not in json.dumps(plan["outputs"])


def test_every_resource_has_a_parent_in_a_component(plans):
    plan = plans("staging")
    urns = {r["urn"]: r for r in plan["resources"]}
    for r in plan["resources"]:
        if r["type"] in (INSTANCE, "tls:index/privateKey:PrivateKey"):
            assert urns[r["parent"]]["type"] == "ecom:host:Ec2Host"
        if r["type"] == "ecom:host:Ec2Host" and not r["name"].startswith("haproxy"):
            assert urns[r["parent"]]["type"] == "ecom:app:AppServer"
    assert all(r["type"].startswith("ecom:") for r in plan["resources"] if not r["custom"])


@pytest.mark.parametrize("reveal", [False, True])
def test_plan_is_deterministic(reveal):
    """Secrets included: the host keys in user data must not change between runs either."""
    first = json.dumps(offline_plan.run("production").to_dict(reveal_secrets=reveal), sort_keys=True)
    second = json.dumps(offline_plan.run("production").to_dict(reveal_secrets=reveal), sort_keys=True)
    assert first == second


def test_missing_sha_file_provisions_without_release_and_warns():
    result = offline_plan.run("staging", sha_file_text=None)
    assert len(result.warnings) == 1
    assert "ecom-deploy stage --env staging" in result.warnings[0]
    assert result.to_dict()["outputs"]["apps"]["ecom-platform"]["sha"] is None
    assert resources_of(result.to_dict(), INSTANCE)


def test_legacy_flat_sha_file_means_first_app():
    outputs = offline_plan.run("staging", sha_file_text=f"staging: {SHA_B}\nproduction: {SHA_A}\n").to_dict()["outputs"]
    assert outputs["apps"]["ecom-platform"]["sha"] == SHA_B
    assert outputs["apps"]["ecom-docs"]["sha"] is None


@pytest.mark.parametrize("text", ["staging: {ecom-platform: 123}\n", "staging: [\n", f"staging:\n  nope: {SHA_A}\n"])
def test_malformed_sha_file_fails_the_run(text):
    with pytest.raises(ConfigError, match=r"^s3://emami-ci-packages/sha_number\.yml"):
        offline_plan.run("staging", sha_file_text=text)


def test_placeholder_secrets_appear_only_masked():
    result = offline_plan.run("staging", sha_file_text=None)
    masked = json.dumps(result.to_dict())
    revealed = json.dumps(result.to_dict(reveal_secrets=True))
    assert "PLACEHOLDER-NOT-A-REAL-SECRET" not in masked and "PRIVATE KEY" not in masked
    assert "PRIVATE KEY" in revealed
