"""S3 on moto: the bucket, its five settings resources, and the getBuckets/getObject/getObjects functions."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from ecom_infra import provider_rules

from ..server import Context
from .common import (
    AwsResource,
    aws_error,
    client,
    error_code,
    gone_is_deleted,
    read_tags,
    region,
    tag_list,
    tags_all,
    unless_gone,
)

# s3 hosted zone ids per region (terraform-provider-aws s3/hosted_zones.go); us-east-1 is enough here.
HOSTED_ZONE_IDS = {"us-east-1": "Z3AQBSTGFYJSTF"}


def _bucket_tags(s3, bucket: str) -> dict[str, str]:
    try:
        return {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    except ClientError as exc:
        if error_code(exc) == "NoSuchTagSet":
            return {}
        raise


def _exists(s3, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise


class Bucket(AwsResource):
    token = "aws:s3/bucket:Bucket"
    computed = ("id", "arn", "bucket", "bucketDomainName", "bucketRegionalDomainName", "hostedZoneId", "region",
                "tagsAll", "objectLockEnabled")

    def _outputs(self, ctx: Context, bucket: str) -> dict:
        where = region(ctx)
        return {"id": bucket, "bucket": bucket, "arn": f"arn:aws:s3:::{bucket}",
                "bucketDomainName": f"{bucket}.s3.amazonaws.com",
                "bucketRegionalDomainName": f"{bucket}.s3.{where}.amazonaws.com",
                "hostedZoneId": HOSTED_ZONE_IDS.get(where, ""), "region": where}

    def create(self, ctx, inputs):
        s3 = client(ctx, "s3")
        name = self.resolved_name(inputs, "bucket", "bucketPrefix")
        tags = tags_all(ctx, inputs)
        try:
            args = {"Bucket": name}
            if region(ctx) != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": region(ctx)}
            s3.create_bucket(**args)
            if tags:
                s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tag_list(tags)})
        except ClientError as exc:
            raise aws_error(f"creating S3 Bucket ({name})", exc) from None
        return name, {**inputs, **self._outputs(ctx, name), "forceDestroy": bool(inputs.get("forceDestroy", False)),
                      "objectLockEnabled": False, "tagsAll": tags}

    def read(self, ctx, rid, state, inputs):
        s3 = client(ctx, "s3")
        try:
            if not _exists(s3, rid):
                return None
            found_tags = _bucket_tags(s3, rid)
        except ClientError as exc:
            raise aws_error(f"reading S3 Bucket ({rid})", exc) from None
        state = {**state, **self._outputs(ctx, rid)}
        # An import starts from nothing: the inputs are what the bucket has (force_destroy defaults to false).
        inputs = dict(inputs) if inputs else {"bucket": rid, "forceDestroy": False, "tags": None}
        state.setdefault("forceDestroy", inputs.get("forceDestroy", False))
        read_tags(ctx, found_tags, state, inputs)
        return state, inputs

    def update(self, ctx, rid, state, old_inputs, news):
        s3 = client(ctx, "s3")
        new_tags = tags_all(ctx, news)
        try:
            if new_tags != (state.get("tagsAll") or {}):
                if new_tags:
                    s3.put_bucket_tagging(Bucket=rid, Tagging={"TagSet": tag_list(new_tags)})
                else:
                    s3.delete_bucket_tagging(Bucket=rid)
        except ClientError as exc:
            raise aws_error(f"updating S3 Bucket ({rid}) tags", exc) from None
        return {**state, **news, "tagsAll": new_tags}

    def delete(self, ctx, rid, state):
        s3 = client(ctx, "s3")
        with gone_is_deleted(f"deleting S3 Bucket ({rid})"):
            if state.get("forceDestroy"):
                for page in s3.get_paginator("list_object_versions").paginate(Bucket=rid):
                    items = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                             for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                    if items:
                        s3.delete_objects(Bucket=rid, Delete={"Objects": items})
            s3.delete_bucket(Bucket=rid)


class BucketSetting(AwsResource):
    """One of the bucket_* configuration resources: id = bucket name, put on create/update, read back."""

    computed = ("id",)
    missing_codes: tuple[str, ...] = ()
    what = ""

    def put(self, s3, bucket: str, inputs: dict) -> None:
        raise NotImplementedError

    def get(self, s3, bucket: str) -> dict:
        """The setting's inputs as S3 holds them now."""
        raise NotImplementedError

    def remove(self, s3, bucket: str) -> None:
        raise NotImplementedError

    def create(self, ctx, inputs):
        bucket = inputs["bucket"]
        try:
            self.put(client(ctx, "s3"), bucket, inputs)
        except ClientError as exc:
            raise aws_error(f"creating S3 Bucket ({bucket}) {self.what}", exc) from None
        return bucket, {**inputs, "id": bucket}

    def read(self, ctx, rid, state, inputs):
        found = unless_gone(f"reading S3 Bucket ({rid}) {self.what}",
                            lambda: self.get(client(ctx, "s3"), rid), *self.missing_codes)
        if found is None:
            return None
        state = {**state, **found, "id": rid, "bucket": rid}
        inputs = {**(inputs or {}), **found, "bucket": rid}
        return state, inputs

    def update(self, ctx, rid, state, old_inputs, news):
        try:
            self.put(client(ctx, "s3"), rid, news)
        except ClientError as exc:
            raise aws_error(f"updating S3 Bucket ({rid}) {self.what}", exc) from None
        return {**state, **news, "id": rid}

    def delete(self, ctx, rid, state):
        with gone_is_deleted(f"deleting S3 Bucket ({rid}) {self.what}", *self.missing_codes):
            self.remove(client(ctx, "s3"), rid)


class BucketPublicAccessBlock(BucketSetting):
    token = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
    missing_codes = ("NoSuchPublicAccessBlockConfiguration",)
    what = "Public Access Block"
    FIELDS = {"blockPublicAcls": "BlockPublicAcls", "blockPublicPolicy": "BlockPublicPolicy",
              "ignorePublicAcls": "IgnorePublicAcls", "restrictPublicBuckets": "RestrictPublicBuckets"}

    def put(self, s3, bucket, inputs):
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            aws: bool(inputs.get(prop, False)) for prop, aws in self.FIELDS.items()})

    def get(self, s3, bucket):
        found = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        return {prop: bool(found.get(aws, False)) for prop, aws in self.FIELDS.items()}

    def remove(self, s3, bucket):
        s3.delete_public_access_block(Bucket=bucket)


class BucketOwnershipControls(BucketSetting):
    token = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
    missing_codes = ("OwnershipControlsNotFoundError",)
    what = "Ownership Controls"

    def put(self, s3, bucket, inputs):
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
            "Rules": [{"ObjectOwnership": inputs["rule"]["objectOwnership"]}]})

    def get(self, s3, bucket):
        rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
        return {"rule": {"objectOwnership": rules[0]["ObjectOwnership"]}}

    def remove(self, s3, bucket):
        s3.delete_bucket_ownership_controls(Bucket=bucket)


class BucketVersioning(BucketSetting):
    token = "aws:s3/bucketVersioning:BucketVersioning"
    what = "Versioning"

    def put(self, s3, bucket, inputs):
        config = inputs["versioningConfiguration"]
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": config["status"]})

    def get(self, s3, bucket):
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
        if not status:
            # s3/bucket_versioning.go: a bucket that never had versioning reads as "Disabled".
            status = "Disabled"
        return {"versioningConfiguration": {"status": status}}

    def remove(self, s3, bucket):
        # s3/bucket_versioning.go Delete: versioning cannot be removed, only suspended.
        if s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})


class BucketServerSideEncryptionConfiguration(BucketSetting):
    token = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    missing_codes = ("ServerSideEncryptionConfigurationNotFoundError",)
    what = "Server-side Encryption Configuration"

    def put(self, s3, bucket, inputs):
        rules = []
        for rule in inputs["rules"]:
            default = rule.get("applyServerSideEncryptionByDefault") or {}
            item = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": default.get("sseAlgorithm", "AES256")}}
            if default.get("kmsMasterKeyId"):
                item["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] = default["kmsMasterKeyId"]
            if rule.get("bucketKeyEnabled") is not None:
                item["BucketKeyEnabled"] = bool(rule["bucketKeyEnabled"])
            rules.append(item)
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})

    def get(self, s3, bucket):
        found = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        rules = []
        for rule in found:
            default = rule.get("ApplyServerSideEncryptionByDefault", {})
            item = {"applyServerSideEncryptionByDefault": {"sseAlgorithm": default.get("SSEAlgorithm")}}
            if default.get("KMSMasterKeyID"):
                item["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] = default["KMSMasterKeyID"]
            if "BucketKeyEnabled" in rule:
                item["bucketKeyEnabled"] = bool(rule["BucketKeyEnabled"])
            rules.append(item)
        return {"rules": rules}

    def remove(self, s3, bucket):
        s3.delete_bucket_encryption(Bucket=bucket)


class BucketPolicy(BucketSetting):
    token = "aws:s3/bucketPolicy:BucketPolicy"
    missing_codes = ("NoSuchBucketPolicy",)
    what = "Policy"

    def put(self, s3, bucket, inputs):
        s3.put_bucket_policy(Bucket=bucket, Policy=inputs["policy"])

    def read(self, ctx, rid, state, inputs):
        found = super().read(ctx, rid, state, inputs)
        if found and _same_json(state.get("policy"), found[0]["policy"]):
            found[0]["policy"] = found[1]["policy"] = state["policy"]     # same document, other spacing
        return found

    def get(self, s3, bucket):
        return {"policy": s3.get_bucket_policy(Bucket=bucket)["Policy"]}

    def remove(self, s3, bucket):
        s3.delete_bucket_policy(Bucket=bucket)


def _same_json(left: str | None, right: str | None) -> bool:
    import json  # noqa: PLC0415

    try:
        return json.loads(left or "null") == json.loads(right or "null")
    except ValueError:
        return False


# ----------------------------------------------------------------------------- functions

def _s3(provider) -> Any:
    return client(Context(provider), "s3")


def get_buckets(provider, args: dict) -> dict:
    prefix = args.get("prefix") or ""
    where = region(Context(provider))
    found = _s3(provider).list_buckets().get("Buckets", [])
    buckets = [{"name": b["Name"], "arn": f"arn:aws:s3:::{b['Name']}", "bucketRegion": where,
                "creationDate": b["CreationDate"].isoformat() if hasattr(b["CreationDate"], "isoformat") else ""}
               for b in found if b["Name"].startswith(prefix)]
    return {"buckets": buckets, "prefix": args.get("prefix"), "id": where}


def get_objects(provider, args: dict) -> dict:
    bucket = args["bucket"]
    query = {"Bucket": bucket, "MaxKeys": int(args.get("maxKeys") or 1000)}
    for prop, arg in (("prefix", "Prefix"), ("delimiter", "Delimiter"), ("startAfter", "StartAfter"),
                      ("encodingType", "EncodingType")):
        if args.get(prop):
            query[arg] = args[prop]
    try:
        listing = _s3(provider).list_objects_v2(**query)
    except ClientError as exc:
        raise aws_error(f"listing S3 Bucket ({bucket}) Objects", exc) from None
    contents = listing.get("Contents", [])
    return {**args, "bucket": bucket, "keys": [o["Key"] for o in contents],
            "commonPrefixes": [p["Prefix"] for p in listing.get("CommonPrefixes", [])],
            "owners": [o.get("Owner", {}).get("ID", "") for o in contents if args.get("fetchOwner")],
            "requestCharged": "", "id": bucket}


def get_object(provider, args: dict) -> dict:
    bucket, key = args["bucket"], args["key"]
    query = {"Bucket": bucket, "Key": key}
    if args.get("versionId"):
        query["VersionId"] = args["versionId"]
    try:
        obj = _s3(provider).get_object(**query)
    except ClientError as exc:
        # s3/object_data_source.go: "reading S3 Bucket (%s) Object (%s): %s"
        raise aws_error(f"reading S3 Bucket ({bucket}) Object ({key})", exc) from None
    data = obj["Body"].read()
    content_type = obj.get("ContentType") or "binary/octet-stream"
    result = provider_rules.get_object_result(bucket, key, data, content_type, args.get("downloadBody"))
    return {**args, **result, "id": f"{bucket}/{key}", "etag": obj.get("ETag", ""),
            "versionId": obj.get("VersionId", ""), "metadata": obj.get("Metadata", {}),
            "lastModified": (obj["LastModified"].strftime("%a, %d %b %Y %H:%M:%S GMT")
                             if obj.get("LastModified") else ""),
            "serverSideEncryption": obj.get("ServerSideEncryption", ""),
            "storageClass": obj.get("StorageClass", "STANDARD"),
            "cacheControl": obj.get("CacheControl", ""), "contentEncoding": obj.get("ContentEncoding", ""),
            "contentDisposition": obj.get("ContentDisposition", ""), "contentLanguage": obj.get("ContentLanguage", ""),
            "expires": "", "websiteRedirectLocation": obj.get("WebsiteRedirectLocation", "")}


RESOURCES = (Bucket(), BucketPublicAccessBlock(), BucketOwnershipControls(), BucketVersioning(),
             BucketServerSideEncryptionConfiguration(), BucketPolicy())
FUNCTIONS: dict[str, Callable] = {
    "aws:s3/getBuckets:getBuckets": get_buckets,
    "aws:s3/getObjects:getObjects": get_objects,
    "aws:s3/getObject:getObject": get_object,
}
