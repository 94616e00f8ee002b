"""What every AWS stand-in resource shares: the clients on moto, tags, names made from a prefix, errors."""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from ..server import UNKNOWN, Context, ProviderError, Resource

ACCOUNT_ID = "123456789012"            # moto's default account
ENDPOINT_ENV = "ECOM_STANDIN_AWS_ENDPOINT"
_counter = itertools.count(1)
_clients_lock = threading.Lock()


def prefixed_unique_id(prefix: str) -> str:
    """terraform-plugin-sdk helper/id.PrefixedUniqueId: prefix + UTC timestamp to 1/10000 s + 8-hex counter (26)."""
    now = time.time()
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now)) + f"{int(now * 10000) % 10000:04d}"
    return f"{prefix}{stamp}{next(_counter):08x}"


def endpoint_for(config: dict[str, Any], service: str) -> str:
    """The provider's `endpoints` entry for `service`; a stand-in never talks to real AWS."""
    for entry in config.get("endpoints") or []:
        if isinstance(entry, dict) and entry.get(service):
            return entry[service]
    if os.environ.get(ENDPOINT_ENV):
        return os.environ[ENDPOINT_ENV]
    raise ProviderError(f"the AWS stand-in has no endpoint for {service}: set `endpoints` on the aws provider "
                        f"(ecom-infra:awsEndpoint) or {ENDPOINT_ENV}; it never calls real AWS")


def client(ctx: Context, service: str):
    provider = ctx.provider
    cache = provider.__dict__.setdefault("_clients", {})
    with _clients_lock:
        if service not in cache:
            import boto3  # noqa: PLC0415 - slow import, only when a resource is really touched
            from botocore.config import Config  # noqa: PLC0415

            config = provider.config
            # moto's first EC2 call loads its AMI catalogue (seconds): generous read timeout.
            cache[service] = boto3.client(
                service, endpoint_url=endpoint_for(config, service), region_name=region(ctx),
                aws_access_key_id=config.get("accessKey") or "standin",
                aws_secret_access_key=config.get("secretKey") or "standin",
                config=Config(connect_timeout=5, read_timeout=120, retries={"max_attempts": 2},
                              s3={"addressing_style": "path"}))
        return cache[service]


def region(ctx: Context) -> str:
    return ctx.provider.config.get("region") or os.environ.get("AWS_REGION") or "us-east-1"


def error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def is_not_found(exc: Exception, *codes: str) -> bool:
    code = error_code(exc)
    return code in codes or code.endswith(".NotFound") or code in ("NoSuchEntity", "NoSuchBucket", "404")


def aws_error(action: str, exc: Exception) -> ProviderError:
    """terraform-provider-aws wording: `<action>: operation error ...: <code>: <message>`."""
    response = getattr(exc, "response", {}).get("Error", {})
    detail = f"{response.get('Code', type(exc).__name__)}: {response.get('Message', exc)}"
    return ProviderError(f"{action}: {detail}")


T = TypeVar("T")


def unless_gone(action: str, call: Callable[[], T], *codes: str) -> T | None:
    """For reads: the call's answer, or None when the object is gone (refresh then drops it)."""
    try:
        return call()
    except ClientError as exc:
        if is_not_found(exc, *codes):
            return None
        raise aws_error(action, exc) from None


@contextmanager
def gone_is_deleted(action: str, *codes: str) -> Iterator[None]:
    """For deletes: an object already gone counts as deleted; any other AWS error is the provider's error."""
    try:
        yield
    except ClientError as exc:
        if not is_not_found(exc, *codes):
            raise aws_error(action, exc) from None


# ----------------------------------------------------------------------------- tags

def default_tags(ctx: Context) -> dict[str, str]:
    return dict(((ctx.provider.config.get("defaultTags") or {}).get("tags")) or {})


def tags_all(ctx: Context, inputs: dict) -> dict[str, str]:
    """The provider's `tagsAll`: default tags overlaid by the resource's own (pulumi-aws tags.go)."""
    return {**default_tags(ctx), **(inputs.get("tags") or {})}


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in sorted(tags.items())]


def retag(old: dict[str, str], new: dict[str, str], untag, tag) -> None:
    """Make an object's tags `new`: untag(keys) drops the keys that went, tag(tag_list) puts the rest."""
    gone = [k for k in old if k not in new]
    if gone:
        untag(gone)
    if new:
        tag(tag_list(new))


def tags_from(items: list[dict] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or [] if not t["Key"].startswith("aws:")}


def read_tags(ctx: Context, found: dict[str, str], state: dict, inputs: dict) -> None:
    """Refresh `tags`/`tagsAll` from what AWS holds, keeping default tags out of `tags`."""
    defaults = default_tags(ctx)
    own = {k: v for k, v in found.items() if k in (inputs.get("tags") or {}) or defaults.get(k) != v}
    state["tagsAll"] = found
    state["tags"] = own or None
    if "tags" in inputs:
        inputs["tags"] = own or None


class AwsResource(Resource):
    """Shared create/update shape: outputs = inputs + what AWS computed."""

    def planned(self, ctx, inputs):
        # pulumi-aws computes tagsAll from the provider's default tags before anything exists.
        planned = super().planned(ctx, inputs)
        if "tagsAll" in self.computed and not any(v is UNKNOWN for v in (inputs.get("tags") or {}).values()) \
                and inputs.get("tags") is not UNKNOWN:
            planned["tagsAll"] = tags_all(ctx, inputs)
        return planned

    def resolved_name(self, inputs: dict, prop: str, prefix_prop: str | None) -> str:
        if inputs.get(prop):
            return inputs[prop]
        if prefix_prop and inputs.get(prefix_prop):
            return prefixed_unique_id(inputs[prefix_prop])
        # pulumi-aws autonames in Check; a program that bypassed Check gets terraform's default prefix.
        return prefixed_unique_id("terraform-")
