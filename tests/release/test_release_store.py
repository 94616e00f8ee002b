"""ShaStore against moto over HTTP: conditional writes, retries, refusal to touch a broken file."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ecom_infra import release, shafile
from ecom_infra.errors import ConfigError
from tests.release.helpers import APPS, SHA


def make_store(endpoint: str, bucket: str, *, attempts: int = release.DEFAULT_ATTEMPTS, sleeps=None):
    return release.ShaStore(release.s3_client(endpoint), release.Location(bucket, "sha_number.yml"), APPS,
                            endpoint_url=endpoint, attempts=attempts,
                            sleep=(sleeps.append if sleeps is not None else lambda _s: None))


def body(s3, bucket: str) -> str:
    return s3.get_object(Bucket=bucket, Key="sha_number.yml")["Body"].read().decode()


def version_count(s3, bucket: str) -> int:
    return len(s3.list_object_versions(Bucket=bucket, Prefix="sha_number.yml").get("Versions", []))


@pytest.fixture
def store(aws_env, bucket):
    return make_store(aws_env["AWS_ENDPOINT_URL"], bucket)


def test_an_absent_object_reads_as_empty_with_no_etag(store):
    snapshot = store.read()
    assert snapshot.shas == {} and snapshot.etag is None


def test_the_first_write_creates_the_file_as_text_yaml_with_who_and_previous(store, s3, bucket):
    changes = store.update(release.stage_mutation("staging", "ecom-platform", SHA[1]), verb="stage", actor="octocat")
    assert changes == [release.Change("staging", "ecom-platform", None, SHA[1])]
    head = s3.head_object(Bucket=bucket, Key="sha_number.yml")
    assert head["ContentType"] == "text/yaml"
    assert head["Metadata"] == {"ecom-actor": "octocat", "ecom-verb": "stage",
                                "ecom-previous": "staging/ecom-platform=none"}
    assert shafile.parse(body(s3, bucket), APPS) == {"staging": {"ecom-platform": SHA[1]}}


def test_writing_the_value_already_there_writes_nothing(store, s3, bucket):
    store.update(release.stage_mutation("staging", "ecom-docs", SHA[1]), verb="stage", actor="a")
    changes = store.update(release.stage_mutation("staging", "ecom-docs", SHA[1]), verb="stage", actor="a")
    assert [c.changed for c in changes] == [False]
    assert version_count(s3, bucket) == 1


def racing(store_a, other_write, mutation):
    """Wrap `mutation` so that the other writer writes between A's read and A's upload, once."""
    calls = []

    def mutate(shas):
        calls.append(dict(shas))
        if len(calls) == 1:
            other_write()
        return mutation(shas)
    return mutate, calls


@pytest.mark.parametrize("existing", [False, True], ids=["if-none-match", "if-match"])
def test_a_lost_race_is_retried_on_the_fresh_file_and_keeps_both_entries(aws_env, bucket, s3, existing):
    endpoint = aws_env["AWS_ENDPOINT_URL"]
    sleeps: list[float] = []
    a, b = make_store(endpoint, bucket, sleeps=sleeps), make_store(endpoint, bucket)
    if existing:
        b.update(release.stage_mutation("production", "ecom-platform", SHA[3]), verb="stage", actor="seed")
    mutate, calls = racing(
        a, lambda: b.update(release.stage_mutation("staging", "ecom-docs", SHA[2]), verb="stage", actor="b"),
        release.stage_mutation("staging", "ecom-platform", SHA[1]))

    changes = a.update(mutate, verb="stage", actor="a")

    assert len(calls) == 2, "A must have re-read after its conditional write was refused"
    assert calls[1]["staging"]["ecom-docs"] == SHA[2], "the retry starts from B's version"
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= release.BACKOFF_CAP_S
    assert changes == [release.Change("staging", "ecom-platform", None, SHA[1])]
    final = shafile.parse(body(s3, bucket), APPS)
    assert final["staging"] == {"ecom-platform": SHA[1], "ecom-docs": SHA[2]}
    assert final.get("production", {}).get("ecom-platform") == (SHA[3] if existing else None)


def test_a_writer_that_always_loses_gives_up_with_one_line_and_writes_nothing(aws_env, bucket, s3):
    endpoint = aws_env["AWS_ENDPOINT_URL"]
    sleeps: list[float] = []
    a, b = make_store(endpoint, bucket, attempts=3, sleeps=sleeps), make_store(endpoint, bucket)
    turn = iter(SHA.values())

    def mutate(shas):
        b.update(release.stage_mutation("staging", "ecom-docs", next(turn)), verb="stage", actor="b")
        return release.stage_mutation("production", "ecom-platform", SHA[9])(shas)

    with pytest.raises(ConfigError) as excinfo:
        a.update(mutate, verb="stage", actor="a")
    assert "gave up after 3 attempts" in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert len(sleeps) == 2   # no pointless sleep after the last attempt
    assert "production" not in shafile.parse(body(s3, bucket), APPS)


@pytest.mark.parametrize("text", [
    "staging: {ecom-platform: [unclosed\n",
    f"staging:\n  ecom-api: {SHA[1]}\n",          # an app no stack declares
    "staging:\n  ecom-platform: not-a-sha\n",
], ids=["bad-yaml", "unknown-app", "bad-sha"])
def test_a_malformed_file_is_reported_and_never_overwritten(store, s3, bucket, text):
    s3.put_object(Bucket=bucket, Key="sha_number.yml", Body=text.encode())
    with pytest.raises(ConfigError) as excinfo:
        store.update(release.stage_mutation("staging", "ecom-docs", SHA[1]), verb="stage", actor="a")
    assert f"s3://{bucket}/sha_number.yml" in str(excinfo.value)
    assert body(s3, bucket) == text
    assert version_count(s3, bucket) == 1


def test_a_missing_bucket_is_named(aws_env):
    store = make_store(aws_env["AWS_ENDPOINT_URL"], "no-such-bucket-here")
    with pytest.raises(ConfigError, match=r"^--bucket: bucket 'no-such-bucket-here' does not exist$"):
        store.read()


def test_backoff_grows_exponentially_up_to_the_cap_and_is_jittered():
    top = lambda low, high: high   # noqa: E731 - the largest delay the jitter can pick
    assert [release.backoff_delay(n, rand=top) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert release.backoff_delay(30, rand=top) == release.BACKOFF_CAP_S
    assert release.backoff_delay(3, rand=lambda low, high: low) == 0.0


def test_previous_metadata_round_trips_and_ignores_junk():
    changes = [release.Change("production", "ecom-platform", SHA[1], SHA[2]),
               release.Change("production", "ecom-docs", None, SHA[3]),
               release.Change("production", "ecom-api", SHA[4], SHA[4])]   # unchanged: not recorded
    text = release.encode_previous(changes)
    assert text == f"production/ecom-platform={SHA[1]},production/ecom-docs=none"
    assert release.decode_previous(text + ",garbage,x/y=123") == {
        ("production", "ecom-platform"): SHA[1], ("production", "ecom-docs"): None}


def row(sha, verb="stage", previous=None):
    return release.HistoryRow(datetime(2024, 1, 1, tzinfo=UTC), sha, "a", verb, previous, "v")


def live(*ns):
    return [release.LiveRecord(SHA[n], f"2024-01-0{k + 1}T00:00:00Z", "ci") for k, n in enumerate(ns)]


def test_rollback_goes_to_the_release_live_before_the_current_one():
    rows = [row(SHA[3], previous=SHA[2]), row(SHA[2], previous=SHA[1]), row(SHA[1])]
    assert release.rollback_target(live(1, 2, 3), rows, SHA[3]) == SHA[2]


def test_rollback_skips_a_sha_whose_deploy_failed():
    # v1 live; SHA[2] staged but its deploy failed (never marked live); SHA[3] staged and live.
    rows = [row(SHA[3], previous=SHA[2]), row(SHA[2], previous=SHA[1]), row(SHA[1])]
    assert release.rollback_target(live(1, 3), rows, SHA[3]) == SHA[1]
    # Still on the broken sha (nothing staged since): back to what the servers kept running.
    assert release.rollback_target(live(1), rows[1:], SHA[2]) == SHA[1]


def test_a_second_rollback_goes_further_back_instead_of_flip_flopping():
    rows = [row(SHA[2], "rollback", previous=SHA[3]), row(SHA[3], previous=SHA[2]),
            row(SHA[2], previous=SHA[1]), row(SHA[1])]
    assert release.rollback_target(live(1, 2, 3, 2), rows, SHA[2]) == SHA[1]


def test_a_rollback_after_a_new_release_returns_to_the_rolled_back_to_sha():
    rows = [row(SHA[4], previous=SHA[1]), row(SHA[1], "rollback", previous=SHA[2]),
            row(SHA[2], previous=SHA[1]), row(SHA[1])]
    assert release.rollback_target(live(1, 2, 1, 4), rows, SHA[4]) == SHA[1]


def test_there_is_no_rollback_target_with_a_single_live_release():
    assert release.rollback_target(live(1), [row(SHA[1])], SHA[1]) is None


def test_the_live_record_round_trips_and_refuses_junk():
    records = {"production": {"ecom-platform": live(1, 2)}}
    text = release.dump_live(records)
    assert release.parse_live(text, "x") == records
    assert release.live_location(release.Location("b", "sha_number.yml")).key == "sha_number.live.yml"
    for bad in ("production: [1]\n", "production:\n  ecom-platform:\n  - {sha: '12', time: t, actor: a}\n",
                "- x\n", "a: [b\n"):
        with pytest.raises(ConfigError):
            release.parse_live(bad, "x")
