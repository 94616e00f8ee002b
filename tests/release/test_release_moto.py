"""moto, as our stand-in for S3, must behave like S3 where the release verbs depend on it."""
from __future__ import annotations

from urllib.parse import urlparse

import botocore.exceptions
import pytest


def error_code(excinfo: pytest.ExceptionInfo) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_the_server_listens_on_loopback_only(moto_endpoint):
    url = urlparse(moto_endpoint)
    assert url.scheme == "http"
    assert url.hostname == "127.0.0.1"
    assert url.port and url.port > 0


def test_if_none_match_star_refuses_to_overwrite_an_existing_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert error_code(excinfo) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"


def test_if_match_with_a_stale_etag_is_refused_and_the_current_one_accepted(s3, bucket):
    stale = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["ETag"]
    current = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["ETag"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="k", Body=b"lost update", IfMatch=stale)
    assert error_code(excinfo) == ("PreconditionFailed", 412)
    s3.put_object(Bucket=bucket, Key="k", Body=b"three", IfMatch=current)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"three"


def test_if_match_on_a_missing_object_is_no_such_key(s3, bucket):
    # Real S3 answers 404 here too; the store treats it as "changed since read".
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="gone", Body=b"x", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert error_code(excinfo)[0] == "NoSuchKey"


def test_versions_are_listed_newest_first_with_their_metadata(s3, bucket):
    for n in range(3):
        s3.put_object(Bucket=bucket, Key="k", Body=str(n).encode(), Metadata={"n": str(n)})
    versions = s3.list_object_versions(Bucket=bucket, Prefix="k")["Versions"]
    bodies = [s3.get_object(Bucket=bucket, Key="k", VersionId=v["VersionId"])["Body"].read() for v in versions]
    assert bodies == [b"2", b"1", b"0"]
    assert s3.head_object(Bucket=bucket, Key="k", VersionId=versions[-1]["VersionId"])["Metadata"] == {"n": "0"}
