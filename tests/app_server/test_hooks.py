"""Release hooks for real (issue 13 item 2): two hosts of one app build at once, `bin/rails
db:migrate` (a `once` hook) runs on the designated one only and once per sha, also when a deploy
is retried; a failing hook fails the step with its output and leaves the old release serving."""
from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import destroy_host, make_host, ok
from .helpers import hook_runs as runs

pytestmark = [pytest.mark.tools, pytest.mark.root]

LINKED = ("log", "tmp/pids", "tmp/sockets", "tmp/cache", "db/data")
MIGRATE = ("afterBuild", "echo migrate >> log/hook-runs && bin/rails db:migrate", True, 600)
EACH = ("afterBuild", 'echo "each $ECOM_SHA $ECOM_HOOK" >> log/hook-runs', False, 60)
ON_FAILURE = ("onFailure", 'echo "failed $ECOM_FAILED_STAGE $ECOM_SHA $(basename "$PWD")" >> log/hook-runs',
              False, 60)


@pytest.fixture
def pair(deploy_account, origin):
    hosts = [make_host(deploy_account, origin, linked_dirs=LINKED, hooks=(MIGRATE, EACH, ON_FAILURE),
                       runs_once_hooks=first) for first in (True, False)]
    try:
        for host in hosts:
            host.provision()
        yield hosts
    finally:
        for host in hosts:
            destroy_host(host)


def test_a_once_hook_runs_on_one_server_once_per_sha_even_when_both_build_at_once(pair, shas):
    first, second = pair
    for host in pair:
        host.with_sha(shas["v1"])
    builds = [host.start("release-build") for host in pair]            # both build at the same time
    outs = [b.communicate(timeout=300)[0] for b in builds]
    assert [b.returncode for b in builds] == [0, 0], outs
    assert runs(first) == ["migrate", f"each {shas['v1']} afterBuild"]
    assert runs(second) == [f"each {shas['v1']} afterBuild"]
    assert "(once) skipped: the app's once hooks run on its first server" in outs[1]
    for host in pair:
        ok(host.run("release-publish"))
    assert first.get("/offers") == (200, "offer: Free delivery over 50 EUR\n")   # the app reads the table
    assert first.get("/offers")[0] == 200 and second.get("/offers")[0] == 503    # the other db was never touched
    assert (Path(first.spec.shared_dir) / "db" / "data" / "production.sqlite3").is_file()

    # The same sha again (a retried deploy): the marker says it ran; nothing runs twice.
    again = ok(first.run("release-build"))
    assert "current already runs" in again and runs(first)[-1] == f"each {shas['v1']} afterBuild"


def test_a_failing_hook_fails_the_deploy_with_its_output_and_a_retry_runs_only_what_did_not_succeed(pair, shas):
    first, _ = pair
    first.deploy(shas["v1"])
    v1 = first.current()
    gate = ("afterBuild", 'test -e log/gate-open || { echo "gate closed for $ECOM_SHA"; exit 3; }', True, 60)
    first.with_sha(shas["r1"], hooks=(MIGRATE, gate, ON_FAILURE))
    failed = first.run("release-build")
    assert failed.returncode != 0
    assert "failed (exit 3)" in failed.stderr and f"gate closed for {shas['r1']}" in failed.stderr  # its output tail
    assert "nothing switched, current is still " + v1 in failed.stderr
    assert first.current() == v1 and "version v1" in first.get("/")[1]           # the old release serves
    assert runs(first)[-2:] == ["migrate", f"failed after-build {shas['r1']} {v1}"]

    # Retried after the cause is fixed: the migration (it succeeded for r1) is not run again; the gate is.
    (Path(first.spec.shared_dir) / "log" / "gate-open").touch()
    out = ok(first.run("release-build"))
    assert "already ran for" in out and "reused" in out
    assert runs(first).count("migrate") == 2                        # once for v1, once for r1
    ok(first.run("release-publish"))
    assert "version r1" in first.get("/")[1]


def test_a_failing_hooks_output_shows_the_apps_secrets_redacted_and_its_plain_variables(pair, shas):
    first, _ = pair
    secret, inner = "tok-9f8e7d6c5b4a", "9f8e7d"       # one secret inside another: no part of either shows
    first.with_sha(shas["v1"], env=(("SHOP_REGION", "eu-west"),))
    ok(first.run("app-env", stdin=first.env_file((("PAYMENT_API_KEY", secret), ("SHORT_KEY", inner)))))
    leaky = ("afterBuild", 'env | sort; echo "key=$PAYMENT_API_KEY"; exit 4', False, 60)
    failed = first.with_sha(shas["v1"], hooks=(leaky,)).run("release-build")
    assert failed.returncode != 0 and "failed (exit 4)" in failed.stderr
    assert secret not in failed.stderr and inner not in failed.stderr, failed.stderr
    assert "key=[PAYMENT_API_KEY redacted]" in failed.stderr and "SHORT_KEY=[SHORT_KEY redacted]" in failed.stderr
    assert "SHOP_REGION=eu-west" in failed.stderr                 # plain variables stay readable
    logs = list((first.app_dir / "hooks" / shas["v1"]).glob("afterBuild-1-*.log"))
    assert len(logs) == 1 and secret in logs[0].read_text()      # the root-only log keeps the whole output


def test_a_failing_after_publish_hook_goes_back_to_the_old_release(pair, shas):
    first, _ = pair
    first.deploy(shas["v1"])
    v1 = first.current()
    broken = ("afterPublish", 'echo "cache warm-up failed"; exit 5', False, 60)
    first.with_sha(shas["r2"], hooks=(MIGRATE, broken, ON_FAILURE))
    ok(first.run("release-build"))
    publish = first.run("release-publish")
    assert publish.returncode != 0 and "cache warm-up failed" in publish.stderr
    assert first.current() == v1 and "version v1" in first.get("/")[1]
    assert runs(first)[-1] == f"failed publishing {shas['r2']} {v1}"


def test_hooks_get_the_apps_secrets_from_its_environment_file_and_a_hung_hook_times_out(pair, shas):
    first, _ = pair
    secret = "s3cret-value-for-hooks"
    ok(first.run("app-env", stdin=first.env_file((("PAYMENT_API_KEY", secret),))))
    sees = ("afterBuild", 'test "${#PAYMENT_API_KEY}" -eq 22 && echo "secret seen as $(id -un) in $RAILS_ENV" '
                          '>> log/hook-runs', False, 60)
    first.with_sha(shas["v1"], hooks=(sees,))
    build = ok(first.run("release-build"))
    assert runs(first) == [f"secret seen as {first.account.user} in production"] and secret not in build
    hook_logs = list((first.app_dir / "hooks" / shas["v1"]).iterdir())
    assert oct((first.app_dir / "hooks").stat().st_mode & 0o777) == "0o700" and len(hook_logs) == 1
    ok(first.run("release-publish"))

    hung = ("afterBuild", "sleep 60", False, 2)
    first.with_sha(shas["r3"], hooks=(hung,))
    failed = first.run("release-build", timeout=60)
    assert failed.returncode != 0 and "timed out after 2s" in failed.stderr
    assert "version v1" in first.get("/")[1]
