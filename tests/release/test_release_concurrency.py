"""Twenty `ecom-deploy stage` calls racing against moto over HTTP lose no entry."""
from __future__ import annotations

import threading
import time

from ecom_infra import release_cli, shafile
from tests.release.helpers import run_verb, write_project

ENVS = [f"env{n}" for n in range(4)]
APPS = [f"app{n}" for n in range(5)]
WRITERS = [(env, app) for env in ENVS for app in APPS]   # 20 distinct entries


def test_twenty_racing_stage_calls_lose_no_entry(tmp_path, monkeypatch, bucket, s3):
    monkeypatch.setenv(release_cli.ENV_PROJECT_DIR, str(write_project(tmp_path / "p", {e: APPS for e in ENVS})))
    expected = {env: {} for env in ENVS}
    for n, (env, app) in enumerate(WRITERS):
        expected[env][app] = f"{n:040x}"
    start = threading.Barrier(len(WRITERS))
    codes: dict[tuple[str, str], int] = {}

    def writer(env: str, app: str) -> None:
        start.wait()   # all read the same (absent) object, so nearly all lose the first round
        codes[(env, app)] = run_verb("stage", "--no-verify-sha", "--env", env, "--app", app, "--sha", expected[env][app],
                                     "--actor", f"{env}-{app}")

    threads = [threading.Thread(target=writer, args=entry) for entry in WRITERS]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.monotonic() - began

    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert codes == {entry: 0 for entry in WRITERS}
    text = s3.get_object(Bucket=bucket, Key="sha_number.yml")["Body"].read().decode()
    assert shafile.parse(text, APPS) == expected
    # Exactly one version per writer: no write was lost and none happened twice.
    versions = s3.list_object_versions(Bucket=bucket, Prefix="sha_number.yml")["Versions"]
    assert len(versions) == len(WRITERS)
    print(f"20 racing stage calls took {elapsed:.1f}s")
