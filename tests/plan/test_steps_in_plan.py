"""Remote commands in the plan: order, triggers, secrets, and the rolling restart's shape."""
from __future__ import annotations

import itertools
import json
import subprocess

import pytest

from components.remote_steps import as_root, check_secret_script
from ecom_infra import plan as offline_plan

from ..conftest import SHA_A, SHA_B, SHA_FILE, resources_of

COMMAND = "command:remote:Command"


@pytest.fixture(scope="module")
def staging():
    result = offline_plan.run("staging", sha_file_text=SHA_FILE)
    return result.to_dict(), result.to_dict(reveal_secrets=True)


def by_name(plan: dict) -> dict[str, dict]:
    return {r["name"]: r for r in plan["resources"]}


def depends(plan: dict, name: str, on: str) -> bool:
    """True when `name` runs after `on` (directly or through other resources)."""
    index = by_name(plan)
    urn_of = {r["urn"]: r["name"] for r in plan["resources"]}
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        for dep in index[current]["dependencies"]:
            dep_name = urn_of.get(dep)
            if dep_name == on:
                return True
            if dep_name and dep_name not in seen:
                seen.add(dep_name)
                todo.append(dep_name)
    return False


@pytest.mark.root  # runs the step's wrapper through sudo
def test_as_root_keeps_stdin_free_for_secrets(tmp_path):
    script = 'set -euo pipefail\nread -r secret\necho "uid=$(id -u) got=${#secret}" > "$OUT"\n'
    wrapped = as_root(script.replace("$OUT", str(tmp_path / "out")))
    subprocess.run(["sh", "-c", wrapped], input="s3cr3t\n", text=True, check=True, timeout=30)
    assert (tmp_path / "out").read_text() == "uid=0 got=6\n"
    assert "s3cr3t" not in wrapped


def test_as_root_refuses_a_script_that_ends_its_here_document():
    with pytest.raises(ValueError):
        as_root("echo hi\nECOM_STEP_EOF\nrm -rf /\n")


def test_app_server_steps_run_in_order(staging):
    plan, _ = staging
    order = ["deploy-user", "git-ssh", "layout", "ruby", "puma-config", "puma-unit", "nginx-site", "datadog",
             "release-build", "release-publish"]
    for before, after in itertools.pairwise(order):
        assert depends(plan, f"ecom-platform-1-{after}", f"ecom-platform-1-{before}"), (before, after)


def test_every_step_is_triggered_by_its_instance_and_releases_by_sha(staging):
    plan, _ = staging
    hosts = plan["hosts"]
    for r in resources_of(plan, COMMAND):
        host = next(h for h in hosts if r["name"].startswith(h + "-"))
        assert r["inputs"]["triggers"][0] == hosts[host]["instanceId"], r["name"]
    resources = by_name(plan)
    assert SHA_A in resources["ecom-platform-1-release-build"]["inputs"]["triggers"]
    assert SHA_B in resources["ecom-docs-1-release-publish"]["inputs"]["triggers"]
    assert SHA_A in resources["ecom-platform-2-release-publish"]["inputs"]["triggers"]


def test_every_command_pins_the_host_key_of_its_host(staging):
    plan, _ = staging
    for r in resources_of(plan, COMMAND):
        host = next(h for name, h in plan["hosts"].items() if r["name"].startswith(name + "-"))
        conn = r["inputs"]["connection"]
        assert conn["hostKey"] == host["hostKey"] and conn["host"] == host["privateIp"]
        assert conn["user"] == "admin" and conn["privateKey"] == "[secret]"


def test_deploy_key_travels_only_on_stdin(staging):
    plan, revealed = staging
    placeholder = "PLACEHOLDER-NOT-A-REAL-SECRET(ecom-infra:deployKey)"
    carriers = [r["name"] for r in revealed["resources"] if placeholder in json.dumps(r["inputs"])]
    assert sorted(carriers) == ["ecom-docs-1-git-ssh", "ecom-platform-1-git-ssh", "ecom-platform-2-git-ssh"]
    for name in carriers:
        r = by_name(revealed)[name]
        assert r["inputs"]["stdin"] == placeholder and placeholder not in r["inputs"]["create"]
        assert by_name(plan)[name]["inputs"]["stdin"] == "[secret]"
        assert {"stdout", "stderr"} <= set(by_name(plan)[name]["options"]["additional_secret_outputs"])
        assert r["inputs"]["logging"] == "none"                     # and out of the engine's logs


def test_haproxy_nodes_are_configured_one_after_the_other(staging):
    plan, _ = staging
    assert depends(plan, "haproxy-b-haproxy-packages", "haproxy-a-keepalived-config")


def test_the_peer_starts_keepalived_only_once_the_intended_master_holds_the_eip(staging):
    # No Pulumi association: the first master's notify_master claims the EIP, and haproxy-a's
    # keepalived-eip-held waits for it before anything of haproxy-b runs.
    plan, revealed = staging
    held = by_name(plan)["haproxy-a-keepalived-eip-held"]
    assert depends(plan, "haproxy-a-keepalived-eip-held", "haproxy-a-keepalived-config")
    assert depends(plan, "haproxy-b-haproxy-packages", "haproxy-a-keepalived-eip-held")
    assert "haproxy-b-keepalived-eip-held" not in by_name(plan)
    eip = next(r for r in plan["resources"] if r["type"] == "aws:ec2/eip:Eip")
    assert eip["urn"] in held["dependencies"] or depends(plan, held["name"], eip["name"])
    assert "--wait-held" in by_name(revealed)["haproxy-a-keepalived-eip-held"]["inputs"]["create"]


def test_rolling_restart_is_one_server_at_a_time_and_runs_no_step_on_haproxy_after_a_publish(staging):
    # The engine starts no step after a failure: a `ready` step after a failed publish would never run. The drain
    # lives on the app server (its agent, the publish holds the lock), so nothing depends on a publish but the
    # next server's publish.
    plan, revealed = staging
    names = [r["name"] for r in resources_of(plan, COMMAND)]
    assert not [n for n in names if "-haproxy-drain-" in n or "-haproxy-ready-" in n]
    for server in ("ecom-platform-1", "ecom-platform-2", "ecom-docs-1"):
        publish = f"{server}-release-publish"
        assert depends(plan, publish, f"{server}-haproxy-agent") and depends(plan, publish, f"{server}-release-build")
        for node in ("haproxy-a", "haproxy-b"):      # HAProxy knows the agent before anything is drained
            assert depends(plan, publish, f"{node}-haproxy-config")
        script = by_name(revealed)[publish]["inputs"]["create"]
        assert "flock 8" in script and 'run_step 8>&-' in script    # the publish runs without the lock's fd
        dependents = [r["name"] for r in resources_of(plan, COMMAND) if depends(plan, r["name"], publish)
                      and r["name"] != publish]
        assert dependents == (["ecom-platform-2-release-publish"] if server == "ecom-platform-1" else [])
    # Builds are not serialised: server 2 builds while server 1 is still being published.
    assert not depends(plan, "ecom-platform-2-release-build", "ecom-platform-1-release-publish")
    config = by_name(revealed)["haproxy-a-haproxy-config"]["inputs"]["create"]
    for name, host in revealed["hosts"].items():
        if host["role"] == "app":
            assert f"server {name} {host['privateIp']}:80 check agent-check agent-port 8099 agent-inter 1000ms" in config


def test_haproxy_backends_list_every_app_server(staging):
    _, revealed = staging
    config = by_name(revealed)["haproxy-a-haproxy-config"]["inputs"]["create"]
    for name, host in revealed["hosts"].items():
        if host["role"] == "app":
            assert f"server {name} {host['privateIp']}:80" in config


def test_no_release_no_release_steps():
    plan = offline_plan.run("staging", sha_file_text=None).to_dict()
    names = [r["name"] for r in resources_of(plan, COMMAND)]
    assert names and not [n for n in names if "release" in n or "drain" in n or "ready" in n]
    assert "ecom-platform-1-nginx-site" in names


def test_adding_a_server_adds_it_to_both_haproxy_nodes():
    from ..conftest import synthetic_apps

    revealed = offline_plan.run("staging", sha_file_text=SHA_FILE,
                                config_overrides={"ecom-infra:apps": synthetic_apps(3)}).to_dict(reveal_secrets=True)
    ip = revealed["hosts"]["ecom-platform-3"]["privateIp"]
    for node in ("haproxy-a", "haproxy-b"):
        assert f"server ecom-platform-3 {ip}:80" in by_name(revealed)[f"{node}-haproxy-config"]["inputs"]["create"]


def test_keepalived_steps_wait_for_the_iam_policy_that_lets_them_move_the_eip(staging):
    plan, _ = staging
    urns = {r["type"]: r["urn"] for r in plan["resources"]
            if r["type"] in ("aws:iam/rolePolicy:RolePolicy", "aws:iam/instanceProfile:InstanceProfile")}
    assert len(urns) == 2
    for node in ("haproxy-a", "haproxy-b"):
        for step in ("keepalived-notify-master", "keepalived-config", "keepalived-eip-held"):
            if f"{node}-{step}" not in by_name(plan):
                continue        # eip-held: the intended master only
            deps = by_name(plan)[f"{node}-{step}"]["dependencies"]
            assert set(urns.values()) <= set(deps), (node, step)
    # Steps that do not call AWS do not wait for IAM.
    assert urns["aws:iam/rolePolicy:RolePolicy"] not in by_name(plan)["haproxy-a-haproxy-packages"]["dependencies"]


def test_the_bucket_settings_are_applied_one_after_the_other(plans):
    # S3 answers parallel changes to one bucket's settings with OperationAborted.
    plan = plans("production")
    names = ["sha-bucket", "sha-bucket-public-access", "sha-bucket-ownership", "sha-bucket-versioning",
             "sha-bucket-encryption", "sha-bucket-tls-only", "sha-bucket-lifecycle"]
    urn = {r["name"]: r["urn"] for r in plan["resources"] if r["name"] in names and r["custom"]}
    for before, after in itertools.pairwise(names):
        [setting] = [r for r in plan["resources"] if r["urn"] == urn[after]]
        assert urn[before] in setting["dependencies"], (before, after)


# --------------------------------------------------------------------------- secret steps (issue 10 item 9)

def _secret_steps(revealed: dict) -> list[dict]:
    return [r for r in resources_of(revealed, COMMAND) if r["inputs"].get("stdin") is not None]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_every_rendered_secret_step_passes_the_secret_lint(stack):
    # pulumi-command puts a failed step's command text and whole output in its error, whatever `logging` says.
    pem = "-----BEGIN CERTIFICATE-----\nTLS-PLACEHOLDER-CERT\n-----END CERTIFICATE-----\n"
    revealed = offline_plan.run(stack, sha_file_text=SHA_FILE, secrets={"ecom-infra:tlsCertificate": pem}).to_dict(
        reveal_secrets=True)
    steps = _secret_steps(revealed)
    assert {"git-ssh", "haproxy-tls-cert"} <= {kind for r in steps for kind in ("git-ssh", "haproxy-tls-cert")
                                                if r["name"].endswith(kind)}
    for r in steps:
        check_secret_script(r["name"], r["inputs"]["create"])
        assert r["inputs"]["stdin"] not in r["inputs"]["create"]
        assert r["inputs"]["logging"] == "none"


@pytest.mark.parametrize("line", ["set -x", "set -euxo pipefail", "set -o xtrace", "bash -x ./install.sh",
                                  "BASH_XTRACEFD=2", "cat", "tee /tmp/copy |"])
def test_a_secret_step_that_could_print_its_secret_is_refused_when_the_program_runs(line):
    # E.g. `set -x` added to a shared prelude: every secret step would print what it read from stdin.
    from components.remote_steps import run_steps
    from renderers.steps import Step

    with pytest.raises(ValueError, match=r"^step git-ssh: line 2 (turns on xtrace|copies stdin to the output)"):
        run_steps("h", [Step("git-ssh", f"#!/bin/bash\n{line}\nIFS= read -r key\n", stdin="deploy_key")], {},
                  "i-0", parent=None, secrets={"deploy_key": "k"})
    check_secret_script("plain", "#!/bin/bash\nset -euo pipefail\nset +x\n# set -x would leak\ncat >\"$f\"\n")


def _apps_with(servers: int, **extra) -> str:
    apps = json.loads(__import__("tests.conftest", fromlist=["synthetic_apps"]).synthetic_apps(servers))
    for app in apps:
        app.update(extra)
    return json.dumps(apps)


@pytest.mark.parametrize("batch, waits_for", [
    (None, {1: [], 2: [], 3: [1, 2]}),          # default: all but one at a time
    (1, {1: [], 2: [1], 3: [1, 2]}),            # one at a time
])
def test_servers_restart_in_batches_after_every_build_of_the_app(batch, waits_for):
    extra = {} if batch is None else {"restartBatch": batch}
    plan = offline_plan.run("staging", sha_file_text=SHA_FILE,
                            config_overrides={"ecom-infra:apps": _apps_with(3, **extra)}).to_dict()
    for server in (1, 2, 3):
        publish = f"ecom-platform-{server}-release-publish"
        for built in (1, 2, 3):      # a release that cannot build on one server restarts on none
            assert depends(plan, publish, f"ecom-platform-{built}-release-build"), (server, built)
        for other in (1, 2, 3):
            if other != server:
                assert depends(plan, publish, f"ecom-platform-{other}-release-publish") == (other in waits_for[server])
    assert not depends(plan, "ecom-docs-1-release-publish", "ecom-platform-1-release-publish")  # apps are apart


@pytest.mark.parametrize("drain", [True, False])
def test_a_publish_is_drained_only_when_asked(drain):
    """puma's slots never close the socket nginx uses, so only drainRestarts: true drains a publish."""
    revealed = offline_plan.run("staging", sha_file_text=SHA_FILE, config_overrides={
        "ecom-infra:apps": _apps_with(2, drainRestarts=drain)}).to_dict(reveal_secrets=True)
    script = by_name(revealed)["ecom-platform-1-release-publish"]["inputs"]["create"]
    assert ".socket-changed" not in script
    assert ("the socket nginx uses is kept: no drain" in script) is not drain
    assert "flock 8" in script                  # the drain path (drainRestarts: true) is there either way
