"""The local fleet's cloud: the plan's EC2 resources made real in moto server.

`MotoMocks` answers the program's resource registrations like the offline mocks, except
for the resources other hosts act on through the AWS API: EC2 instances, the Elastic IP
are created in moto (over HTTP), and their ids are moto's, so the keepalived takeover
script on a HAProxy node changes real moto state; the IAM role and instance profile too, so the
host's metadata service hands out that role's credentials (keepalived owns the EIP's association; the
program declares none). Each instance's
private IP is the address of the fleet host that plays it. Creation is idempotent (found
again by a tag), so re-running the plan reuses what exists, like a Pulumi state would.

Every call the mocks make to moto goes through `RecordingClient` (fleet/moto_reads.py): each read is kept with
its answer, and any write is noted, so `make up` can tell when a kept plan is still the one the program would make.
"""
from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field
from typing import Any

from ecom_infra import provider_rules
from ecom_infra.mocks import PlanMocks, unwrap

from . import moto
from .moto_reads import MotoReads, RecordingClient

NAME_TAG = "ecom:fleet-name"
ASSOCIATION_TAG = "ecom:fleet-association"      # the association id "Pulumi's state" holds


def ec2_client(endpoint: str, region: str):
    return moto.client(endpoint, "ec2", region)


@dataclass
class MotoMocks(PlanMocks):
    endpoint: str = "http://127.0.0.1:5000"
    eip_address: str | None = None        # the fleet's address standing in for the EIP's public IP
    _subnets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reads = MotoReads()
        self.ec2 = RecordingClient(ec2_client(self.endpoint, self.region), "ec2", self.reads)
        self.iam = RecordingClient(moto.client(self.endpoint, "iam", self.region), "iam", self.reads)
        # One S3 client for the program's sha file reads: a boto3 client costs more to make than a call to moto.
        self.s3 = RecordingClient(moto.client(self.endpoint, "s3", self.region), "s3", self.reads)
        # The SDK registers resources from a thread pool: one moto change at a time.
        self._lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _tagged(name: str) -> list[dict]:
        return [{"ResourceType": "instance", "Tags": [{"Key": NAME_TAG, "Value": name}]}]

    def _moto_subnet(self, cidr: str) -> str:
        """A moto subnet with the same block as the stack's subnet (found again by its block)."""
        if cidr in self._subnets:
            return self._subnets[cidr]
        found = self.ec2.describe_subnets(Filters=[{"Name": "cidr-block", "Values": [cidr]}])["Subnets"]
        if found:
            subnet_id = found[0]["SubnetId"]
        else:
            network = ipaddress.ip_network(cidr)
            vpc_block = str(network.supernet(new_prefix=min(network.prefixlen, 16)))
            vpcs = self.ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": [vpc_block]}])["Vpcs"]
            vpc_id = vpcs[0]["VpcId"] if vpcs else self.ec2.create_vpc(CidrBlock=vpc_block)["Vpc"]["VpcId"]
            subnet_id = self.ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr)["Subnet"]["SubnetId"]
        self._subnets[cidr] = subnet_id
        return subnet_id

    def _find_instance(self, name: str) -> dict | None:
        reservations = self.ec2.describe_instances(Filters=[
            {"Name": f"tag:{NAME_TAG}", "Values": [name]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
        instances = [i for r in reservations for i in r["Instances"]]
        return instances[0] if instances else None

    def _image(self) -> str:
        return self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    # -- resources -----------------------------------------------------------------------

    def new_resource(self, args):
        with self._lock:
            return self._new_resource(args)

    def _new_resource(self, args):
        rid, state = super().new_resource(args)
        inputs = unwrap(args.inputs)
        if args.typ == "aws:ec2/instance:Instance":
            rid, state = self._instance(args.name, inputs, state)
        elif args.typ == "aws:ec2/eip:Eip":
            rid, state = self._eip(args.name, state)
        elif args.typ == "aws:iam/role:Role":
            self._role(state["name"], inputs)
        elif args.typ == "aws:iam/instanceProfile:InstanceProfile":
            self._profile(state["name"], inputs["role"])
        elif args.typ == "aws:ec2/eipAssociation:EipAssociation":
            self._associate(inputs["allocationId"], inputs["instanceId"])
        return [rid, state]

    def _instance(self, name: str, inputs: dict, state: dict) -> tuple[str, dict]:
        found = self._find_instance(name)
        if found is None:
            cidr = self.subnet_cidrs.get(inputs.get("subnetId", ""), "10.0.1.0/24")
            # The profile is what the host's metadata service (fleet/imds.py) hands out credentials of.
            profile = {"IamInstanceProfile": {"Name": inputs["iamInstanceProfile"]}} \
                if inputs.get("iamInstanceProfile") else {}
            found = self.ec2.run_instances(
                ImageId=self._image(), MinCount=1, MaxCount=1, InstanceType=inputs.get("instanceType", "t3.micro"),
                SubnetId=self._moto_subnet(cidr), PrivateIpAddress=state["privateIp"],
                TagSpecifications=self._tagged(name), **profile)["Instances"][0]
        state.update(privateIp=found["PrivateIpAddress"],
                     arn=f"arn:aws:ec2:{self.region}:123456789012:instance/{found['InstanceId']}")
        return found["InstanceId"], state

    def _role(self, name: str, inputs: dict) -> None:
        """The role in moto's IAM (found again by name), for the instance profile's credentials. Read first,
        written only when missing: a plan that finds everything in place writes nothing (see the module doc)."""
        if self._found(self.iam.get_role, RoleName=name) is None:
            self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=inputs["assumeRolePolicy"],
                                 Description=inputs.get("description", ""))

    def _profile(self, name: str, role: str) -> None:
        found = self._found(self.iam.get_instance_profile, InstanceProfileName=name)
        if found is None:
            self.iam.create_instance_profile(InstanceProfileName=name)
        roles = found["InstanceProfile"]["Roles"] if found else []
        if role not in [r["RoleName"] for r in roles]:
            self.iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)

    @staticmethod
    def _found(read, **params) -> dict | None:
        """An IAM read's answer, or None when the entity does not exist."""
        from botocore.exceptions import ClientError  # noqa: PLC0415

        try:
            return read(**params)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":
                raise
            return None

    def _eip(self, name: str, state: dict) -> tuple[str, dict]:
        addresses = self.ec2.describe_addresses(Filters=[{"Name": f"tag:{NAME_TAG}", "Values": [name]}])["Addresses"]
        if addresses:
            allocation = addresses[0]["AllocationId"]
        else:
            allocation = self.ec2.allocate_address(Domain="vpc")["AllocationId"]
            self.ec2.create_tags(Resources=[allocation], Tags=[{"Key": NAME_TAG, "Value": name}])
        state.update(allocationId=allocation, publicIp=self.eip_address or state["publicIp"],
                     arn=f"arn:aws:ec2:{self.region}:123456789012:elastic-ip/{allocation}")
        return allocation, state

    def _associate(self, allocation: str, instance: str) -> None:
        """What the real engine does with a declared EipAssociation (the program no longer declares one): the
        association id it created is kept in a tag; once keepalived re-associates, AWS has a new id, a refresh
        drops the resource and the next `up` creates it again, taking the EIP back (ignore_changes or not)."""
        [address] = self.ec2.describe_addresses(AllocationIds=[allocation])["Addresses"]
        tags = {t["Key"]: t["Value"] for t in address.get("Tags", [])}
        if address.get("AssociationId") and address["AssociationId"] == tags.get(ASSOCIATION_TAG):
            return
        made = self.ec2.associate_address(AllocationId=allocation, InstanceId=instance, AllowReassociation=True)
        self.ec2.create_tags(Resources=[allocation], Tags=[{"Key": ASSOCIATION_TAG, "Value": made["AssociationId"]}])

    def call(self, args) -> Any:
        """The sha file is read from moto's S3, where `ecom-deploy stage` wrote it."""
        inputs = unwrap(args.args)
        if args.token in ("aws:s3/getObjects:getObjects", "aws:s3/getObject:getObject", "aws:s3/getBuckets:getBuckets"):
            s3 = self.s3
            if args.token.endswith("getBuckets"):
                prefix = inputs.get("prefix") or ""
                names = [b["Name"] for b in s3.list_buckets().get("Buckets", []) if b["Name"].startswith(prefix)]
                return {"buckets": [{"name": n, "arn": f"arn:aws:s3:::{n}", "bucketRegion": self.region}
                                    for n in names], "prefix": prefix, "id": self.region}
            if args.token.endswith("getObjects"):
                listing = s3.list_objects_v2(Bucket=inputs["bucket"], Prefix=inputs.get("prefix", ""))
                return {"bucket": inputs["bucket"], "keys": [o["Key"] for o in listing.get("Contents", [])],
                        "commonPrefixes": [], "owners": [], "requestCharged": "", "id": inputs["bucket"]}
            obj = s3.get_object(Bucket=inputs["bucket"], Key=inputs["key"])
            # Shaped as the provider shapes it: `body` only for text content types (provider_rules).
            return provider_rules.get_object_result(inputs["bucket"], inputs["key"], obj["Body"],
                                                    obj.get("ContentType") or "binary/octet-stream",
                                                    inputs.get("downloadBody"))
        return super().call(args)
