"""The provider's input rules that the mocks must apply too: one table, shared by every stand-in.

The real engine sends each resource's inputs to the provider's `Check` before anything is
created (also during `pulumi preview`); pulumi-aws fills in autonames and runs Terraform's
validators there. The SDK's mocks do neither, so a plan that passes offline could fail at
the first real preview. `PlanMocks.new_resource` (and any later stand-in provider) calls
`check()`, which autonames like the provider and then applies `RULES`.

Autonaming (pulumi-aws `resources.go`, `SetAutonaming` / `tfbridge.AutoName`): a resource
without its name property gets `<resource name>-<7 random characters>`; not when a
`namePrefix` is set (Terraform's ConflictsWith), where AWS-side naming is
`<prefix><26-character unique id>` (terraform-plugin-sdk `id.PrefixedUniqueId`,
`id.UniqueIDSuffixLength = 26`). Offline both suffixes are derived from the stack, type and
name, so the plan stays byte-identical between runs.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

AUTONAME_RANDOM_LENGTH = 7          # pulumi-terraform-bridge: name + "-" + 7 random characters
UNIQUE_ID_SUFFIX_LENGTH = 26         # terraform-plugin-sdk helper/id.UniqueIDSuffixLength


class ProviderCheckError(ConfigError):
    """A provider `Check` failure, worded as pulumi-aws reports it (one line, as every ConfigError)."""

    def __init__(self, typ: str, name: str, prop: str, problem: str):
        self.typ, self.name, self.prop = typ, name, prop
        self.key, self.problem, self.example = f"{name}.{prop}", problem, None
        Exception.__init__(self, f"{typ} resource '{name}' has a problem: {problem}. "
                                 f"Examine values at '{name}.{prop}'.")


@dataclass(frozen=True)
class Rule:
    typ: str
    prop: str                       # the Pulumi (camelCase) input property
    max_len: int | None = None
    min_len: int = 0
    must_not_match: str | None = None   # regex that must not match (re.match, i.e. anchored at the start)
    must_match: str | None = None       # regex the whole value must match
    message: str = ""               # Terraform's wording for the pattern rule

    def problem(self, value: str) -> str | None:
        tf_name = re.sub(r"(?<!^)([A-Z])", r"_\1", self.prop).lower()
        if self.max_len is not None and not self.min_len <= len(value) <= self.max_len:
            return (f"expected length of {tf_name} to be in the range ({self.min_len} - {self.max_len}), "
                    f"got {value}")
        if self.must_not_match and re.match(self.must_not_match, value):
            return f"invalid value for {tf_name} ({self.message})"
        if self.must_match and not re.fullmatch(self.must_match, value):
            return f"invalid value for {tf_name} ({self.message})"
        return None


@dataclass(frozen=True)
class AutoName:
    prop: str                       # the property the provider fills in
    max_len: int                    # autonames longer than this are refused by the provider
    prefix_prop: str | None = None  # a set prefix property turns autonaming off
    lower: bool = False             # S3 bucket autonames are lowercased


# What pulumi-aws autonames, per resource type (pulumi-aws provider/resources.go).
AUTONAMES: dict[str, AutoName] = {
    "aws:ec2/securityGroup:SecurityGroup": AutoName("name", 255, prefix_prop="namePrefix"),
    "aws:iam/role:Role": AutoName("name", 64, prefix_prop="namePrefix"),
    "aws:iam/instanceProfile:InstanceProfile": AutoName("name", 128, prefix_prop="namePrefix"),
    "aws:iam/rolePolicy:RolePolicy": AutoName("name", 128, prefix_prop="namePrefix"),
    "aws:ec2/keyPair:KeyPair": AutoName("keyName", 255, prefix_prop="keyNamePrefix"),
    "aws:s3/bucket:Bucket": AutoName("bucket", 63, prefix_prop="bucketPrefix", lower=True),
}

RULES: tuple[Rule, ...] = (
    # AWS EC2 API CreateSecurityGroup, GroupName: "Constraints: Up to 255 characters in length. Cannot start
    # with sg-." terraform-provider-aws internal/service/ec2/vpc_security_group.go: name StringLenBetween(0, 255)
    # and StringDoesNotMatch(`^sg-`, "cannot begin with sg-"); name_prefix the same with 255 - 26.
    Rule("aws:ec2/securityGroup:SecurityGroup", "name", max_len=255, must_not_match=r"sg-",
         message="cannot begin with sg-"),
    Rule("aws:ec2/securityGroup:SecurityGroup", "namePrefix", max_len=255 - UNIQUE_ID_SUFFIX_LENGTH,
         must_not_match=r"sg-", message="cannot begin with sg-"),
    # AWS IAM API CreateRole, RoleName: 1-64 characters of [\w+=,.@-]. terraform-provider-aws iam/role.go:
    # validResourceName(roleNameMaxLen = 64), name_prefix 64 - 26.
    Rule("aws:iam/role:Role", "name", max_len=64, min_len=1, must_match=r"[\w+=,.@-]+",
         message=r"must match [\w+=,.@-]"),
    Rule("aws:iam/role:Role", "namePrefix", max_len=64 - UNIQUE_ID_SUFFIX_LENGTH, min_len=1,
         must_match=r"[\w+=,.@-]+", message=r"must match [\w+=,.@-]"),
    # AWS IAM API CreateInstanceProfile, InstanceProfileName: 1-128 characters of [\w+=,.@-].
    Rule("aws:iam/instanceProfile:InstanceProfile", "name", max_len=128, min_len=1, must_match=r"[\w+=,.@-]+",
         message=r"must match [\w+=,.@-]"),
    # AWS EC2 API ImportKeyPair, KeyName: up to 255 ASCII characters (terraform: StringLenBetween(0, 255)).
    Rule("aws:ec2/keyPair:KeyPair", "keyName", max_len=255),
    # Amazon S3 bucket naming rules (General purpose buckets): 3-63 characters, lowercase letters, digits,
    # dots and hyphens, beginning and ending with a letter or digit.
    Rule("aws:s3/bucket:Bucket", "bucket", max_len=63, min_len=3, must_match=r"[a-z0-9][a-z0-9.-]*[a-z0-9]",
         message="only lowercase alphanumeric characters, hyphens and periods allowed"),
)


def _suffix(seed: str, length: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def autonames(typ: str, name: str, inputs: dict[str, Any], seed: str) -> dict[str, str]:
    """The names the provider fills in for `inputs`: {property: value} (empty when none)."""
    auto = AUTONAMES.get(typ)
    if auto is None or inputs.get(auto.prop):
        return {}
    if auto.prefix_prop and inputs.get(auto.prefix_prop):
        prefix = str(inputs[auto.prefix_prop])
        return {auto.prop: prefix + _suffix(f"{seed}/prefix", UNIQUE_ID_SUFFIX_LENGTH)}
    value = f"{name}-{_suffix(seed, AUTONAME_RANDOM_LENGTH)}"
    return {auto.prop: value.lower() if auto.lower else value}


def with_autoname(typ: str, name: str, inputs: dict[str, Any], seed: str) -> dict[str, Any]:
    """`inputs` plus the bridge's autoname (an input the provider checks). A name made from a
    prefix is made by the provider at create time (state only), after its prefix was checked."""
    auto = AUTONAMES.get(typ)
    checked = dict(inputs)
    if not (auto and auto.prefix_prop and inputs.get(auto.prefix_prop)):
        checked.update(autonames(typ, name, inputs, seed))
    return checked


def problems(typ: str, checked: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (property, problem) the provider's Check reports for these (autonamed) inputs."""
    found = []
    for rule in RULES:
        if rule.typ == typ and isinstance(checked.get(rule.prop), str):
            problem = rule.problem(checked[rule.prop])
            if problem:
                found.append((rule.prop, problem))
    found += [(prop, f'Missing required argument. The argument "{_tf_name(prop)}" is required, '
                     "but no definition was found.")
              for prop in REQUIRED.get(typ, ()) if checked.get(prop) is None]
    auto = AUTONAMES.get(typ)
    if auto and isinstance(checked.get(auto.prop), str) and len(checked[auto.prop]) > auto.max_len:
        found.append((auto.prop, f"autoname {checked[auto.prop]!r} is longer than {auto.max_len} characters"))
    return found


def check(typ: str, name: str, inputs: dict[str, Any], seed: str) -> dict[str, Any]:
    """Autoname, then validate like the provider's Check; returns the checked inputs.

    Raises ProviderCheckError with the provider's wording on the first broken rule.
    `seed` makes the autoname suffix deterministic (the plan passes stack/type/name).
    """
    checked = with_autoname(typ, name, inputs, seed)
    for prop, problem in problems(typ, checked):
        raise ProviderCheckError(typ, name, prop, problem)
    return checked


def _tf_name(prop: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", prop).lower()


# ----------------------------------------------------------------------------- required inputs and replacement

# Required arguments per resource (the Terraform schemas' `Required: true`; pulumi-tls's `algorithm`).
REQUIRED: dict[str, tuple[str, ...]] = {
    "aws:ec2/keyPair:KeyPair": ("publicKey",),
    "aws:iam/role:Role": ("assumeRolePolicy",),
    "aws:iam/rolePolicy:RolePolicy": ("policy", "role"),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ("bucket", "rule"),
    "aws:s3/bucketPolicy:BucketPolicy": ("bucket", "policy"),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ("bucket",),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": ("bucket", "rules"),
    "aws:s3/bucketVersioning:BucketVersioning": ("bucket", "versioningConfiguration"),
    "tls:index/privateKey:PrivateKey": ("algorithm",),
}

# Inputs whose change replaces the resource: `ForceNew: true` in terraform-provider-aws (the files named), or
# `RequiresReplace` in terraform-provider-tls; every other input is updated in place. A dotted name is a field
# of a nested object (v7 flattens MaxItems=1 blocks such as rootBlockDevice into one object).
REPLACE_ON_CHANGE: dict[str, frozenset[str]] = {
    # ec2/ec2_instance.go; user_data replaces only with user_data_replace_on_change (its CustomizeDiff),
    # see replaces() below. instance_type, vpc_security_group_ids, iam_instance_profile, tags... update.
    "aws:ec2/instance:Instance": frozenset({
        "ami", "availabilityZone", "subnetId", "privateIp", "keyName", "associatePublicIpAddress",
        "placementGroup", "tenancy", "hostId", "ipv6AddressCount", "ipv6Addresses", "networkInterfaces",
        "ebsBlockDevices", "ephemeralBlockDevices", "launchTemplate", "cpuOptions", "hibernation",
        "securityGroups", "rootBlockDevice.encrypted", "rootBlockDevice.kmsKeyId"}),
    # ec2/vpc_security_group.go: ingress, egress, tags, revoke_rules_on_delete update.
    "aws:ec2/securityGroup:SecurityGroup": frozenset({"name", "namePrefix", "description", "vpcId"}),
    # ec2/ec2_key_pair.go: only tags update.
    "aws:ec2/keyPair:KeyPair": frozenset({"keyName", "keyNamePrefix", "publicKey"}),
    # ec2/ec2_eip.go: instance, network_interface, associate_with_private_ip, tags update.
    "aws:ec2/eip:Eip": frozenset({"domain", "address", "customerOwnedIpv4Pool", "networkBorderGroup",
                                  "publicIpv4Pool", "ipamPoolId"}),
    # ec2/ec2_eip_association.go has no Update: every argument is ForceNew.
    "aws:ec2/eipAssociation:EipAssociation": frozenset({"allocationId", "instanceId", "networkInterfaceId",
                                                         "privateIpAddress", "publicIp", "allowReassociation"}),
    # iam/role.go, iam/role_policy.go, iam/instance_profile.go.
    "aws:iam/role:Role": frozenset({"name", "namePrefix", "path"}),
    "aws:iam/rolePolicy:RolePolicy": frozenset({"name", "namePrefix", "role"}),
    "aws:iam/instanceProfile:InstanceProfile": frozenset({"name", "namePrefix", "path"}),
    # s3/bucket.go and the bucket_* configuration resources (each is bound to its bucket).
    "aws:s3/bucket:Bucket": frozenset({"bucket", "bucketPrefix", "objectLockEnabled"}),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": frozenset({"bucket"}),
    "aws:s3/bucketPolicy:BucketPolicy": frozenset({"bucket"}),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": frozenset({"bucket"}),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration":
        frozenset({"bucket", "expectedBucketOwner"}),
    "aws:s3/bucketVersioning:BucketVersioning": frozenset({"bucket", "expectedBucketOwner"}),
    # terraform-provider-tls internal/provider/resource_private_key.go: RequiresReplace on all three.
    "tls:index/privateKey:PrivateKey": frozenset({"algorithm", "rsaBits", "ecdsaCurve"}),
}


def replaces(typ: str, changed: list[str], news: dict[str, Any]) -> list[str]:
    """Which of the `changed` property paths ("a" or "a.b") replace a resource of type `typ`."""
    force_new = REPLACE_ON_CHANGE.get(typ, frozenset())
    result = [path for path in changed
              if path in force_new or path.split(".", 1)[0] in force_new]
    # ec2_instance.go CustomizeDiff: ForceNew("user_data") when user_data_replace_on_change is true.
    if (typ == "aws:ec2/instance:Instance" and "userData" in changed
            and str(news.get("userDataReplaceOnChange")).lower() == "true"):
        result.append("userData")
    return sorted(set(result))


# ----------------------------------------------------------------------------- data sources

# aws.s3.get_object fills `body` only for these content types (pulumi-aws docs of getObject, from
# terraform-provider-aws s3/object_data_source.go); `body_base64` only with `download_body`, for any type.
TEXT_CONTENT_TYPES = ("application/json", "application/ld+json", "application/x-httpd-php",
                      "application/xhtml+xml", "application/x-csh", "application/x-sh", "application/xml",
                      "application/atom+xml", "application/x-sql", "application/yaml")


def is_text_content_type(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return base.startswith("text/") or base in TEXT_CONTENT_TYPES


def get_object_result(bucket: str, key: str, data: bytes, content_type: str, download_body: Any) -> dict:
    """What `aws:s3/getObject:getObject` returns for an object holding `data`."""
    import base64

    result = {"bucket": bucket, "key": key, "contentType": content_type, "contentLength": len(data),
              "body": data.decode("utf-8", "replace") if is_text_content_type(content_type) else "",
              "bodyBase64": ""}
    if str(download_body).lower() == "true":
        result["bodyBase64"] = base64.b64encode(data).decode()
    return result
