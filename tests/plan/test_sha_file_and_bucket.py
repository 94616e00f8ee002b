"""Reading the sha file whatever its content type, and the first `up` of the stack that owns the bucket."""
from __future__ import annotations

import json

import pytest
from pulumi.runtime import mocks as pulumi_mocks

from ecom_infra import plan as offline_plan
from ecom_infra import settings
from ecom_infra.errors import ConfigError
from ecom_infra.mocks import PlanMocks

from ..conftest import SHA_A, SHA_B, SHA_FILE, resources_of
from .test_settings import BASE, parse

BUCKET = "aws:s3/bucket:Bucket"
COMMAND = "command:remote:Command"


def run(stack: str = "staging", overrides: dict | None = None, **mock_fields):
    mocks = PlanMocks(stack=stack, **mock_fields)
    return offline_plan.run(stack, mocks=mocks, config_overrides=overrides)


def get_object(mocks: PlanMocks, **args) -> dict:
    return mocks.call(pulumi_mocks.MockCallArgs(token="aws:s3/getObject:getObject", provider="",
                                                args={"bucket": "b", "key": "sha_number.yml", **args}))


# ------------------------------------------------------------------ the sha file, any content type

def test_the_mocks_give_no_body_for_a_binary_content_type_as_the_provider_does():
    mocks = PlanMocks(stack="staging", sha_file_text=SHA_FILE, sha_file_content_type="binary/octet-stream")
    assert get_object(mocks)["body"] == "" and get_object(mocks)["bodyBase64"] == ""
    assert get_object(mocks, downloadBody="true")["bodyBase64"]
    text = PlanMocks(stack="staging", sha_file_text=SHA_FILE, sha_file_content_type="text/yaml; charset=utf-8")
    assert get_object(text)["body"] == SHA_FILE


@pytest.mark.parametrize("content_type", ["binary/octet-stream", "application/octet-stream", "text/yaml", ""])
def test_the_sha_file_is_read_whatever_its_content_type(content_type):
    outputs = run(sha_file_text=SHA_FILE, sha_file_content_type=content_type).to_dict()["outputs"]
    assert outputs["apps"]["ecom-platform"]["sha"] == SHA_A
    assert outputs["apps"]["ecom-docs"]["sha"] == SHA_B


@pytest.mark.parametrize("data,problem", [(b"\xff\xfe\x00garbage", "is not UTF-8 text"),
                                          (b"", "exists but its content could not be read"),
                                          (b"  \n", "is empty")])
def test_a_sha_file_that_cannot_be_read_fails_the_run(data, problem):
    with pytest.raises(ConfigError, match=r"^s3://emami-ci-packages/sha_number\.yml: " + problem):
        run(sha_file_text=data, sha_file_content_type="binary/octet-stream")


# ------------------------------------------------------------------ first up of the owner stack

def test_the_owner_stack_starts_when_its_bucket_does_not_exist_yet():
    result = run("production", bucket_exists=False, sha_file_text=SHA_FILE)
    plan = result.to_dict()
    [bucket] = resources_of(plan, BUCKET)
    assert bucket["options"]["import"] is None                    # created, not imported
    assert [w for w in result.warnings if "does not exist yet: this stack creates it" in w]
    assert not [r for r in resources_of(plan, COMMAND) if "release" in r["name"]]


def test_a_reader_stack_still_fails_on_a_missing_bucket():
    # Only the owner may start without the bucket; elsewhere it is a mistake (wrong name, account).
    with pytest.raises(Exception, match="NoSuchBucket"):
        run("staging", bucket_exists=False)


def test_adopt_imports_the_existing_bucket_and_writes_its_settings():
    override = {"ecom-infra:shaBucket": json.dumps({"name": "emami-ci-packages", "owner": True, "adopt": True})}
    plan = run("production", override, sha_file_text=SHA_FILE).to_dict()
    [bucket] = resources_of(plan, BUCKET)
    assert bucket["options"]["import"] == "emami-ci-packages"
    assert bucket["options"]["protect"] and bucket["options"]["retain_on_delete"]
    assert bucket["options"]["ignore_changes"] == ["tags"]
    settings_ = [r for r in plan["resources"] if r["type"].startswith("aws:s3/bucket") and r["type"] != BUCKET]
    assert len(settings_) == 6 and all(r["options"]["import"] is None for r in settings_)
    # Without the flag nothing is imported.
    plain = run("production", sha_file_text=SHA_FILE).to_dict()
    assert all(r["options"]["import"] is None for r in plain["resources"])


def test_adopt_of_a_bucket_that_does_not_exist_says_so():
    override = {"ecom-infra:shaBucket": json.dumps({"owner": True, "adopt": True})}
    with pytest.raises(ConfigError, match=r"^ecom-infra:shaBucket\.adopt: is true but s3://emami-ci-packages "):
        run("production", override, bucket_exists=False)


def test_adopt_is_validated_like_its_neighbours():
    assert parse({**BASE, "shaBucket": {"owner": True, "adopt": True}}).sha_bucket.adopt is True
    assert parse(BASE, stack="production").sha_bucket.adopt is False
    for value, problem in [({"owner": False, "adopt": True}, "is only for the stack that owns"),
                           ({"owner": True, "adopt": "yes"}, "must be true or false")]:
        with pytest.raises(ConfigError, match=r"^ecom-infra:shaBucket\.adopt: " + problem):
            settings.parse({**BASE, "shaBucket": value}, project="ecom-infra", stack="staging", region="us-east-1")


# ------------------------------------------------------------------ old versions expire

LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"


def test_old_versions_of_the_sha_file_and_live_record_expire_by_default():
    plan = run("production", sha_file_text=SHA_FILE).to_dict()
    [rule_set] = resources_of(plan, LIFECYCLE)
    rules = rule_set["inputs"]["rules"]
    # Only our two objects: the bucket may hold CI's other packages.
    assert [r["filter"]["prefix"] for r in rules] == ["sha_number.yml", "sha_number.live.yml"]
    assert all(r["status"] == "Enabled" and r["noncurrentVersionExpiration"] ==
               {"noncurrentDays": 365, "newerNoncurrentVersions": 100} for r in rules)
    # A reader stack owns no bucket, so no rule either.
    assert not resources_of(run("staging", sha_file_text=SHA_FILE).to_dict(), LIFECYCLE)


def test_the_expiry_age_and_count_are_settings():
    override = {"ecom-infra:shaBucket": json.dumps({"owner": True, "noncurrentDays": 30, "noncurrentKept": 0})}
    plan = run("production", override, sha_file_text=SHA_FILE).to_dict()
    [rule_set] = resources_of(plan, LIFECYCLE)
    # kept 0: age alone (S3 refuses NewerNoncurrentVersions 0).
    assert [r["noncurrentVersionExpiration"] for r in rule_set["inputs"]["rules"]] == [{"noncurrentDays": 30}] * 2


@pytest.mark.parametrize("value,problem", [({"noncurrentDays": 0}, r"noncurrentDays: must be an integer from 1 "),
                                           ({"noncurrentKept": 101}, r"noncurrentKept: must be an integer from 0 to 100"),
                                           ({"noncurrentKept": "many"}, r"noncurrentKept: must be an integer")])
def test_the_expiry_settings_are_validated(value, problem):
    with pytest.raises(ConfigError, match=r"^ecom-infra:shaBucket\." + problem):
        settings.parse({**BASE, "shaBucket": value}, project="ecom-infra", stack="staging", region="us-east-1")
