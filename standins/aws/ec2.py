"""EC2 resources on moto: SecurityGroup, KeyPair, Instance (with the fleet hook), Eip, EipAssociation.

Why over ~400 lines: five resource handlers, each with the provider's check, diff, create, read, update and
delete for its type; they share the tag and error helpers above them.
"""
from __future__ import annotations

import os

from botocore.exceptions import ClientError

from ..server import Context, ProviderError
from . import hook
from .common import (
    ACCOUNT_ID,
    AwsResource,
    aws_error,
    client,
    gone_is_deleted,
    is_not_found,
    read_tags,
    region,
    tag_list,
    tags_all,
    tags_from,
    unless_gone,
)


def _arn(ctx: Context, kind: str, rid: str) -> str:
    return f"arn:aws:ec2:{region(ctx)}:{ACCOUNT_ID}:{kind}/{rid}"


def _set_tags(ec2, rid: str, old: dict, new: dict) -> None:
    gone = [k for k in old if k not in new]
    if gone:
        ec2.delete_tags(Resources=[rid], Tags=[{"Key": k} for k in gone])
    if new:
        ec2.create_tags(Resources=[rid], Tags=tag_list(new))


# ----------------------------------------------------------------------------- security groups

def _permissions(rules: list[dict] | None, own_id: str) -> list[dict]:
    """The program's ingress/egress blocks as EC2 IpPermissions (terraform ec2 expandIPPerms)."""
    result = []
    for rule in rules or []:
        perm = {"IpProtocol": str(rule.get("protocol", "-1")), "FromPort": int(rule.get("fromPort", 0)),
                "ToPort": int(rule.get("toPort", 0))}
        description = {"Description": rule["description"]} if rule.get("description") else {}
        perm["IpRanges"] = [{"CidrIp": c, **description} for c in rule.get("cidrBlocks") or []]
        perm["Ipv6Ranges"] = [{"CidrIpv6": c, **description} for c in rule.get("ipv6CidrBlocks") or []]
        groups = list(rule.get("securityGroups") or []) + ([own_id] if rule.get("self") else [])
        perm["UserIdGroupPairs"] = [{"GroupId": g, **description} for g in groups]
        perm["PrefixListIds"] = [{"PrefixListId": p} for p in rule.get("prefixListIds") or []]
        result.append(perm)
    return result


def _replace_rules(ec2, gid: str, ingress: list | None, egress: list | None) -> None:
    [group] = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"]
    if group.get("IpPermissions"):
        ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=group["IpPermissions"])
    if group.get("IpPermissionsEgress"):
        ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=group["IpPermissionsEgress"])
    if ingress:
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=_permissions(ingress, gid))
    if egress:
        ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=_permissions(egress, gid))


class SecurityGroup(AwsResource):
    token = "aws:ec2/securityGroup:SecurityGroup"
    computed = ("id", "arn", "name", "ownerId", "tagsAll", "ingress", "egress", "vpcId")

    def check(self, ctx, olds, news, seed):
        checked = super().check(ctx, olds, news, seed)
        # pulumi-aws resources.go: description defaults to "Managed by Pulumi" (Terraform's says Terraform).
        checked.setdefault("description", "Managed by Pulumi")
        return checked

    def create(self, ctx, inputs):
        ec2 = client(ctx, "ec2")
        name = self.resolved_name(inputs, "name", "namePrefix")
        args = {"GroupName": name, "Description": inputs["description"]}
        if inputs.get("vpcId"):
            args["VpcId"] = inputs["vpcId"]
        tags = tags_all(ctx, inputs)
        if tags:
            args["TagSpecifications"] = [{"ResourceType": "security-group", "Tags": tag_list(tags)}]
        try:
            gid = ec2.create_security_group(**args)["GroupId"]
            # terraform revokes the default allow-all egress rule, then applies exactly the declared rules.
            _replace_rules(ec2, gid, inputs.get("ingress"), inputs.get("egress"))
        except ClientError as exc:
            raise aws_error(f"creating Security Group ({name})", exc) from None
        [group] = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"]
        return gid, {**inputs, "id": gid, "name": name, "arn": _arn(ctx, "security-group", gid),
                     "ownerId": group.get("OwnerId", ACCOUNT_ID), "vpcId": group.get("VpcId", inputs.get("vpcId")),
                     "ingress": inputs.get("ingress") or [], "egress": inputs.get("egress") or [],
                     "revokeRulesOnDelete": inputs.get("revokeRulesOnDelete", False), "tagsAll": tags}

    def read(self, ctx, rid, state, inputs):
        listed = unless_gone(f"reading Security Group ({rid})",
                             lambda: client(ctx, "ec2").describe_security_groups(GroupIds=[rid])["SecurityGroups"],
                             "InvalidGroup.NotFound")
        if listed is None:
            return None
        [group] = listed
        state = {**state, "id": rid, "name": group["GroupName"], "description": group["Description"],
                 "vpcId": group.get("VpcId"), "ownerId": group.get("OwnerId"), "arn": _arn(ctx, "security-group", rid)}
        inputs = dict(inputs) if inputs else {"name": group["GroupName"], "description": group["Description"],
                                              "vpcId": group.get("VpcId")}
        read_tags(ctx, tags_from(group.get("Tags")), state, inputs)
        return state, inputs

    def update(self, ctx, rid, state, old_inputs, news):
        ec2 = client(ctx, "ec2")
        try:
            if news.get("ingress") != old_inputs.get("ingress") or news.get("egress") != old_inputs.get("egress"):
                _replace_rules(ec2, rid, news.get("ingress"), news.get("egress"))
            _set_tags(ec2, rid, state.get("tagsAll") or {}, tags_all(ctx, news))
        except ClientError as exc:
            raise aws_error(f"updating Security Group ({rid})", exc) from None
        return {**state, **news, "ingress": news.get("ingress") or [], "egress": news.get("egress") or [],
                "tagsAll": tags_all(ctx, news)}

    def delete(self, ctx, rid, state):
        with gone_is_deleted(f"deleting Security Group ({rid})", "InvalidGroup.NotFound"):
            client(ctx, "ec2").delete_security_group(GroupId=rid)


# ----------------------------------------------------------------------------- key pairs

class KeyPair(AwsResource):
    token = "aws:ec2/keyPair:KeyPair"
    computed = ("id", "arn", "keyName", "keyPairId", "fingerprint", "keyType", "tagsAll")

    def create(self, ctx, inputs):
        ec2 = client(ctx, "ec2")
        name = self.resolved_name(inputs, "keyName", "keyNamePrefix")
        tags = tags_all(ctx, inputs)
        args = {"KeyName": name, "PublicKeyMaterial": inputs["publicKey"].encode()}
        if tags:
            args["TagSpecifications"] = [{"ResourceType": "key-pair", "Tags": tag_list(tags)}]
        try:
            found = ec2.import_key_pair(**args)
        except ClientError as exc:
            raise aws_error(f"importing EC2 Key Pair ({name})", exc) from None
        return name, {**inputs, "id": name, "keyName": name, "keyPairId": found.get("KeyPairId"),
                      "fingerprint": found.get("KeyFingerprint"), "arn": _arn(ctx, "key-pair", name),
                      "keyType": inputs["publicKey"].split()[0].replace("ssh-", ""), "tagsAll": tags}

    def read(self, ctx, rid, state, inputs):
        listed = unless_gone(f"reading EC2 Key Pair ({rid})",
                             lambda: client(ctx, "ec2").describe_key_pairs(KeyNames=[rid])["KeyPairs"],
                             "InvalidKeyPair.NotFound")
        if listed is None:
            return None
        [found] = listed
        state = {**state, "id": rid, "keyName": rid, "keyPairId": found.get("KeyPairId"),
                 "fingerprint": found.get("KeyFingerprint")}
        inputs = dict(inputs) if inputs else {"keyName": rid, "publicKey": state.get("publicKey")}
        read_tags(ctx, tags_from(found.get("Tags")), state, inputs)
        return state, inputs

    def update(self, ctx, rid, state, old_inputs, news):
        key_pair_id = state.get("keyPairId") or rid
        try:
            _set_tags(client(ctx, "ec2"), key_pair_id, state.get("tagsAll") or {}, tags_all(ctx, news))
        except ClientError as exc:
            raise aws_error(f"updating EC2 Key Pair ({rid}) tags", exc) from None
        return {**state, **news, "tagsAll": tags_all(ctx, news)}

    def delete(self, ctx, rid, state):
        with gone_is_deleted(f"deleting EC2 Key Pair ({rid})", "InvalidKeyPair.NotFound"):
            client(ctx, "ec2").delete_key_pair(KeyName=rid)


# ----------------------------------------------------------------------------- instances

INSTANCE_GONE = ("shutting-down", "terminated")


def _describe_instance(ec2, rid: str) -> dict | None:
    try:
        reservations = ec2.describe_instances(InstanceIds=[rid])["Reservations"]
    except ClientError as exc:
        if is_not_found(exc, "InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
            return None
        raise
    found = [i for r in reservations for i in r["Instances"]]
    if not found or found[0]["State"]["Name"] in INSTANCE_GONE:
        return None
    return found[0]


def _instance_outputs(ctx: Context, found: dict) -> dict:
    return {"id": found["InstanceId"], "arn": _arn(ctx, "instance", found["InstanceId"]),
            "privateIp": found.get("PrivateIpAddress"), "privateDns": found.get("PrivateDnsName", ""),
            "publicIp": found.get("PublicIpAddress", ""), "publicDns": found.get("PublicDnsName", ""),
            "instanceState": found["State"]["Name"], "subnetId": found.get("SubnetId"),
            "availabilityZone": found.get("Placement", {}).get("AvailabilityZone"),
            "primaryNetworkInterfaceId": next((n["NetworkInterfaceId"] for n in found.get("NetworkInterfaces", [])
                                               if n.get("Attachment", {}).get("DeviceIndex") == 0), ""),
            "vpcSecurityGroupIds": sorted(g["GroupId"] for g in found.get("SecurityGroups", [])),
            "instanceType": found.get("InstanceType"), "ami": found.get("ImageId"),
            "keyName": found.get("KeyName", "")}


class Instance(AwsResource):
    token = "aws:ec2/instance:Instance"
    computed = ("id", "arn", "privateIp", "privateDns", "publicIp", "publicDns", "instanceState", "subnetId",
                "availabilityZone", "primaryNetworkInterfaceId", "vpcSecurityGroupIds", "tagsAll", "keyName",
                "ami", "instanceType", "securityGroups", "outpostArn", "passwordData", "ipv6Addresses")

    def create(self, ctx, inputs):
        ec2 = client(ctx, "ec2")
        args = {"ImageId": inputs.get("ami"), "MinCount": 1, "MaxCount": 1,
                "InstanceType": inputs.get("instanceType") or "t3.micro"}
        for prop, arg in (("subnetId", "SubnetId"), ("privateIp", "PrivateIpAddress"), ("keyName", "KeyName"),
                          ("userData", "UserData")):
            if inputs.get(prop):
                args[arg] = inputs[prop]
        if inputs.get("vpcSecurityGroupIds"):
            args["SecurityGroupIds"] = list(inputs["vpcSecurityGroupIds"])
        if inputs.get("iamInstanceProfile"):
            args["IamInstanceProfile"] = {"Name": inputs["iamInstanceProfile"]}
        if inputs.get("availabilityZone"):
            args["Placement"] = {"AvailabilityZone": inputs["availabilityZone"]}
        if inputs.get("monitoring") is not None:
            args["Monitoring"] = {"Enabled": bool(inputs["monitoring"])}
        meta = inputs.get("metadataOptions") or {}
        if meta:
            args["MetadataOptions"] = {k: v for k, v in {
                "HttpEndpoint": meta.get("httpEndpoint"), "HttpTokens": meta.get("httpTokens"),
                "HttpPutResponseHopLimit": meta.get("httpPutResponseHopLimit")}.items() if v is not None}
        tags = tags_all(ctx, inputs)
        if tags:
            args["TagSpecifications"] = [{"ResourceType": "instance", "Tags": tag_list(tags)}]
        try:
            if args.get("SubnetId") and args.get("PrivateIpAddress"):
                # moto frees a terminated instance's private IP only when the object is garbage-collected
                # (never, on a server), so a replacement on the same static address would fail; an ENI made
                # here and deleted with the instance gives the address back, as AWS does on termination.
                eni = ec2.create_network_interface(
                    SubnetId=args.pop("SubnetId"), PrivateIpAddress=args.pop("PrivateIpAddress"),
                    Groups=args.pop("SecurityGroupIds", []))["NetworkInterface"]["NetworkInterfaceId"]
                args["NetworkInterfaces"] = [{"DeviceIndex": 0, "NetworkInterfaceId": eni}]
            rid = ec2.run_instances(**args)["Instances"][0]["InstanceId"]
        except ClientError as exc:
            raise aws_error("creating EC2 Instance", exc) from None
        found = _describe_instance(ec2, rid)
        outputs = {**inputs, **_instance_outputs(ctx, found), "tagsAll": tags}
        try:
            hook.run("create", self._hook_document(ctx, outputs))
        except ProviderError:
            self._terminate(ec2, rid, outputs)     # nothing half-made survives a failed create
            raise
        return rid, outputs

    @staticmethod
    def _terminate(ec2, rid: str, state: dict) -> None:
        ec2.terminate_instances(InstanceIds=[rid])
        eni = state.get("primaryNetworkInterfaceId")
        if eni:
            try:
                ec2.delete_network_interface(NetworkInterfaceId=eni)
            except ClientError as exc:
                if not is_not_found(exc, "InvalidNetworkInterfaceID.NotFound"):
                    raise

    @staticmethod
    def _hook_document(ctx: Context, state: dict) -> dict:
        return {"instanceId": state["id"], "privateIp": state.get("privateIp"), "userData": state.get("userData"),
                "tags": state.get("tagsAll") or state.get("tags") or {}, "name": ctx.name, "urn": ctx.urn}

    def read(self, ctx, rid, state, inputs):
        ec2 = client(ctx, "ec2")
        try:
            found = _describe_instance(ec2, rid)
        except ClientError as exc:
            raise aws_error(f"reading EC2 Instance ({rid})", exc) from None
        if found is None:
            return None
        state = {**state, **_instance_outputs(ctx, found)}
        inputs = dict(inputs) if inputs else {k: state[k] for k in ("ami", "instanceType", "subnetId", "privateIp",
                                                                     "keyName", "vpcSecurityGroupIds") if state.get(k)}
        read_tags(ctx, tags_from(found.get("Tags")), state, inputs)
        return state, inputs

    def update(self, ctx, rid, state, old_inputs, news):
        ec2 = client(ctx, "ec2")
        try:
            if news.get("instanceType") and news.get("instanceType") != old_inputs.get("instanceType"):
                ec2.modify_instance_attribute(InstanceId=rid, InstanceType={"Value": news["instanceType"]})
            if news.get("vpcSecurityGroupIds") and news["vpcSecurityGroupIds"] != old_inputs.get("vpcSecurityGroupIds"):
                ec2.modify_instance_attribute(InstanceId=rid, Groups=list(news["vpcSecurityGroupIds"]))
            if news.get("userData") != old_inputs.get("userData") and news.get("userData"):
                ec2.modify_instance_attribute(InstanceId=rid, UserData={"Value": news["userData"].encode()})
            _set_tags(ec2, rid, state.get("tagsAll") or {}, tags_all(ctx, news))
            found = _describe_instance(ec2, rid)
        except ClientError as exc:
            raise aws_error(f"updating EC2 Instance ({rid})", exc) from None
        if found is None:
            raise ProviderError(f"updating EC2 Instance ({rid}): the instance no longer exists (run pulumi refresh)")
        return {**state, **news, **_instance_outputs(ctx, found), "tagsAll": tags_all(ctx, news)}

    def delete(self, ctx, rid, state):
        ec2 = client(ctx, "ec2")
        # The hook runs first: if the fleet cannot stop the host, the instance stays in moto and in the state.
        hook.run("delete", self._hook_document(ctx, {**state, "id": rid}))
        with gone_is_deleted(f"terminating EC2 Instance ({rid})", "InvalidInstanceID.NotFound"):
            self._terminate(ec2, rid, state)


# ----------------------------------------------------------------------------- elastic IPs

def _describe_address(ec2, **query) -> dict | None:
    try:
        found = ec2.describe_addresses(**query)["Addresses"]
    except ClientError as exc:
        if is_not_found(exc, "InvalidAllocationID.NotFound", "InvalidAssociationID.NotFound"):
            return None
        raise
    return found[0] if found else None


def _address_outputs(ctx: Context, address: dict) -> dict:
    allocation = address["AllocationId"]
    return {"id": allocation, "allocationId": allocation, "publicIp": address.get("PublicIp"),
            "publicDns": f"ec2-{address.get('PublicIp', '').replace('.', '-')}.compute-1.amazonaws.com",
            "associationId": address.get("AssociationId", ""), "instance": address.get("InstanceId", ""),
            "networkInterface": address.get("NetworkInterfaceId", ""),
            "privateIp": address.get("PrivateIpAddress", ""), "domain": address.get("Domain", "vpc"),
            "arn": _arn(ctx, "elastic-ip", allocation)}


EIP_ADDRESS_ENV = "ECOM_STANDIN_EIP_ADDRESS"


class Eip(AwsResource):
    token = "aws:ec2/eip:Eip"
    computed = ("id", "allocationId", "publicIp", "publicDns", "associationId", "instance", "networkInterface",
                "privateIp", "privateDns", "domain", "arn", "tagsAll", "carrierIp", "customerOwnedIp", "ptrRecord",
                "publicIpv4Pool")

    def create(self, ctx, inputs):
        ec2 = client(ctx, "ec2")
        tags = tags_all(ctx, inputs)
        try:
            args = {"Domain": inputs.get("domain") or "vpc"}
            # The local fleet serves the EIP on a bridge address of its own (fleet:eipAddress): it names it here.
            address = inputs.get("address") or os.environ.get(EIP_ADDRESS_ENV)
            if address:
                args["Address"] = address
            allocation = ec2.allocate_address(**args)["AllocationId"]
            if tags:
                ec2.create_tags(Resources=[allocation], Tags=tag_list(tags))
            if inputs.get("instance"):
                ec2.associate_address(AllocationId=allocation, InstanceId=inputs["instance"])
            address = _describe_address(ec2, AllocationIds=[allocation])
        except ClientError as exc:
            raise aws_error("creating EC2 EIP", exc) from None
        return allocation, {**inputs, **_address_outputs(ctx, address), "tagsAll": tags}

    def read(self, ctx, rid, state, inputs):
        try:
            address = _describe_address(client(ctx, "ec2"), AllocationIds=[rid])
        except ClientError as exc:
            raise aws_error(f"reading EC2 EIP ({rid})", exc) from None
        if address is None:
            return None
        # `instance` is Optional+Computed: where keepalived moved the address shows in the outputs only.
        state = {**state, **_address_outputs(ctx, address)}
        inputs = dict(inputs) if inputs else {"domain": state["domain"]}
        read_tags(ctx, tags_from(address.get("Tags")), state, inputs)
        return state, inputs

    def update(self, ctx, rid, state, old_inputs, news):
        ec2 = client(ctx, "ec2")
        try:
            if news.get("instance") and news.get("instance") != old_inputs.get("instance"):
                ec2.associate_address(AllocationId=rid, InstanceId=news["instance"], AllowReassociation=True)
            _set_tags(ec2, rid, state.get("tagsAll") or {}, tags_all(ctx, news))
            address = _describe_address(ec2, AllocationIds=[rid])
        except ClientError as exc:
            raise aws_error(f"updating EC2 EIP ({rid})", exc) from None
        return {**state, **news, **_address_outputs(ctx, address), "tagsAll": tags_all(ctx, news)}

    def delete(self, ctx, rid, state):
        ec2 = client(ctx, "ec2")
        try:
            address = _describe_address(ec2, AllocationIds=[rid])
            if address is None:
                return
            if address.get("AssociationId"):     # terraform disassociates before releasing
                ec2.disassociate_address(AssociationId=address["AssociationId"])
            ec2.release_address(AllocationId=rid)
        except ClientError as exc:
            raise aws_error(f"releasing EC2 EIP ({rid})", exc) from None


class EipAssociation(AwsResource):
    token = "aws:ec2/eipAssociation:EipAssociation"
    computed = ("id", "allocationId", "instanceId", "networkInterfaceId", "privateIpAddress", "publicIp")

    def create(self, ctx, inputs):
        ec2 = client(ctx, "ec2")
        args = {"AllowReassociation": bool(inputs.get("allowReassociation", False))}
        for prop, arg in (("allocationId", "AllocationId"), ("instanceId", "InstanceId"),
                          ("networkInterfaceId", "NetworkInterfaceId"), ("privateIpAddress", "PrivateIpAddress"),
                          ("publicIp", "PublicIp")):
            if inputs.get(prop):
                args[arg] = inputs[prop]
        try:
            association = ec2.associate_address(**args)["AssociationId"]
            address = _describe_address(ec2, Filters=[{"Name": "association-id", "Values": [association]}])
        except ClientError as exc:
            raise aws_error("creating EC2 EIP Association", exc) from None
        return association, {**inputs, **self._outputs(association, address or {})}

    @staticmethod
    def _outputs(association: str, address: dict) -> dict:
        return {"id": association, "allocationId": address.get("AllocationId"),
                "instanceId": address.get("InstanceId", ""),
                "networkInterfaceId": address.get("NetworkInterfaceId", ""),
                "privateIpAddress": address.get("PrivateIpAddress", ""), "publicIp": address.get("PublicIp", "")}

    def read(self, ctx, rid, state, inputs):
        # ec2/ec2_eip_association.go Read: FindEIPByAssociationID; not found -> removed from state. A
        # re-association (keepalived) makes a new association id, so refresh drops this resource.
        try:
            address = _describe_address(client(ctx, "ec2"),
                                        Filters=[{"Name": "association-id", "Values": [rid]}])
        except ClientError as exc:
            raise aws_error(f"reading EC2 EIP Association ({rid})", exc) from None
        if address is None:
            return None
        state = {**state, **self._outputs(rid, address)}
        inputs = dict(inputs) if inputs else {"allocationId": state["allocationId"], "instanceId": state["instanceId"]}
        return state, inputs

    def update(self, ctx, rid, state, old_inputs, news):
        # Every argument is ForceNew: the engine replaces instead of updating.
        return {**state, **news}

    def delete(self, ctx, rid, state):
        with gone_is_deleted(f"deleting EC2 EIP Association ({rid})", "InvalidAssociationID.NotFound"):
            client(ctx, "ec2").disassociate_address(AssociationId=rid)


RESOURCES = (SecurityGroup(), KeyPair(), Instance(), Eip(), EipAssociation())
