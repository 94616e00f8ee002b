"""The sha bucket: where CI records which commit each environment runs.

Exactly one stack owns the bucket (`shaBucket.owner: true`, production by default): it
creates it protected and retained on delete, so destroying any stack never deletes the
deploy history. Every stack reads its environment's shas from `sha_number.yml` at run
time with `aws.s3.get_object`; the object itself is never a Pulumi resource, so
`pulumi up` cannot overwrite what CI wrote.
"""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from ecom_infra import shafile
from ecom_infra.errors import ConfigError
from ecom_infra.settings import Settings


class ShaBucket(pulumi.ComponentResource):
    """The versioned, encrypted, private, TLS-only bucket that holds `sha_number.yml`."""

    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ecom:storage:ShaBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)
        bucket_name = settings.sha_bucket.name

        self.bucket = aws.s3.Bucket(name, bucket=bucket_name, force_destroy=False,
                                    tags={"Role": "sha-bucket"}, opts=keep)
        aws.s3.BucketPublicAccessBlock(f"{name}-public-access", bucket=self.bucket.id,
                                       block_public_acls=True, block_public_policy=True,
                                       ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=self.bucket.id,
                                       rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        # The object's versions are the deploy history (`ecom-deploy history`, `rollback`).
        aws.s3.BucketVersioning(f"{name}-versioning", bucket=self.bucket.id,
                                versioning_configuration={"status": "Enabled"}, opts=keep)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"},
                    "bucket_key_enabled": True}], opts=child)
        aws.s3.BucketPolicy(f"{name}-tls-only", bucket=self.bucket.id,
                            policy=self.bucket.arn.apply(tls_only_policy), opts=child)
        self.register_outputs({"bucket": self.bucket.bucket})


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
    invoke_opts = pulumi.InvokeOptions(provider=provider) if provider else None
    # List first: a failed invoke fails the whole run in the Python SDK even when caught,
    # and a missing file is a normal state (a new environment), not an error.
    listing = aws.s3.get_objects(bucket=bucket, prefix=key, max_keys=10, opts=invoke_opts)
    text = ""
    if key in (listing.keys or []):
        text = aws.s3.get_object(bucket=bucket, key=key, opts=invoke_opts).body
    if text is None:
        raise ConfigError(f"s3://{bucket}/{key}", "has no readable body: upload it with a text content type "
                                                    "(ecom-deploy stage does)", "Content-Type: text/yaml")
    shas = shafile.parse(text, apps, source=f"s3://{bucket}/{key}",   # other stacks' entries: theirs
                         environment=settings.environment).get(settings.environment, {})
    result_map: dict[str, str | None] = {app: shas.get(app) for app in apps}
    missing = [app for app, sha in result_map.items() if sha is None]
    if missing:
        pulumi.log.warn(
            f"no release recorded for {', '.join(missing)} in {settings.environment} (s3://{bucket}/{key}): "
            f"servers are provisioned without a release; record one with `ecom-deploy stage --env "
            f"{settings.environment} --app {missing[0]} --branch <branch>`")
    return result_map
