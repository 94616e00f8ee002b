"""IAM resources on moto: Role, RolePolicy, InstanceProfile."""
from __future__ import annotations

import json

from botocore.exceptions import ClientError

from .common import (
    AwsResource,
    aws_error,
    client,
    gone_is_deleted,
    read_tags,
    retag,
    tag_list,
    tags_all,
    tags_from,
    unless_gone,
)


def _iso(value) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value or "")


def _same_policy(text: str | None, found) -> bool:
    try:
        found = json.loads(found) if isinstance(found, str) else found
        return json.loads(text or "null") == found
    except ValueError:
        return False


class Role(AwsResource):
    token = "aws:iam/role:Role"
    computed = ("id", "arn", "name", "uniqueId", "createDate", "tagsAll", "path", "maxSessionDuration")

    def create(self, ctx, inputs):
        iam = client(ctx, "iam")
        name = self.resolved_name(inputs, "name", "namePrefix")
        args = {"RoleName": name, "AssumeRolePolicyDocument": inputs["assumeRolePolicy"],
                "Path": inputs.get("path") or "/", "MaxSessionDuration": int(inputs.get("maxSessionDuration") or 3600)}
        if inputs.get("description"):
            args["Description"] = inputs["description"]
        tags = tags_all(ctx, inputs)
        if tags:
            args["Tags"] = tag_list(tags)
        try:
            role = iam.create_role(**args)["Role"]
        except ClientError as exc:
            raise aws_error(f"creating IAM Role ({name})", exc) from None
        return name, {**inputs, **self._outputs(role), "forceDetachPolicies": inputs.get("forceDetachPolicies", False),
                      "tagsAll": tags}

    @staticmethod
    def _outputs(role: dict) -> dict:
        return {"id": role["RoleName"], "name": role["RoleName"], "arn": role["Arn"], "uniqueId": role["RoleId"],
                "createDate": _iso(role.get("CreateDate")), "path": role.get("Path", "/"),
                "maxSessionDuration": role.get("MaxSessionDuration", 3600)}

    def read(self, ctx, rid, state, inputs):
        role = unless_gone(f"reading IAM Role ({rid})", lambda: client(ctx, "iam").get_role(RoleName=rid)["Role"])
        if role is None:
            return None
        state = {**state, **self._outputs(role), "description": role.get("Description") or state.get("description")}
        found_policy = role.get("AssumeRolePolicyDocument")
        if not _same_policy(state.get("assumeRolePolicy"), found_policy):
            state["assumeRolePolicy"] = found_policy if isinstance(found_policy, str) else json.dumps(found_policy)
        inputs = dict(inputs) if inputs else {"name": rid, "assumeRolePolicy": state["assumeRolePolicy"]}
        if "assumeRolePolicy" in inputs:
            inputs["assumeRolePolicy"] = state["assumeRolePolicy"]
        read_tags(ctx, tags_from(role.get("Tags")), state, inputs)
        return state, inputs

    def update(self, ctx, rid, state, old_inputs, news):
        iam = client(ctx, "iam")
        try:
            if news.get("assumeRolePolicy") != old_inputs.get("assumeRolePolicy"):
                iam.update_assume_role_policy(RoleName=rid, PolicyDocument=news["assumeRolePolicy"])
            if (news.get("description"), news.get("maxSessionDuration")) != (old_inputs.get("description"),
                                                                              old_inputs.get("maxSessionDuration")):
                iam.update_role(RoleName=rid, Description=news.get("description") or "",
                                MaxSessionDuration=int(news.get("maxSessionDuration") or 3600))
            retag(state.get("tagsAll") or {}, tags_all(ctx, news),
                  lambda keys: iam.untag_role(RoleName=rid, TagKeys=keys),
                  lambda tags: iam.tag_role(RoleName=rid, Tags=tags))
        except ClientError as exc:
            raise aws_error(f"updating IAM Role ({rid})", exc) from None
        return {**state, **news, "tagsAll": tags_all(ctx, news)}

    def delete(self, ctx, rid, state):
        iam = client(ctx, "iam")
        with gone_is_deleted(f"deleting IAM Role ({rid})"):
            # iam/role.go deleteRole: the role leaves its instance profiles first.
            for profile in iam.list_instance_profiles_for_role(RoleName=rid)["InstanceProfiles"]:
                iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"], RoleName=rid)
            iam.delete_role(RoleName=rid)


class RolePolicy(AwsResource):
    token = "aws:iam/rolePolicy:RolePolicy"
    computed = ("id", "name")

    def create(self, ctx, inputs):
        name = self.resolved_name(inputs, "name", "namePrefix")
        role = inputs["role"]
        try:
            client(ctx, "iam").put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=inputs["policy"])
        except ClientError as exc:
            raise aws_error(f"putting IAM Role ({role}) Policy ({name})", exc) from None
        rid = f"{role}:{name}"       # iam/role_policy.go: <role>:<policy name>
        return rid, {**inputs, "id": rid, "name": name}

    def read(self, ctx, rid, state, inputs):
        role, _, name = rid.partition(":")
        found = unless_gone(f"reading IAM Role Policy ({rid})",
                            lambda: client(ctx, "iam").get_role_policy(RoleName=role, PolicyName=name))
        if found is None:
            return None
        state = {**state, "id": rid, "name": name, "role": role}
        if not _same_policy(state.get("policy"), found["PolicyDocument"]):
            doc = found["PolicyDocument"]
            state["policy"] = doc if isinstance(doc, str) else json.dumps(doc)
        inputs = {**(inputs or {"name": name, "role": role}), "policy": state["policy"]}
        return state, inputs

    def update(self, ctx, rid, state, old_inputs, news):
        role, _, name = rid.partition(":")
        try:
            client(ctx, "iam").put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=news["policy"])
        except ClientError as exc:
            raise aws_error(f"putting IAM Role ({role}) Policy ({name})", exc) from None
        return {**state, **news, "id": rid, "name": name}

    def delete(self, ctx, rid, state):
        role, _, name = rid.partition(":")
        with gone_is_deleted(f"deleting IAM Role Policy ({rid})"):
            client(ctx, "iam").delete_role_policy(RoleName=role, PolicyName=name)


class InstanceProfile(AwsResource):
    token = "aws:iam/instanceProfile:InstanceProfile"
    computed = ("id", "arn", "name", "uniqueId", "createDate", "tagsAll", "path")

    def create(self, ctx, inputs):
        iam = client(ctx, "iam")
        name = self.resolved_name(inputs, "name", "namePrefix")
        tags = tags_all(ctx, inputs)
        args = {"InstanceProfileName": name, "Path": inputs.get("path") or "/"}
        if tags:
            args["Tags"] = tag_list(tags)
        try:
            profile = iam.create_instance_profile(**args)["InstanceProfile"]
            if inputs.get("role"):
                iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=inputs["role"])
        except ClientError as exc:
            raise aws_error(f"creating IAM Instance Profile ({name})", exc) from None
        return name, {**inputs, "id": name, "name": name, "arn": profile["Arn"],
                      "uniqueId": profile["InstanceProfileId"],
                      "createDate": _iso(profile.get("CreateDate")), "path": profile.get("Path", "/"), "tagsAll": tags}

    def read(self, ctx, rid, state, inputs):
        profile = unless_gone(f"reading IAM Instance Profile ({rid})",
                              lambda: client(ctx, "iam").get_instance_profile(
                                  InstanceProfileName=rid)["InstanceProfile"])
        if profile is None:
            return None
        role = profile["Roles"][0]["RoleName"] if profile.get("Roles") else None
        state = {**state, "id": rid, "name": rid, "arn": profile["Arn"], "uniqueId": profile["InstanceProfileId"],
                 "role": role}
        inputs = {**(inputs or {"name": rid}), "role": role}
        read_tags(ctx, tags_from(profile.get("Tags")), state, inputs)
        return state, inputs

    def update(self, ctx, rid, state, old_inputs, news):
        iam = client(ctx, "iam")
        try:
            if news.get("role") != old_inputs.get("role"):
                if old_inputs.get("role"):
                    iam.remove_role_from_instance_profile(InstanceProfileName=rid, RoleName=old_inputs["role"])
                if news.get("role"):
                    iam.add_role_to_instance_profile(InstanceProfileName=rid, RoleName=news["role"])
            retag(state.get("tagsAll") or {}, tags_all(ctx, news),
                  lambda keys: iam.untag_instance_profile(InstanceProfileName=rid, TagKeys=keys),
                  lambda tags: iam.tag_instance_profile(InstanceProfileName=rid, Tags=tags))
        except ClientError as exc:
            raise aws_error(f"updating IAM Instance Profile ({rid})", exc) from None
        return {**state, **news, "tagsAll": tags_all(ctx, news)}

    def delete(self, ctx, rid, state):
        iam = client(ctx, "iam")
        with gone_is_deleted(f"deleting IAM Instance Profile ({rid})"):
            profile = iam.get_instance_profile(InstanceProfileName=rid)["InstanceProfile"]
            for role in profile.get("Roles", []):
                iam.remove_role_from_instance_profile(InstanceProfileName=rid, RoleName=role["RoleName"])
            iam.delete_instance_profile(InstanceProfileName=rid)


RESOURCES = (Role(), RolePolicy(), InstanceProfile())
