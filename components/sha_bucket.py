"""The sha bucket: where CI records which commit each environment runs.

Exactly one stack owns the bucket (`shaBucket.owner: true`, production by default): it
creates it protected and retained on delete, so destroying any stack never deletes the
deploy history. Every stack reads its environment's shas from `sha_number.yml` at run
time with `aws.s3.get_object`; the object itself is never a Pulumi resource, so
`pulumi up` cannot overwrite what CI wrote.

First `up` of the owner stack: when the bucket already exists (the Chef tooling used it),
`shaBucket.adopt: true` imports it (`import_`) instead of creating it; its settings are then
written over whatever the old bucket had (each is a PUT, so no import is needed, and an
import of a setting the old bucket never had would fail). When the bucket does not exist yet,
the owner stack reads no sha file (nothing to read) instead of failing on the listing.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import pulumi
import pulumi_aws as aws

from ecom_infra import release, shafile
from ecom_infra.errors import ConfigError
from ecom_infra.settings import Settings


class ShaBucket(pulumi.ComponentResource):
    """The versioned, encrypted, private, TLS-only bucket that holds `sha_number.yml`."""

    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ecom:storage:ShaBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)
        bucket_name = settings.sha_bucket.name

        if settings.sha_bucket.adopt:
            # Imported as it is: an import whose inputs differ from the bucket fails, and the old
            # bucket has none of our tags; the next `up` without `adopt` tags it.
            keep = pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(import_=bucket_name,
                                                                             ignore_changes=["tags"]))
        self.bucket = aws.s3.Bucket(name, bucket=bucket_name, force_destroy=False,
                                    tags={"Role": "sha-bucket"}, opts=keep)
        keep = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)

        # S3 answers concurrent changes to one bucket's settings with OperationAborted ("A conflicting
        # conditional operation is currently in progress"), and the engine starts every resource whose
        # dependencies are met at once: each setting waits for the one before it.
        def after(previous: pulumi.Resource, base: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(depends_on=[previous]))

        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        ownership = aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=self.bucket.id,
                                                   rule={"object_ownership": "BucketOwnerEnforced"},
                                                   opts=after(public_access, child))
        # The object's versions are the deploy history (`ecom-deploy history`, `rollback`).
        versioning = aws.s3.BucketVersioning(f"{name}-versioning", bucket=self.bucket.id,
                                             versioning_configuration={"status": "Enabled"},
                                             opts=after(ownership, keep))
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"},
                    "bucket_key_enabled": True}], opts=after(versioning, child))
        policy = aws.s3.BucketPolicy(f"{name}-tls-only", bucket=self.bucket.id,
                                     policy=self.bucket.arn.apply(tls_only_policy), opts=after(encryption, child))
        # Every write of the sha file keeps a version, and `history` lists them newest first: old
        # ones expire so the listing stays short. Only our two objects (the bucket may hold CI's
        # other packages, whose versions are not ours to expire).
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=self.bucket.id,
            rules=lifecycle_rules(settings.sha_bucket.key,
                                  release.live_location(release.Location(bucket_name, settings.sha_bucket.key)).key,
                                  settings.sha_bucket.noncurrent_days, settings.sha_bucket.noncurrent_kept),
            opts=after(policy, child))
        self.register_outputs({"bucket": self.bucket.bucket})


def lifecycle_rules(sha_key: str, live: str, days: int, kept: int) -> list[Any]:
    """One rule per object: noncurrent versions expire `days` after they were replaced, except the
    newest `kept` of them (S3 expires a version only when both hold; kept 0: age alone)."""
    expiration: dict = {"noncurrent_days": days}
    if kept:
        expiration["newer_noncurrent_versions"] = kept
    return [{"id": f"expire-old-versions-{i}", "status": "Enabled", "filter": {"prefix": key},
             "noncurrent_version_expiration": dict(expiration)}
            for i, key in enumerate((sha_key, live), start=1)]


def tls_only_policy(bucket_arn: str) -> str:
    """Deny every request to the bucket that does not use TLS."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }, sort_keys=True)



def read_release_shas(settings: Settings, provider: pulumi.ProviderResource | None) -> dict[str, str | None]:
    """This environment's sha per app, read from the bucket at run time.

    A file or entry that does not exist yet (a new environment) is not an error: the
    app's servers are provisioned without a release and one warning says how to fix it.
    A malformed file or sha fails the run with one line naming the problem.
    """
    apps = [a.name for a in settings.apps]
    bucket, key = settings.sha_bucket.name, settings.sha_bucket.key
    source = f"s3://{bucket}/{key}"
    invoke_opts = pulumi.InvokeOptions(provider=provider) if provider else None
    # A failed invoke fails the whole run in the Python SDK even when caught, so nothing is read
    # that may not exist: the owner stack first asks whether its bucket exists yet (ListBuckets,
    # this account), then every stack lists the key before reading it.
    if settings.sha_bucket.owner and not _bucket_exists(bucket, invoke_opts):
        if settings.sha_bucket.adopt:
            raise ConfigError("ecom-infra:shaBucket.adopt", f"is true but s3://{bucket} does not exist in this "
                                                            "account: remove it and the stack creates the bucket")
        pulumi.log.warn(f"s3://{bucket} does not exist yet: this stack creates it; servers are provisioned "
                        "without a release until `ecom-deploy stage` records one")
        return {app: None for app in apps}
    listing = aws.s3.get_objects(bucket=bucket, prefix=key, max_keys=10, opts=invoke_opts)
    text = None
    if key in (listing.keys or []):
        # download_body: the provider fills `body` only for text content types (an object uploaded
        # as binary/octet-stream has an empty body); body_base64 holds the object whatever its type.
        obj = aws.s3.get_object(bucket=bucket, key=key, download_body="true", opts=invoke_opts)
        text = _decode(obj.body_base64, obj.content_type, source)
    # Other stacks' entries are theirs: this stack reads and checks only its own environment's.
    shas = (shafile.parse(text, apps, source=source, environment=settings.environment).get(settings.environment, {})
            if text is not None else {})
    result_map: dict[str, str | None] = {app: shas.get(app) for app in apps}
    missing = [app for app, sha in result_map.items() if sha is None]
    if missing:
        pulumi.log.warn(
            f"no release recorded for {', '.join(missing)} in {settings.environment} (s3://{bucket}/{key}): "
            f"servers are provisioned without a release; record one with `ecom-deploy stage --env "
            f"{settings.environment} --app {missing[0]} --branch <branch>`")
    return result_map


def _bucket_exists(bucket: str, invoke_opts: pulumi.InvokeOptions | None) -> bool:
    found = aws.s3.get_buckets(prefix=bucket, opts=invoke_opts)
    return any(b.name == bucket for b in (found.buckets or []))


def _decode(body_base64: str | None, content_type: str | None, source: str) -> str:
    """The sha file's text; an object that exists but cannot be read stops the run (never 'no releases')."""
    if not body_base64:
        raise ConfigError(source, f"exists but its content could not be read (content type {content_type!r}, "
                                  "no body): check the object and the reader's s3:GetObject permission")
    try:
        text = base64.b64decode(body_base64, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ConfigError(source, f"is not UTF-8 text ({exc.__class__.__name__})") from None
    if not text.strip():
        raise ConfigError(source, "is empty: a sha file lists at least one environment",
                          "staging: {ecom-platform: <40-hex sha>}")
    return text
