"""run_plan against real sshd servers on 127.0.0.1: each rule of the executor, pinned by what ran on the host.

Commands append lines to an events file in the test's temp dir, so a test asserts what ran, in which order,
on which server ($SSHD_NAME, set by each sshd) and with which stdin and environment.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from fleet.executor.report import StepFailed
from fleet.executor.run import run_plan
from tests.executor.helpers import command, connection, copy, plan, record, urn

pytestmark = [pytest.mark.tools, pytest.mark.root]


class World:
    """One test's events file, state file and captured log, plus connections to the test servers."""

    def __init__(self, tmp_path: Path, client_key: tuple[str, str]):
        self.dir = tmp_path
        self.events_file = tmp_path / "events"
        self.state_path = tmp_path / "state.json"
        self.private_key = client_key[0]
        self.lines: list[str] = []

    def conn(self, server, **extra) -> dict:
        return connection(server.port, self.private_key, server.host_key, **extra)

    def record(self, text: str) -> str:
        return record(self.events_file, text)

    def run(self, the_plan: dict):
        return run_plan(the_plan, self.state_path, log=self.lines.append)

    def fail(self, the_plan: dict) -> StepFailed:
        with pytest.raises(StepFailed) as caught:
            self.run(the_plan)
        return caught.value

    def events(self) -> list[str]:
        return self.events_file.read_text().splitlines() if self.events_file.exists() else []

    def state(self) -> dict:
        return json.loads(self.state_path.read_text())

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def world(tmp_path, client_key, monkeypatch):
    # The executor's temp dir (keys, known_hosts, sockets) goes under the test's dir, so we can see it is gone.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    return World(tmp_path, client_key)


def ssh_children() -> list[int]:
    """ssh client processes that are children of this test process (masters the executor forgot)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if name == "ssh" and int(fields[1]) == os.getpid():
            found.append(int(entry.name))
    return found


def test_first_run_creates_in_dependency_order_with_stdin_env_and_outputs(world, alpha):
    conn = world.conn(alpha)
    instance = "urn:pulumi:local::ecom-infra::aws:ec2/instance:Instance::web"
    the_plan = plan(
        command("z-base", conn, create=world.record("start z-base on $SSHD_NAME") + "; sleep 1; "
                + world.record("create z-base on $SSHD_NAME") + "; echo base-out"),
        {"urn": instance, "type": "aws:ec2/instance:Instance", "name": "web", "custom": True, "parent": None,
         "dependencies": [urn("z-base")], "options": {}, "inputs": {}},
        command("a-app", conn, deps=(instance,), stdin="line one\nline two\n",
                environment={"ECOM_COLOR": "red and 'quoted' $not_expanded"},
                create=world.record("create a-app") + f"; cat > {world.dir}/stdin; "
                       f"printf '%s' \"$ECOM_COLOR\" > {world.dir}/env"),
        command("m-free", conn, create=world.record("start m-free") + "; sleep 1; " + world.record("create m-free")),
    )
    report = world.run(the_plan)

    # m-free and z-base are independent: they run at once (each starts before either ends), in either order; a-app
    # only after z-base. (Not "a-app after m-free": a new master may open one of two first sessions late.)
    events = world.events()
    assert sorted(events[:2]) == ["start m-free", "start z-base on alpha"]
    assert events.index("create a-app") > events.index("create z-base on alpha")
    assert sorted(events[2:]) == ["create a-app", "create m-free", "create z-base on alpha"]
    assert (world.dir / "stdin").read_text() == "line one\nline two\n"
    assert (world.dir / "env").read_text() == "red and 'quoted' $not_expanded"
    assert report.counts == {"create": 3} and report.unchanged == 0 and report.ok
    state = world.state()
    assert state["resources"][urn("z-base")]["outputs"] == {"stdout": "base-out", "stderr": ""}
    assert stat.S_IMODE(world.state_path.stat().st_mode) == 0o600
    assert f"[executor] {alpha.label} m-free: create ... (new)" in world.lines
    assert any(line.startswith(f"[executor] {alpha.label} a-app: create ok (") for line in world.lines)
    assert world.lines[-1].startswith("[executor] done in ") and "3 create, 0 update" in world.lines[-1]
    # Masters stopped, keys and sockets deleted.
    assert ssh_children() == []
    assert list((world.dir / "tmp").iterdir()) == []


def test_second_run_with_the_same_plan_runs_nothing(world, alpha):
    the_plan = plan(command("a", world.conn(alpha), create=world.record("create a"), triggers=["i-1", 7]))
    world.run(the_plan)
    world.lines.clear()
    report = world.run(the_plan)
    assert world.events() == ["create a"]
    assert report.steps == [] and report.unchanged == 1
    assert len(world.lines) == 1 and world.lines[0].startswith("[executor] nothing to do: 1 remote resources")


def replaceable(world, server, version: str, color: str, **options) -> dict:
    return command("r", world.conn(server), triggers=[version], environment={"ECOM_COLOR": color},
                   create=world.record(f"create r {version} on $SSHD_NAME") + f"; echo out-{version}",
                   delete=world.record(f"delete r {version} on $SSHD_NAME color=$ECOM_COLOR "
                                       "prev=$PULUMI_COMMAND_STDOUT"), **options)


def test_changed_trigger_creates_the_new_then_deletes_the_old_with_old_inputs_and_connection(world, alpha, beta):
    world.run(plan(replaceable(world, alpha, "v1", "red")))
    report = world.run(plan(replaceable(world, beta, "v2", "blue"),
                            command("t", world.conn(beta), deps=("r",), create=world.record("create t"))))
    assert world.events() == [
        "create r v1 on alpha",
        "create r v2 on beta",
        "create t",  # the old resource is deleted at the end, as Pulumi's "deleting original"
        "delete r v1 on alpha color=red prev=out-v1",  # old script, old server, old env, old output
    ]
    assert report.counts == {"replace": 1, "create": 1, "delete": 1}
    assert world.state()["pending_deletes"] == []


def test_delete_before_replace_deletes_the_old_first(world, alpha, beta):
    world.run(plan(replaceable(world, alpha, "v1", "red", delete_before_replace=True)))
    world.run(plan(replaceable(world, beta, "v2", "blue", delete_before_replace=True)))
    assert world.events() == ["create r v1 on alpha", "delete r v1 on alpha color=red prev=out-v1",
                              "create r v2 on beta"]


def test_changed_input_runs_update_or_else_create_with_the_previous_output(world, alpha):
    def the_plan(color: str, u2_version: str) -> dict:
        conn = world.conn(alpha)
        return plan(
            command("u1", conn, environment={"ECOM_COLOR": color},
                    create=world.record("create u1") + "; echo out-u1",
                    update=world.record("update u1 color=$ECOM_COLOR prev=$PULUMI_COMMAND_STDOUT") + "; echo new"),
            command("u2", conn, create=world.record(f"create u2 {u2_version} prev=${{PULUMI_COMMAND_STDOUT-}}")
                    + f"; echo out-u2-{u2_version}"),
            command("u3", conn, addPreviousOutputInEnv=False, environment={"ECOM_COLOR": color},
                    create=world.record("create u3") + "; echo out-u3",
                    update=world.record("update u3 prev=${PULUMI_COMMAND_STDOUT-unset}")),
        )

    world.run(the_plan("red", "v1"))
    report = world.run(the_plan("blue", "v2"))
    assert sorted(world.events()[3:]) == ["create u2 v2 prev=out-u2-v1", "update u1 color=blue prev=out-u1",
                                          "update u3 prev=unset"]     # independent: at once, in any order
    assert report.counts == {"update": 3}
    assert world.state()["resources"][urn("u1")]["outputs"]["stdout"] == "new"
    world.run(the_plan("blue", "v2"))
    assert len(world.events()) == 6  # and then nothing more


def test_removed_resources_are_deleted_dependants_first_with_their_stored_connection(world, alpha, beta):
    def step(name: str, server, deps=()) -> dict:
        return command(name, world.conn(server), deps=deps, create=world.record(f"create {name}"),
                       delete=world.record(f"delete {name} on $SSHD_NAME"))

    world.run(plan(step("a-base", alpha), step("b-mid", beta, ("a-base",)), step("c-top", alpha, ("b-mid",)),
                   step("keep", alpha)))
    report = world.run(plan(step("keep", alpha)))
    assert world.events()[4:] == ["delete c-top on alpha", "delete b-mid on beta", "delete a-base on alpha"]
    assert report.counts == {"delete": 3} and report.unchanged == 1
    assert list(world.state()["resources"]) == [urn("keep")]


def test_a_failing_command_stops_the_run_and_the_rerun_retries_only_it_and_its_dependants(world, alpha):
    flag = world.dir / "allow-b"
    conn = world.conn(alpha)
    the_plan = plan(
        command("a", conn, create=world.record("create a")),
        command("b", conn, deps=("a",), create=world.record("attempt b")
                + f"; test -e {flag} || {{ echo 'cannot reach the bucket' >&2; exit 3; }}; "
                + world.record("create b")),
        command("c", conn, deps=("b",), create=world.record("create c")),
    )
    failure = world.fail(the_plan)
    message = str(failure)
    assert message.startswith(f"create of b on {alpha.label} failed: exited 3 after ")
    assert message.endswith("stderr (last lines):\n    cannot reach the bucket")
    assert failure.exit_code == 3 and failure.report.counts == {"create": 1}
    assert f"[executor] {alpha.label} b: create FAILED (exit 3, " in world.log
    assert world.lines[-1].startswith("[executor] stopped by a failure in ")
    assert world.events() == ["create a", "attempt b"]
    assert list(world.state()["resources"]) == [urn("a")]  # the success was recorded, the failure was not
    assert world.state()["last_run"] == "failed"            # (make up re-plans after such a run)
    assert ssh_children() == []

    flag.touch()
    report = world.run(the_plan)
    assert world.events()[2:] == ["attempt b", "create b", "create c"]
    assert report.counts == {"create": 2} and report.unchanged == 1
    assert world.state()["last_run"] == "ok"


def test_independent_steps_run_at_once_and_a_dependant_waits_for_all_of_them(world, alpha, beta):
    def slow(name: str, server) -> dict:
        return command(name, world.conn(server), create=world.record(f"start {name}") + "; sleep 1; "
                       + world.record(f"end {name}"))

    report = world.run(plan(slow("a", alpha), slow("b", beta), slow("c", alpha),
                            command("d", world.conn(alpha), deps=("a", "b", "c"), create=world.record("create d"))))
    events = world.events()
    # All three started before any ended (the engine runs steps whose dependencies are done at once) ...
    assert sorted(events[:3]) == ["start a", "start b", "start c"]
    assert sorted(events[3:6]) == ["end a", "end b", "end c"]
    # ... and the dependant only after every one of them.
    assert events[6:] == ["create d"]
    assert report.counts == {"create": 4}
    assert report.seconds < 2.8    # three 1 s steps, then d: about 1 s at once, over 3 s one after the other


def test_after_a_failure_no_new_step_starts_and_the_running_ones_finish_and_are_recorded(world, alpha, beta):
    the_plan = plan(
        command("a-fails", world.conn(alpha), create=world.record("attempt a") + "; exit 3"),
        command("b-slow", world.conn(beta), create="sleep 1; " + world.record("create b")),
        command("c-after-b", world.conn(beta), deps=("b-slow",), create=world.record("create c")),
    )
    failure = world.fail(the_plan)
    assert str(failure).startswith(f"create of a-fails on {alpha.label} failed: exited 3")
    # b was running when a failed: it finished and is recorded; c would have been ready only after the failure.
    assert sorted(world.events()) == ["attempt a", "create b"]
    assert list(world.state()["resources"]) == [urn("b-slow")]
    assert world.state()["last_run"] == "failed"
    assert world.lines[-1].startswith("[executor] stopped by a failure in ") and "1 create" in world.lines[-1]
    assert ssh_children() == []


def test_a_failed_update_keeps_the_old_state_and_is_retried(world, alpha):
    flag = world.dir / "allow"
    conn = world.conn(alpha)
    world.run(plan(command("a", conn, create=world.record("create a v1"))))
    new = plan(command("a", conn, create=world.record("try a v2") + f"; test -e {flag}"))
    world.fail(new)
    assert "v1" in world.state()["resources"][urn("a")]["inputs"]["create"]
    flag.touch()
    world.run(new)
    assert world.events() == ["create a v1", "try a v2", "try a v2"]


def test_an_interrupted_replacement_leaves_a_pending_delete_that_the_next_run_finishes(world, alpha):
    flag = world.dir / "allow-delete"

    def the_plan(version: str) -> dict:
        return plan(command("r", world.conn(alpha), triggers=[version], create=world.record(f"create {version}"),
                            delete=world.record(f"try delete {version}") + f"; test -e {flag}"))

    world.run(the_plan("v1"))
    world.fail(the_plan("v2"))
    state = world.state()
    assert state["resources"][urn("r")]["inputs"]["triggers"] == ["v2"]
    assert [entry["inputs"]["triggers"] for entry in state["pending_deletes"]] == [["v1"]]
    flag.touch()
    world.lines.clear()
    report = world.run(the_plan("v2"))
    assert world.events() == ["create v1", "create v2", "try delete v1", "try delete v1"]
    assert report.counts == {"delete": 1}
    assert "left pending by an earlier run" in world.log
    assert world.state()["pending_deletes"] == []


def test_a_wrong_host_key_is_refused_before_any_command_runs(world, alpha, beta):
    conn = world.conn(alpha)
    conn["hostKey"] = beta.host_key
    failure = world.fail(plan(command("a", conn, create=world.record("create a")),
                              command("b", conn, create=world.record("create b"))))
    assert f"create of a on {alpha.label} failed: host key of {alpha.label} does not match" in str(failure)
    assert world.events() == []
    assert world.state()["resources"] == {}
    assert "dial" not in world.log  # a mismatch is not retried: it will not fix itself


def test_secrets_never_reach_the_log_or_the_error(world, alpha):
    secret = "s3cr3t-db-password-value"
    conn = world.conn(alpha)
    world.run(plan(command("ok", conn, stdin=secret, create=f"cat > {world.dir}/got")))
    assert (world.dir / "got").read_text() == secret
    # A step that echoes its stdin to stderr and fails: the stderr tail goes into the error, redacted.
    failure = world.fail(plan(command("ok", conn, stdin=secret, create=f"cat > {world.dir}/got"),
                              command("leaky", conn, stdin=secret, create="cat >&2; echo; exit 1")))
    assert "leaky" in str(failure) and "[secret]" in str(failure)
    for text in (str(failure), world.log):
        assert secret not in text
        assert all(line not in text for line in world.private_key.splitlines()[1:-1])


def test_an_environment_variable_sshd_does_not_accept_fails_the_step(world, alpha):
    failure = world.fail(plan(command("a", world.conn(alpha), environment={"NOT_ACCEPTED": "x", "ECOM_OK": "y"},
                                      create=world.record("create a"))))
    assert f"sshd on {alpha.label} did not accept environment variable(s) NOT_ACCEPTED" in str(failure)
    assert world.events() == []


def test_dial_retries_up_to_dial_error_limit(world, alpha):
    import socket
    with socket.socket() as closed:  # a port nobody listens on: every dial is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    conn = world.conn(alpha, dialErrorLimit=2, perDialTimeout=2)
    conn["port"] = port
    failure = world.fail(plan(command("a", conn, create=world.record("create a"))))
    assert f"could not connect to root@127.0.0.1:{port} after 3 attempt(s)" in str(failure)
    assert "Connection refused" in str(failure)
    assert [line for line in world.lines if "retrying" in line] == [
        f"[executor] 127.0.0.1:{port}: dial 1/2 failed (ssh: connect to host 127.0.0.1 port {port}: "
        "Connection refused): retrying in 0.10 s",
        f"[executor] 127.0.0.1:{port}: dial 2/2 failed (ssh: connect to host 127.0.0.1 port {port}: "
        "Connection refused): retrying in 0.15 s",
    ]


def test_copy_to_remote_text_file_and_directory(world, alpha):
    conn = world.conn(alpha)
    source_file = world.dir / "haproxy.cfg"
    source_file.write_text("global\n")
    source_dir = world.dir / "assets"
    (source_dir / "css").mkdir(parents=True)
    (source_dir / "css" / "app.css").write_text("body {}\n")
    remote = world.dir / "remote"
    (remote / "etc").mkdir(parents=True)
    (remote / "etc" / "existing").write_text("old")
    (remote / "etc" / "existing").chmod(0o640)
    the_plan = plan(
        copy("text", conn, {"text": "RAILS_ENV=production\n"}, f"{remote}/new/dir/env"),
        copy("file", conn, {"path": str(source_file)}, f"{remote}/etc"),
        copy("over", conn, {"text": "new"}, f"{remote}/etc/existing"),
        copy("dir", conn, {"archive_path": str(source_dir)}, f"{remote}/public"),
    )
    report = world.run(the_plan)
    assert report.counts == {"create": 4}
    assert (remote / "new/dir/env").read_text() == "RAILS_ENV=production\n"
    assert stat.S_IMODE((remote / "new/dir/env").stat().st_mode) == 0o644
    assert (remote / "etc/haproxy.cfg").read_text() == "global\n"  # into the existing directory
    assert (remote / "etc/existing").read_text() == "new"
    assert stat.S_IMODE((remote / "etc/existing").stat().st_mode) == 0o640  # an overwrite keeps the mode
    assert (remote / "public/assets/css/app.css").read_text() == "body {}\n"
    assert not list(remote.rglob("*.copy-tmp.*"))

    assert world.run(the_plan).steps == []
    source_file.write_text("global\n  maxconn 100\n")
    report = world.run(the_plan)
    assert [(step.kind, step.name) for step in report.steps] == [("update", "file")]
    assert (remote / "etc/haproxy.cfg").read_text() == "global\n  maxconn 100\n"


def test_command_line_runs_the_plan_and_reports_bad_input_in_one_line(world, alpha):
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[2]
    plan_file = world.dir / "plan.json"
    plan_file.write_text(json.dumps(plan(command("a", world.conn(alpha), create=world.record("create a")))))
    argv = [sys.executable, "-m", "fleet.executor", "--plan", str(plan_file), "--state", str(world.state_path)]
    dry = subprocess.run(argv + ["--dry-run"], cwd=repo, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [f"[executor] would create {alpha.label} a (new)",
                                       "[executor] 1 step(s) would run"]
    assert world.events() == [] and not world.state_path.exists()
    first = subprocess.run(argv, cwd=repo, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert f"[executor] {alpha.label} a: create ok (" in first.stdout
    second = subprocess.run(argv, cwd=repo, capture_output=True, text=True)
    assert second.returncode == 0 and "nothing to do" in second.stdout
    assert world.events() == ["create a"]

    plan_file.write_text(json.dumps(plan(command("a", {"host": "127.0.0.1"}, create="true"))))
    bad = subprocess.run(argv, cwd=repo, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr == "error: resources[a].inputs.connection.privateKey: missing or not an OpenSSH/PEM " \
                         "private key\n"


def test_connect_logs_in_to_every_host_at_once_and_names_each_failure(world, alpha, beta):
    """SshRunner.connect (make up's login check): one answer per connection, in order; the logins stay open."""
    import socket

    from fleet.ssh.connection import Connection
    from fleet.ssh.errors import DialError, HostKeyMismatch
    from fleet.ssh.runner import SshRunner

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    good = Connection.from_inputs(world.conn(alpha), "alpha")
    wrong_key = Connection.from_inputs({**world.conn(beta), "hostKey": alpha.host_key}, "beta")
    refused = Connection.from_inputs({**world.conn(alpha, dialErrorLimit=0), "port": port}, "closed")
    with SshRunner(log=world.lines.append) as ssh:
        errors = ssh.connect([good, wrong_key, refused, good])
        assert errors[0] is None and errors[3] is None
        assert isinstance(errors[1], HostKeyMismatch) and f"host key of {beta.label}" in str(errors[1])
        assert isinstance(errors[2], DialError) and "Connection refused" in str(errors[2])
        assert len(ssh._masters) == 3          # the same connection twice: one master
        assert ssh.run(good, "echo $SSHD_NAME").stdout == "alpha"


def test_logins_prefer_curve25519_and_still_reach_a_host_without_it(world, sshd_servers):
    """The key exchange pulumi-command's Go client makes with Debian 12's sshd; the defaults stay behind it."""
    from fleet.ssh.connection import Connection
    from fleet.ssh.runner import SshRunner

    plain = sshd_servers("kex-any", ("LogLevel DEBUG1",))
    hybrid_only = sshd_servers("kex-hybrid", ("LogLevel DEBUG1", "KexAlgorithms sntrup761x25519-sha512@openssh.com"))
    with SshRunner(log=world.lines.append) as ssh:
        conns = [Connection.from_inputs(world.conn(server), server.name) for server in (plain, hybrid_only)]
        assert ssh.connect(conns) == [None, None]
    assert "kex: algorithm: curve25519-sha256 [preauth]\n" in plain.log.read_text()
    assert "kex: algorithm: sntrup761x25519-sha512@openssh.com [preauth]\n" in hybrid_only.log.read_text()


def test_a_login_whose_commands_cannot_run_fails_the_login_check(world, sshd_servers, alpha):
    """connect runs `true` on each login: a host that lets the key in but runs nothing (here a ForceCommand) fails
    before any step, and names the exit and what the host said."""
    from fleet.ssh.connection import Connection
    from fleet.ssh.runner import SshRunner

    closed = sshd_servers("no-commands", ("ForceCommand echo this account runs nothing >&2; exit 3",))
    with SshRunner(log=world.lines.append) as ssh:
        good, bad = ssh.connect([Connection.from_inputs(world.conn(alpha), "alpha"),
                                 Connection.from_inputs(world.conn(closed), "closed")])
        assert good is None
        assert "logged in, but a command cannot run there (`true` exited 3): this account runs nothing" in str(bad)
        # Asked again, the same runner checks again (the refused login was not kept), and a kept one is not redialed.
        alpha_logins = alpha.log.read_text().count("Accepted publickey")
        again_good, again_bad = ssh.connect([Connection.from_inputs(world.conn(alpha), "alpha"),
                                             Connection.from_inputs(world.conn(closed), "closed")])
        assert again_good is None and "`true` exited 3" in str(again_bad)
        assert alpha.log.read_text().count("Accepted publickey") == alpha_logins
    assert closed.log.read_text().count("Accepted publickey") == 2


def test_a_runner_the_caller_opened_serves_the_steps_on_its_logins_and_stays_open(world, alpha):
    """`make up` logs in to every host first and hands that runner to run_plan: the steps dial no new connection
    (sshd logs one accepted login, the caller's), and the runner is the caller's to close."""
    from fleet.ssh.connection import Connection
    from fleet.ssh.runner import SshRunner

    def logins() -> int:
        return alpha.log.read_text().count("Accepted publickey")

    conn = world.conn(alpha)
    with SshRunner(log=world.lines.append) as ssh:
        assert ssh.connect([Connection.from_inputs(conn, "alpha")]) == [None]
        before = logins()
        run_plan(plan(command("a", conn, create=world.record("create a on $SSHD_NAME")),
                      command("b", conn, deps=("a",), create=world.record("create b"))),
                 world.state_path, log=world.lines.append, ssh=ssh)
        assert logins() == before
        assert ssh.run(Connection.from_inputs(conn, "alpha"), "echo $SSHD_NAME").stdout == "alpha"
    assert world.events() == ["create a on alpha", "create b"]
