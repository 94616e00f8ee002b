"""`make up` reuses a kept deploying plan only when nothing the program reads has changed (fleet/plan_cache.py).

The deploying plan runs here as `make up` runs it (fleet.local.deploying_plan), with the fleet's mocks on a real
moto server on loopback; no host, no root. Each class of input is changed in turn and must make the program run
again; what the program does not read (the sha file's version, time and actor) must not.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from fleet import local, moto, plan_cache
from fleet import spec as fleet_spec
from fleet.executor.resources import remote_resources
from fleet.executor.state import load_state, save_state
from fleet.moto_reads import MotoReads, RecordingClient
from tests.support.moto_server import running_moto_server

RAN, REUSED = "running the local stack's program against moto", "reusing a plan an earlier up made"
SHA = {"ecom-platform": ["a" * 40, "c" * 40], "ecom-docs": ["b" * 40]}


@dataclasses.dataclass
class World:
    fleet: local.LocalFleet
    keys: local.Keys
    capsys: pytest.CaptureFixture[str] | None = None

    @property
    def state_file(self) -> Path:
        return self.fleet.state / "executor-state.json"

    def plan(self, fleet: local.LocalFleet | None = None) -> tuple[str, dict]:
        """(how the plan was come by: RAN or REUSED, the plan)."""
        assert self.capsys is not None
        self.capsys.readouterr()
        plan = local.deploying_plan(fleet or self.fleet, self.keys)
        said = [line for line in self.capsys.readouterr().out.splitlines() if line.startswith("[up] plan: ")]
        assert len(said) == 1, said
        assert json.loads((self.fleet.state / "plan.json").read_text()) == plan
        return (RAN if said[0].startswith(f"[up] plan: {RAN}") else REUSED), plan

    def completed_run(self) -> None:
        """What a successful executor run leaves: `last_run` ok, nothing pending."""
        save_state(self.state_file, {"version": 1, "project": "ecom-infra", "stack": "local", "next_serial": 1,
                                     "resources": {}, "pending_deletes": [], "last_run": "ok"})

    def verb(self, *args: str) -> None:
        code, out, err = local.ecom_deploy(self.fleet, *args)
        assert code == 0, out + err

    def s3(self):
        return moto.client(self.fleet.endpoint, "s3")

    def ec2(self):
        return moto.client(self.fleet.endpoint, "ec2")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with running_moto_server() as endpoint, pytest.MonkeyPatch.context() as mp:
        mp.setattr(fleet_spec, "STATE_ROOT", tmp_path_factory.mktemp("state"))
        for name in local.ENV:                  # the in-process verbs set these: undone after the module
            mp.setenv(name, local.ENV[name])
        fleet = local.LocalFleet.from_stack()
        fleet = dataclasses.replace(fleet, bridge={**fleet.bridge, "gateway": "127.0.0.1"},
                                    moto_port=int(endpoint.rsplit(":", 1)[1]))
        fleet.state.mkdir(parents=True, mode=0o700)
        world = World(fleet, local.Keys.load(fleet))
        local.seed_sha_file(fleet, {app: {"v1": shas[0]} for app, shas in SHA.items()})
        world.completed_run()
        yield world


@pytest.fixture
def w(world, capsys):
    world.capsys = capsys
    world.completed_run()
    yield world
    world.capsys = None


def test_a_plan_that_wrote_to_moto_is_not_kept_the_next_one_is_and_its_reuse_is_the_same_plan(w):
    assert w.plan()[0] == RAN            # creates the instances, EIP, role and profile in moto: not kept
    assert not (w.fleet.state / "plans" / "index.json").exists()
    how, planned = w.plan()
    assert how == RAN
    how, reused = w.plan()
    assert how == REUSED and reused == planned
    assert planned["outputs"]["apps"]["ecom-platform"]["sha"] == SHA["ecom-platform"][0]


def test_the_cache_is_private_and_keeps_at_most_KEEP_plans(w):
    folder = w.fleet.state / "plans"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.iterdir())
    for keep in range(plan_cache.KEEP + 1):
        assert w.plan(dataclasses.replace(w.fleet, overrides={"ecom-infra:deploy": json.dumps(
            {"user": "deploy", "root": "/srv/www", "keepReleases": 6 + keep})}))[0] == RAN
    assert len(json.loads((folder / "index.json").read_text())) == plan_cache.KEEP
    assert len(list(folder.glob("*.json"))) == plan_cache.KEEP + 1


def test_a_config_override_runs_the_program_and_going_back_reuses_the_kept_plan(w):
    assert w.plan()[0] == RAN            # the last test pushed the plain config's plan out of the cache
    changed = dataclasses.replace(w.fleet, overrides={"ecom-infra:deploy": json.dumps(
        {"user": "deploy", "root": "/srv/www", "keepReleases": 3})})
    how, plan = w.plan(changed)
    assert how == RAN
    assert w.plan(changed) == (REUSED, plan)
    how, plain = w.plan()
    assert how == REUSED and plain != plan


def test_an_edited_program_file_or_stack_file_changes_the_static_digest(tmp_path):
    project = tmp_path / "project"
    for name in (*plan_cache.PLAN_FILES, "Pulumi.local.yaml"):
        source = local.PROJECT_DIR / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            project.mkdir(exist_ok=True)
            shutil.copy(source, project / name)
    assert any(name.startswith("pulumi-") for name in plan_cache.installed())     # the packages count too
    args = ("local", {"ecom-infra:x": "1"}, {"ecom-infra:deployKey": "k"}, {"endpoint": "http://127.0.0.1:1"})
    before = plan_cache.static_digest(project, *args)
    assert before == plan_cache.static_digest(project, *args)
    for edited in ("templates/app_server/puma.rb.j2", "components/network.py", "fleet/cloud.py",
                   "Pulumi.local.yaml"):
        path = project / edited
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert plan_cache.static_digest(project, *args) != before, edited
        path.write_bytes(original)
    assert plan_cache.static_digest(project, *args) == before
    for other in (("local", {"ecom-infra:x": "2"}, args[2], args[3]), ("local", args[1], {"ecom-infra:deployKey": "j"},
                                                                       args[3]),
                  ("local", args[1], args[2], {"endpoint": "http://127.0.0.1:2"})):
        assert plan_cache.static_digest(project, *other) != before


def test_a_new_sha_runs_the_program_and_a_rollback_to_the_earlier_one_reuses_its_plan(w):
    how, first = w.plan()
    assert how == REUSED
    w.verb("stage", "--env", "local", "--app", "ecom-platform", "--sha", SHA["ecom-platform"][1], "--no-verify-sha")
    how, second = w.plan()
    assert how == RAN and second["outputs"]["apps"]["ecom-platform"]["sha"] == SHA["ecom-platform"][1]
    w.verb("rollback", "--env", "local", "--app", "ecom-platform", "--to", SHA["ecom-platform"][0])
    how, rolled_back = w.plan()
    assert how == REUSED and rolled_back == first


def test_a_sha_file_rewritten_with_the_same_text_by_another_actor_reuses_the_plan(w):
    bucket, key = local.sha_file_location(w.fleet)
    s3 = w.s3()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/yaml",
                  Metadata={"ecom-actor": "somebody-else", "ecom-verb": "stage"})
    assert w.plan()[0] == REUSED
    s3.put_object(Bucket=bucket, Key=key, Body=body + b"# a comment the parser drops\n", ContentType="text/yaml")
    assert w.plan()[0] == RAN                          # the bytes the program reads changed: it runs again
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/yaml")
    assert w.plan()[0] == REUSED


@pytest.mark.parametrize("state", [{"last_run": "failed"}, {"last_run": "running"}, {"last_run": None},
                                   {"pending_deletes": [{"urn": "x"}]}, None])
def test_a_deploy_that_did_not_complete_runs_the_program_again(w, state):
    assert w.plan()[0] == REUSED
    if state is None:
        w.state_file.unlink()
    else:
        save_state(w.state_file, {**load_state(w.state_file), **state})
    assert w.plan()[0] == RAN


def test_the_mocks_see_only_the_recorded_part_of_an_answer_and_a_write_is_noticed(w):
    reads = MotoReads()
    s3 = RecordingClient(moto.client(w.fleet.endpoint, "s3"), "s3", reads)
    bucket, key = local.sha_file_location(w.fleet)
    assert set(s3.get_object(Bucket=bucket, Key=key)) == {"Body", "ContentType"}
    assert [set(b) for b in s3.list_buckets()["Buckets"]] == [{"Name"}]
    assert not reads.wrote and len(reads.queries()) == 2
    before = reads.digest()
    s3.put_object(Bucket=bucket, Key="elsewhere.txt", Body=b"x")
    assert reads.wrote and not reads.keepable and reads.digest() == before
    again = MotoReads()
    again.record(["s3", "list_buckets", {}], {"Buckets": []})
    assert again.keepable
    again.record(["s3", "list_buckets", {}], {"Buckets": [{"Name": "new"}]})   # moto changed during the plan
    assert not again.keepable
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"


def test_the_plans_remote_commands_log_in_as_up_does_so_the_executor_reuses_ups_logins(w):
    """`up` logs in to every host while the plan runs and hands those logins to the executor (fleet/local.py):
    every remote command's connection must be one of them (same address, user, key and pinned host key), or
    its step would dial again."""
    _, plan = w.plan()
    fleet = dataclasses.replace(w.fleet, bridge=local.LocalFleet.from_stack().bridge)     # the hosts' own network
    spec = fleet_spec.parse(local.fleet_spec_from(fleet, local.fleet_shape(fleet, w.keys, None), None))
    logins = {local.login_connection(spec, w.keys, host.name).login for host in spec.hosts}
    used = {r.connection.login for r in remote_resources(plan)}
    assert len(used) == len(plan["hosts"]) and used <= logins

def test_an_instance_stopped_or_terminated_in_moto_runs_the_program_again(w):
    """(Last: the instance is gone for good. moto refuses a new instance on the address the old one held, so the
    program's run fails here after it started: what matters is that it ran instead of reusing a plan.)"""
    def tried_to_plan() -> bool:
        assert w.capsys is not None
        w.capsys.readouterr()
        with contextlib.suppress(Exception):
            local.deploying_plan(w.fleet, w.keys)
        return f"[up] plan: {RAN}" in w.capsys.readouterr().out

    assert w.plan()[0] == REUSED
    instance = json.loads((w.fleet.state / "plan.json").read_text())["hosts"]["ecom-docs-1"]["instanceId"]
    ec2 = w.ec2()
    ec2.stop_instances(InstanceIds=[instance])
    assert tried_to_plan()
    ec2.start_instances(InstanceIds=[instance])
    assert w.plan()[0] == REUSED                 # the same instance, running again: the same answers
    ec2.terminate_instances(InstanceIds=[instance])
    assert tried_to_plan()

