"""diff_plan without any host: which steps a plan and a state give, in which order, and bad input."""

from __future__ import annotations

import copy as copylib
import json

import pytest

from ecom_infra.errors import ConfigError
from fleet.executor import run as executor_run
from fleet.executor.diff import diff_plan
from fleet.executor.run import run_plan
from fleet.ssh.runner import CommandResult
from tests.executor.helpers import command, copy, new_ssh_key, other, plan, urn

PRIVATE_KEY, HOST_KEY = new_ssh_key()
CONN = {"host": "10.213.0.11", "port": 22, "user": "admin", "privateKey": PRIVATE_KEY, "hostKey": HOST_KEY}


class FakeSsh:
    """Stands in for SshRunner: every command succeeds, and the calls are recorded."""

    calls: list[tuple[str, str]] = []

    def __init__(self, log):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run(self, conn, script, *, stdin=None, env=None, optional_env=None):
        FakeSsh.calls.append((conn.host, script))
        return CommandResult(0, f"ran {script}", "")


@pytest.fixture
def state_after(monkeypatch, tmp_path):
    """Runs a plan against FakeSsh and returns the state it leaves: the 'before' of a diff."""
    monkeypatch.setattr(executor_run, "SshRunner", FakeSsh)
    FakeSsh.calls = []

    def run(the_plan: dict) -> dict:
        path = tmp_path / "state.json"
        run_plan(the_plan, path, log=lambda line: None)
        return json.loads(path.read_text())

    return run


def kinds(actions) -> list[tuple[str, str]]:
    return [(action.kind, action.name) for action in actions]


def test_first_diff_creates_in_dependency_order_ties_by_urn():
    the_plan = plan(
        command("z-base", CONN, create="z"),
        other("instance", deps=(urn("z-base"),)),  # an AWS resource between two commands
        command("a-app", CONN, deps=("urn:pulumi:local::ecom-infra::aws:ec2/instance:Instance::instance",),
                create="a"),
        command("m-free", CONN, create="m"),
    )
    # a-app reaches z-base only through the instance; m-free sorts before z-base when both are ready.
    assert kinds(diff_plan(the_plan, None)) == [("create", "m-free"), ("create", "z-base"), ("create", "a-app")]


def test_non_remote_resources_are_never_steps():
    assert diff_plan(plan(other("vpc", "aws:ec2/vpc:Vpc"), other("key", "tls:index/privateKey:PrivateKey")),
                     None) == []


def test_same_plan_again_gives_no_steps(state_after):
    the_plan = plan(command("a", CONN, create="a", triggers=["i-1"]), command("b", CONN, create="b", deps=("a",)))
    assert diff_plan(the_plan, state_after(the_plan)) == []


def test_absent_and_null_inputs_are_the_same(state_after):
    before = state_after(plan(command("a", CONN, create="a")))
    assert diff_plan(plan(command("a", CONN, create="a", update=None, stdin=None)), before) == []


def test_changed_trigger_replaces_and_deletes_the_old_one_last(state_after):
    before = state_after(plan(command("a", CONN, create="a", delete="da", triggers=["sha-1"]),
                              command("b", CONN, create="b")))
    actions = diff_plan(plan(command("a", CONN, create="a", delete="da", triggers=["sha-2"]),
                             command("b", CONN, create="b2"),
                             command("c", CONN, create="c", deps=("a",))), before)
    assert kinds(actions) == [("replace", "a"), ("update", "b"), ("create", "c"), ("delete", "a")]
    assert actions[-1].reason == "replaced"
    assert actions[-1].stored["inputs"]["triggers"] == ["sha-1"]  # the delete works from the old inputs


def test_delete_before_replace_deletes_first(state_after):
    before = state_after(plan(command("a", CONN, create="a", triggers=[1])))
    actions = diff_plan(plan(command("a", CONN, create="a", triggers=[2], delete_before_replace=True)), before)
    assert kinds(actions) == [("delete", "a"), ("replace", "a")]


def test_other_changes_update_and_the_reason_names_keys_not_values(state_after):
    before = state_after(plan(command("a", CONN, create="a", stdin="old-secret-value", triggers=["x"])))
    changed = dict(CONN, port=2222)
    actions = diff_plan(plan(command("a", changed, create="a", stdin="new-secret-value", triggers=["x"])), before)
    assert kinds(actions) == [("update", "a")]
    assert actions[0].reason == "changed: connection, stdin"
    assert "secret-value" not in repr(actions)


def test_removed_resources_are_deleted_dependants_first(state_after):
    before = state_after(plan(command("a-base", CONN, create="a"),
                              command("b-mid", CONN, create="b", deps=("a-base",)),
                              command("c-top", CONN, create="c", deps=("b-mid",)), command("keep", CONN, create="k")))
    actions = diff_plan(plan(command("keep", CONN, create="k")), before)
    assert kinds(actions) == [("delete", "c-top"), ("delete", "b-mid"), ("delete", "a-base")]
    assert {action.reason for action in actions} == {"removed from the plan"}


def test_pending_deletes_of_an_earlier_run_go_first(state_after):
    before = state_after(plan(command("a", CONN, create="a", triggers=[1])))
    before["pending_deletes"].append(dict(before["resources"][urn("a")], serial=99, name="a-old"))
    actions = diff_plan(plan(command("a", CONN, create="a", triggers=[1]), command("n", CONN, create="n")), before)
    assert kinds(actions) == [("delete", "a-old"), ("create", "n")]


def test_diff_changes_nothing(state_after):
    before = state_after(plan(command("a", CONN, create="a", triggers=[1])))
    kept = copylib.deepcopy(before)
    diff_plan(plan(command("b", CONN, create="b")), before)
    assert before == kept


def test_copy_source_content_change_is_an_update(state_after, tmp_path):
    source = tmp_path / "app.conf"
    source.write_text("one\n")
    the_plan = plan(copy("conf", CONN, {"path": str(source)}, "/etc/app.conf"))
    before = state_after(the_plan)
    assert diff_plan(the_plan, before) == []
    source.write_text("two\n")
    actions = diff_plan(the_plan, before)
    assert kinds(actions) == [("update", "conf")] and actions[0].reason == "changed: source content"


@pytest.mark.parametrize(("mutate", "key", "problem"), [
    (lambda r: r["inputs"]["connection"].pop("host"), "resources[a].inputs.connection.host", "must be a host"),
    (lambda r: r["inputs"]["connection"].update(port=70000), "resources[a].inputs.connection.port", "1..65535"),
    (lambda r: r["inputs"]["connection"].update(hostKey="ssh-ed25519 !!!"), "resources[a].inputs.connection.hostKey",
     "base64"),
    (lambda r: r["inputs"]["connection"].pop("hostKey"), "resources[a].inputs.connection.hostKey", "pins"),
    (lambda r: r["inputs"]["connection"].update(hostKey="ssh-rsa " + HOST_KEY.split()[1]),
     "resources[a].inputs.connection.hostKey", "not a ssh-rsa public key"),
    (lambda r: r["inputs"]["connection"].update(privateKey="hunter22"), "resources[a].inputs.connection.privateKey",
     "missing or not"),
    (lambda r: r["inputs"]["connection"].update(proxy={"host": "bastion"}), "resources[a].inputs.connection.proxy",
     "not supported"),
    (lambda r: r["inputs"].update(environment={"1BAD": "x"}), "resources[a].inputs.environment.1BAD", "not a valid"),
    (lambda r: r["inputs"].update(environment={"LD_PRELOAD": "/x.so"}), "resources[a].inputs.environment.LD_PRELOAD",
     "local ssh client"),
    (lambda r: r["inputs"].update(triggers="sha"), "resources[a].inputs.triggers", "must be a list"),
    (lambda r: r["inputs"].update(create=["echo"]), "resources[a].inputs.create", "must be a string"),
    (lambda r: r.update(dependencies=["urn:nowhere"]), "resources[a].dependencies", "not in the plan"),
])
def test_bad_input_is_one_line_naming_the_key(mutate, key, problem):
    resource = command("a", copylib.deepcopy(CONN), create="a")
    mutate(resource)
    with pytest.raises(ConfigError) as caught:
        diff_plan(plan(resource), None)
    message = str(caught.value)
    assert message.startswith(key + ":") and problem in message
    assert "\n" not in message and "hunter22" not in message


def test_dependency_cycle_is_named():
    the_plan = plan(command("a", CONN, create="a", deps=("b",)), command("b", CONN, create="b", deps=("a",)))
    with pytest.raises(ConfigError, match=r"^resources: dependency cycle: a -> b -> a$"):
        diff_plan(the_plan, None)


def test_copy_needs_an_existing_absolute_source():
    with pytest.raises(ConfigError, match=r"^resources\[conf\]\.inputs\.source\.path: /no/such does not exist"):
        diff_plan(plan(copy("conf", CONN, {"path": "/no/such"}, "/etc/x")), None)
    with pytest.raises(ConfigError, match=r"^resources\[conf\]\.inputs\.remotePath: must be an absolute path"):
        diff_plan(plan(copy("conf", CONN, {"text": "x"}, "etc/x")), None)
