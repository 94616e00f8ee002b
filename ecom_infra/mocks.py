"""Offline engine stand-ins: deterministic mock values and a monitor that records the plan.

`PlanMocks` answers resource registrations and invokes with values derived only from the
stack name, the resource type and name, and the inputs, so two runs are byte-identical.
Host keys are real ed25519 keys (seeded from the stack and name) because the local fleet
boots hosts with them and the executor pins them.

`RecordingMonitor` is the SDK's mock monitor plus what the SDK leaves out of
`MockResourceArgs`: parent, dependencies, protect/retain/delete-before-replace, and
additional secret outputs, which it marks secret as the engine would.
"""
from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _sync_await

from . import provider_rules

ACCOUNT_ID = "123456789012"
SECRET_SIG = rpc._special_sig_key
SECRET_VALUE = rpc._special_secret_sig


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def unwrap(value: Any) -> Any:
    """Strip secret wrappers (recursively) to compute mock state from inputs."""
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def secret(value: Any) -> dict:
    return {SECRET_SIG: SECRET_VALUE, "value": value}


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _openssh_private_key(private: bytes, public: bytes, check: int) -> str:
    """OpenSSH's private key format for ed25519, with a fixed check integer.

    `cryptography` draws the check integer at random, which would make the plan (the
    user data that carries the key) differ on every run.
    """
    def field(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    kind = b"ssh-ed25519"
    section = struct.pack(">II", check, check) + field(kind) + field(public) + field(private + public) + field(b"")
    section += bytes(range(1, 1 + (-len(section) % 8)))        # padding 1, 2, 3...
    body = (b"openssh-key-v1\0" + field(b"none") + field(b"none") + field(b"") + struct.pack(">I", 1)
            + field(field(kind) + field(public)) + field(section))
    text = base64.b64encode(body).decode()
    lines = [text[i:i + 70] for i in range(0, len(text), 70)]
    return "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END OPENSSH PRIVATE KEY-----\n"


def ed25519_keypair(seed: str) -> dict[str, str]:
    """A real ed25519 key pair derived from `seed` (deterministic plan, usable by the fleet)."""
    digest = hashlib.sha256(seed.encode()).digest()
    key = Ed25519PrivateKey.from_private_bytes(digest)
    raw_public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    private_openssh = _openssh_private_key(digest, raw_public, int.from_bytes(digest[:4], "big"))
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public = key.public_key()
    public_openssh = public.public_bytes(serialization.Encoding.OpenSSH,
                                        serialization.PublicFormat.OpenSSH).decode() + "\n"
    public_pem = public.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return {"privateKeyOpenssh": private_openssh, "privateKeyPem": private_pem,
            "privateKeyPemPkcs8": private_pem, "publicKeyOpenssh": public_openssh, "publicKeyPem": public_pem}


@dataclass
class PlanMocks(pulumi_mocks.Mocks):
    """Deterministic values for every resource type and invoke the program uses."""

    stack: str
    region: str = "us-east-1"
    sha_file_text: str | bytes | None = None  # None: the object does not exist yet
    sha_file_content_type: str = "text/yaml"  # what the object was uploaded as (the Chef tooling: binary/octet-stream)
    bucket_exists: bool = True                # False: a first `up` of the owner stack, before the bucket exists
    subnet_cidrs: dict[str, str] = field(default_factory=dict)   # subnet id -> block (the local fleet's moto)

    def _id(self, prefix: str, typ: str, name: str, length: int = 17) -> str:
        return f"{prefix}{_digest(self.stack, typ, name)[:length]}"

    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        typ, name = args.typ, args.name
        # The provider's Check: autonames and input rules (a real preview fails on these too).
        seed = f"{self.stack}/{typ}/{name}"
        inputs = provider_rules.check(typ, name, unwrap(args.inputs), seed=seed)
        inputs.update(provider_rules.autonames(typ, name, inputs, seed=seed))   # a prefix's name, in state
        state: dict[str, Any] = dict(args.inputs)
        state.update(provider_rules.autonames(typ, name, unwrap(args.inputs), seed=seed))
        arn_prefix = f"arn:aws:ec2:{self.region}:{ACCOUNT_ID}"
        rid = self._id(f"{name}-", typ, name, 8)

        if typ == "aws:ec2/instance:Instance":
            rid = self._id("i-", typ, name)
            # The program gives every instance a static address (ecom_infra/addressing.py).
            state.update(privateIp=inputs["privateIp"], arn=f"{arn_prefix}:instance/{rid}", instanceState="running")
        elif typ == "aws:ec2/eip:Eip":
            rid = self._id("eipalloc-", typ, name)
            octet = int(_digest(self.stack, name), 16) % 250 + 2
            state.update(allocationId=rid, publicIp=f"198.51.100.{octet}",
                         arn=f"{arn_prefix}:elastic-ip/{rid}")
        elif typ == "aws:ec2/eipAssociation:EipAssociation":
            rid = self._id("eipassoc-", typ, name)
        elif typ == "aws:ec2/securityGroup:SecurityGroup":
            rid = self._id("sg-", typ, name)
            state.update(name=inputs["name"], arn=f"{arn_prefix}:security-group/{rid}")
        elif typ == "aws:ec2/keyPair:KeyPair":
            rid = inputs["keyName"]
            state.update(keyName=rid, arn=f"{arn_prefix}:key-pair/{rid}")
        elif typ in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
            rid = inputs["name"]
            kind = "role" if typ.endswith("Role") else "instance-profile"
            state.update(name=rid, arn=f"arn:aws:iam::{ACCOUNT_ID}:{kind}/{rid}")
        elif typ == "aws:s3/bucket:Bucket":
            rid = inputs["bucket"]
            state.update(bucket=rid, arn=f"arn:aws:s3:::{rid}")
        elif typ == "tls:index/privateKey:PrivateKey":
            keys = ed25519_keypair(f"{self.stack}/{name}")
            state.update(keys)
        elif typ == "command:remote:Command":
            state.update(stdout="", stderr="")
        return [rid, state]

    def call(self, args: pulumi_mocks.MockCallArgs):
        token, inputs = args.token, unwrap(args.args)
        if token == "aws:ec2/getAmi:getAmi":
            pattern = next((f["values"][0] for f in inputs.get("filters", []) if f.get("name") == "name"), "")
            return {"id": self._id("ami-", token, pattern), "name": pattern.replace("*", "20261101-1"),
                    "architecture": "x86_64"}
        if token == "aws:s3/getBuckets:getBuckets":
            # The program asks for its own bucket by name (as the prefix).
            names = [inputs["prefix"]] if self.bucket_exists and inputs.get("prefix") else []
            return {"buckets": [{"name": n, "arn": f"arn:aws:s3:::{n}", "bucketRegion": self.region,
                                 "creationDate": "2020-01-01T00:00:00Z"} for n in names],
                    "prefix": inputs.get("prefix"), "id": self.region}
        if not self.bucket_exists and token.startswith("aws:s3/getObject"):
            raise Exception(f"NoSuchBucket: s3://{inputs.get('bucket')}")   # fails the whole program
        if token == "aws:s3/getObjects:getObjects":
            keys = [inputs.get("prefix")] if self.sha_file_text is not None else []
            return {"bucket": inputs.get("bucket"), "keys": keys, "commonPrefixes": [], "owners": [],
                    "requestCharged": "", "id": inputs.get("bucket")}
        if token == "aws:s3/getObject:getObject":
            if self.sha_file_text is None:
                raise Exception(f"NoSuchKey: s3://{inputs.get('bucket')}/{inputs.get('key')}")
            data = self.sha_file_text if isinstance(self.sha_file_text, bytes) else self.sha_file_text.encode()
            return provider_rules.get_object_result(inputs.get("bucket"), inputs.get("key"), data,
                                                    self.sha_file_content_type, inputs.get("downloadBody"))
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/offline", "userId": "OFFLINE"}
        raise Exception(f"offline plan: no mock for invoke {token}")


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str | None
    dependencies: list[str]
    provider: str | None
    options: dict[str, Any]
    inputs: dict[str, Any]
    id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that keeps every registration with its options, in order."""

    def __init__(self, mocks: PlanMocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        urn = self.make_urn(request.parent, request.type, request.name)
        pulumi_mocks._ensure_event_loop()
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
        deps = set(request.dependencies)
        for prop in request.propertyDependencies.values():
            deps.update(prop.urns)
        args = pulumi_mocks.MockResourceArgs(typ=request.type, name=request.name, inputs=inputs,
                                             provider=request.provider, resource_id=request.importId,
                                             custom=request.custom or False)
        rid, state = self.mocks.new_resource(args)
        # The engine marks these outputs secret; the SDK's mock monitor does not.
        for key in request.additionalSecretOutputs:
            if key in state and not is_secret(state[key]):
                state[key] = secret(state[key])
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, rid, state)
        self.registrations.append(Registration(
            urn=urn, type=request.type, name=request.name, custom=bool(request.custom),
            parent=request.parent or None, dependencies=sorted(deps),
            provider=request.provider.rsplit("::", 1)[0] if request.provider else None,
            options={"protect": bool(request.protect), "retain_on_delete": bool(request.retainOnDelete),
                     "delete_before_replace": bool(request.deleteBeforeReplace),
                     "additional_secret_outputs": sorted(request.additionalSecretOutputs),
                     "replace_on_changes": sorted(request.replaceOnChanges),
                     "ignore_changes": sorted(request.ignoreChanges),
                     "import": request.importId or None},
            inputs=inputs, id=rid if request.custom else None, state=state))
        obj = _sync_await(rpc.serialize_properties(state, {}))
        return resource_pb2.RegisterResourceResponse(urn=urn, id=rid if request.custom else "", object=obj)
