"""The planner (fleet/planner.py): a process loaded ahead makes the deploying plan the up would make, or says it
is stale and the up plans itself.

As in test_plan_reuse.py: the deploying plan runs as `make up` runs it, the fleet's mocks on a real moto server on
loopback, and a real planner process (`python -m fleet.planner`, started here as `make up` starts it but outside a
fleet's cgroup); no host, no root.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ecom_infra.errors import ConfigError
from fleet import local, plan_cache, planner
from tests.platform.test_plan_reuse import RAN, SHA, World, world  # noqa: F401 - `world`: the module's fixture

from ..conftest import ROOT

NEW_SHA = "d" * 40


def start_planner(w: World, project: Path = ROOT) -> subprocess.Popen:
    """A planner for the world's fleet, run from `project` (a copy of the project, or the project itself), once it
    has loaded (it says so in its own log)."""
    log_name = f"planner-{time.monotonic_ns()}.log"
    log = open(w.fleet.state.parent / log_name, "wb")  # noqa: SIM115 - the process's stdout
    proc = subprocess.Popen([sys.executable, "-m", "fleet.planner", "--state", str(w.fleet.state),
                             "--endpoint", w.fleet.endpoint], cwd=project, stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 60
    while "planner: loaded" not in (w.fleet.state.parent / log_name).read_text():
        assert proc.poll() is None and time.monotonic() < deadline, "the planner did not load"
        time.sleep(0.02)
    return proc


def deploying_plan(w: World, capsys) -> tuple[str, dict]:
    """(what the up printed, the plan), as `make up` comes by it."""
    capsys.readouterr()
    plan = local.deploying_plan(w.fleet, w.keys)
    return capsys.readouterr().out, plan


@pytest.fixture
def w(world, capsys):  # noqa: F811 - the module fixture, imported above
    world.capsys = capsys
    world.completed_run()
    yield world
    world.capsys = None


def test_with_no_planner_the_up_plans_itself_and_says_nothing_more(w, capsys):
    assert not planner.socket_path(w.fleet).exists()
    out, _ = deploying_plan(w, capsys)
    assert [line for line in out.splitlines() if "planner" in line] == []


def test_a_waiting_planner_makes_byte_for_byte_the_plan_the_up_makes_and_exits(w, capsys):
    w.verb("stage", "--env", "local", "--app", "ecom-platform", "--sha", NEW_SHA, "--no-verify-sha")
    deploying_plan(w, capsys)                          # the first plan of the module writes to moto
    shutil.rmtree(w.fleet.state / "plans", ignore_errors=True)
    out, here = deploying_plan(w, capsys)
    assert f"[up] plan: {RAN}" in out
    here_text = (w.fleet.state / "plan.json").read_text()
    shutil.rmtree(w.fleet.state / "plans")             # no kept plan: the planner must run the program
    proc = start_planner(w)
    out, there = deploying_plan(w, capsys)
    assert proc.wait(timeout=60) == 0                  # one request, then it exits
    assert not planner.socket_path(w.fleet).exists()
    assert [line for line in out.splitlines() if line.startswith("[up] plan: ")] == \
        [f"[up] plan: {RAN} (its program, config or keys differ from the plans kept)"]
    assert there == here and (w.fleet.state / "plan.json").read_text() == here_text
    assert there["outputs"]["apps"]["ecom-platform"]["sha"] == NEW_SHA


def test_a_config_error_in_the_planner_is_the_error_the_up_gives(w, capsys):
    bad = dataclasses.replace(w.fleet, overrides={"ecom-infra:deploy": json.dumps({"keepReleases": 0})})
    with pytest.raises(ConfigError) as here:
        local.make_deploying_plan(bad, w.keys)
    proc = start_planner(w)
    with pytest.raises(ConfigError) as there:
        local.deploying_plan(bad, w.keys)
    assert proc.wait(timeout=60) == 0
    assert str(there.value) == str(here.value) and "keepReleases" in str(here.value)


def test_a_planner_whose_loaded_module_changed_is_stale_and_the_up_plans_itself(w, tmp_path):
    """In a copy of the project (the up runs from it too: a planner serves only its own checkout)."""
    project = tmp_path / "project"
    for name in (*plan_cache.PLAN_FILES, "Pulumi.local.yaml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            project.mkdir(exist_ok=True)
            shutil.copy(source, project / name)
    script = ("import json, sys\nfrom pathlib import Path\nfrom fleet import local, spec\n"
              "spec.STATE_ROOT = Path(sys.argv[1])\nfleet = local.LocalFleet(**json.loads(sys.argv[2]))\n"
              "local.deploying_plan(fleet, local.Keys.load(fleet))\n")

    def up_in_copy() -> str:
        return subprocess.run([sys.executable, "-c", script, str(w.fleet.state.parent),
                               json.dumps(dataclasses.asdict(w.fleet))], cwd=project, capture_output=True,
                              text=True, check=True, env={**os.environ, **local.ENV}).stdout

    proc = start_planner(w, project)
    out = up_in_copy()
    assert proc.wait(timeout=60) == 0
    assert "planner" not in out and out.count("[up] plan: ") == 1, out      # the planner's plan
    proc = start_planner(w, project)
    edited = project / "fleet" / "cloud.py"
    edited.write_text(edited.read_text() + "\n# edited after the planner loaded it\n")
    out = up_in_copy()
    assert proc.wait(timeout=60) == 0
    assert f"the waiting planner is stale ({edited} changed since the planner loaded it): planning here" in out
    assert f"[up] plan: {RAN}" in out          # planned here: the edit changed the program's digest too
    # A template the warm-up plan compiled: jinja's cache would trust its mtime; the planner compares bytes.
    proc = start_planner(w, project)
    template = project / "templates" / "haproxy" / "drained.sh.j2"
    template.write_text(template.read_text() + "# edited after the planner compiled it\n")
    out = up_in_copy()
    assert proc.wait(timeout=60) == 0
    assert f"the waiting planner is stale ({template} changed since the planner loaded it): planning here" in out


def test_a_planner_loads_with_a_warm_up_plan_of_the_fleets_stack(w):
    """Its first plan (templates compiled, the SDK's caches) is made while it loads, not for the up waiting."""
    proc = start_planner(w)
    log = max(w.fleet.state.parent.glob("planner-*.log"), key=lambda path: path.stat().st_mtime_ns)   # its own
    assert planner.dismiss(w.fleet) is True and proc.wait(timeout=60) == 0
    assert re.search(r"^planner: loaded in [0-9.]+ s \(\d+ project modules and templates; warm-up plan of local "
                     r"in [0-9.]+ s\)$", log.read_text(), re.MULTILINE), log.read_text()


def test_why_stale_names_another_python_or_packages():
    ours = planner.identity()
    assert planner.why_stale(ours, {}, {"identity": ours}) is None
    assert planner.why_stale(ours, {}, {"identity": {**ours, "packages": [*ours["packages"], "x-1.dist-info"]}}) \
        == "the up runs from another checkout, or another Python or other packages"
    assert planner.why_stale(ours, {}, {"identity": {**ours, "project": "/elsewhere"}}) is not None


def test_an_up_that_finds_the_planner_loading_plans_itself_and_the_planner_waits_on(w, capsys):
    """A planner answers only once loaded; one that is stuck before (here: stopped) makes the up plan itself, and
    still serves the next up once it goes on."""
    proc = start_planner(w)
    proc.send_signal(signal.SIGSTOP)
    try:
        out, _ = deploying_plan(w, capsys)
    finally:
        proc.send_signal(signal.SIGCONT)
    assert "[up] plan: the planner the last up left is still loading: planning here" in out
    out, _ = deploying_plan(w, capsys)
    assert proc.wait(timeout=60) == 0
    assert "planner" not in out and out.count("[up] plan: ") == 1, out
    assert planner.dismiss(w.fleet) is False           # none left


def test_a_planner_that_greets_and_then_gives_no_answer_is_stopped_before_the_up_plans_itself(w, monkeypatch):
    """Never two plans at once: a planner that took the request but does not answer in time (here a stand-in that
    greets with the pid of a process that only sleeps) is killed, and only then does the up plan itself."""
    monkeypatch.setattr(planner, "ANSWER_TIMEOUT_S", 1)
    sleeper = subprocess.Popen(["sleep", "60"])
    path = planner.socket_path(w.fleet)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)

        def greet_and_hang() -> None:
            conn, _ = listener.accept()
            conn.sendall(json.dumps({"ready": sleeper.pid}).encode() + b"\n")
            time.sleep(5)
            conn.close()

        stand_in = threading.Thread(target=greet_and_hang)
        stand_in.start()
        said: list[str] = []
        try:
            assert planner.ask(w.fleet, lambda stage, text: said.append(text)) is None
        finally:
            stand_in.join()
            path.unlink()
    assert sleeper.wait(timeout=5) == -signal.SIGKILL
    assert said == ["the planner gave no answer in 1 s and was stopped: planning here"]


@pytest.mark.parametrize("by_planner", [True, False], ids=["planner", "up"])
def test_a_seed_stages_a_missing_sha_file_before_the_plan_by_the_planner_or_the_up(w, capsys, by_planner):
    """`make up` hands the seeding of the sha file to whoever plans (the planner has botocore loaded)."""
    bucket, key = local.sha_file_location(w.fleet)
    s3 = w.s3()
    before = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.delete_object(Bucket=bucket, Key=key)           # versioned: a delete marker, and no current object
    seeded = {app: {"v1": shas[-1]} for app, shas in SHA.items()}
    try:
        proc = start_planner(w) if by_planner else None
        capsys.readouterr()
        plan = local.deploying_plan(w.fleet, w.keys, seed=seeded)
        out = capsys.readouterr().out
        if proc is not None:
            assert proc.wait(timeout=60) == 0
        assert "planner" not in out, out                # the planner's own plan, or no planner at all
        lines = out.splitlines()
        staged = [i for i, line in enumerate(lines) if line.startswith("local/") and " → " in line]
        planned = [i for i, line in enumerate(lines) if line.startswith("[up] plan: ")]
        assert len(staged) == len(SHA) and planned and max(staged) < planned[0], out
        for app, tags in seeded.items():
            assert plan["outputs"]["apps"][app]["sha"] == tags["v1"]
        capsys.readouterr()
        local.deploying_plan(w.fleet, w.keys, seed=seeded)     # the file exists now: nothing staged
        assert "[up] sha file: s3://" in capsys.readouterr().out
    finally:
        s3.put_object(Bucket=bucket, Key=key, Body=before)
