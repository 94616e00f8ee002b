"""Issue 10 item 11 with the real haproxy: the app server's agent (agent-check) keeps a server
drained exactly while a publish wrapped by `drained` runs, and however that publish ends (fails,
is killed) HAProxy gets "ready" back at its next check, with no step run on the HAProxy side."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from renderers.haproxy.agent import drained, render_agent
from renderers.haproxy.haproxy_cfg import render_haproxy_cfg
from renderers.haproxy.layout import AgentLayout
from renderers.haproxy.spec import Backend, HealthCheck
from renderers.steps import Step
from tests.haproxy.helpers import (
    SYSTEM_PYTHON,
    HaproxyProcess,
    ask_socket,
    free_port,
    local_layout,
    need,
    wait_until,
)

pytestmark = [pytest.mark.tools, pytest.mark.root]

CHECKS = HealthCheck(interval_s=1, fall=2, rise=1)


@dataclasses.dataclass
class Lab:
    proxy: HaproxyProcess
    agent: AgentLayout
    directory: Path

    def status(self, server: str = "app-1") -> str:
        # "DRAIN (agent)" when the agent said so: the state is the first word.
        return self.proxy.server_status("ecom-platform", server)["status"].split(" ")[0]

    def wait_status(self, want: str, timeout: float = 5) -> None:
        wait_until(lambda: self.status() == want, timeout, f"app-1 {want} in HAProxy")

    def publish(self, body: str, socket_flag: str | None = None, drain_always: bool = True) -> subprocess.Popen:
        """The wrapped step as the remote command runs it (bash -c), in a session of its own."""
        step = drained(Step("release-publish", f"#!/bin/bash\nset -euo pipefail\n{body}\n"), CHECKS, self.agent,
                       socket_flag=socket_flag, drain_always=drain_always)
        return subprocess.Popen(["bash", "-c", step.create], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)


@pytest.fixture
def lab(short_dir, app_servers, haproxy_factory):
    need(SYSTEM_PYTHON, "flock")
    agent = AgentLayout(port=free_port(), inter_ms=200, state_dir=str(short_dir / "agent"),
                        script_path=str(short_dir / "agent.py"))
    Path(agent.script_path).write_text(render_agent(agent))
    process = subprocess.Popen([SYSTEM_PYTHON, agent.script_path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    app1, app2 = (s.as_backend_server() for s in app_servers("app-1", "app-2"))
    backend = Backend("ecom-platform", ("shop.test",), "/up", (dataclasses.replace(app1, agent_port=agent.port), app2))
    layout = local_layout(short_dir)
    Path(layout.config_path).write_text(render_haproxy_cfg([backend], health=CHECKS, layout=layout, agent=agent))
    lab = Lab(haproxy_factory(layout), agent, short_dir)
    try:
        lab.wait_status("UP")
        yield lab
    finally:
        process.kill()
        process.wait(5)


def test_a_publish_is_drained_while_it_runs_and_ready_after_it_succeeds(lab):
    gate = lab.directory / "go"
    run = lab.publish(f"while [ ! -e {gate} ]; do sleep 0.05; done; echo published")
    lab.wait_status("DRAIN")
    assert lab.status("app-2") == "UP"
    gate.touch()
    output, _ = run.communicate(timeout=30)
    assert run.returncode == 0, output
    assert "published" in output and "HAProxy agent answers since the change: 127.0.0.1 drain" in output
    assert "127.0.0.1 ready" in output
    assert lab.status() == "UP"


def test_a_failed_publish_leaves_the_server_ready(lab):
    gate = lab.directory / "go"
    run = lab.publish(f"while [ ! -e {gate} ]; do sleep 0.05; done; echo 'health check failed' >&2; exit 3")
    lab.wait_status("DRAIN")
    gate.touch()
    output, _ = run.communicate(timeout=30)
    assert run.returncode == 3, output
    lab.wait_status("UP", timeout=2)


def test_a_killed_publish_leaves_the_server_ready_without_any_other_step(lab):
    run = lab.publish("sleep 300")
    lab.wait_status("DRAIN")
    os.killpg(run.pid, signal.SIGKILL)       # the whole deploy dies at once: no trap, no cleanup
    run.wait(5)
    lab.wait_status("UP", timeout=2)


def test_a_drain_left_by_anything_else_is_undone_at_the_next_check(lab):
    # E.g. the runtime API drain of the earlier rolling restart, whose `ready` step never ran.
    assert ask_socket(lab.proxy.layout.admin_socket, "set server ecom-platform/app-1 state drain").strip() == ""
    time.sleep(0.05)
    lab.wait_status("UP", timeout=2)


def test_a_publish_that_keeps_pumas_socket_is_not_drained_and_one_that_recreates_it_is(lab):
    """drain_always False: while the socket-changed flag is absent the step runs with the server UP all along;
    present, drained."""
    flag, gate = lab.directory / "socket-changed", lab.directory / "go"
    run = lab.publish(f"while [ ! -e {gate} ]; do sleep 0.05; done; echo published", socket_flag=str(flag), drain_always=False)
    time.sleep(1.0)                                   # five agent intervals: a drain would show by now
    assert lab.status() == "UP"
    gate.touch()
    output, _ = run.communicate(timeout=30)
    assert run.returncode == 0 and "published" in output and "no drain" in output, output
    assert "HAProxy agent answers" not in output

    gate.unlink()
    flag.touch()
    run = lab.publish(f"while [ ! -e {gate} ]; do sleep 0.05; done; echo published", socket_flag=str(flag), drain_always=False)
    lab.wait_status("DRAIN")
    gate.touch()
    output, _ = run.communicate(timeout=30)
    assert run.returncode == 0 and "socket is re-created: drained" in output, output
    assert lab.status() == "UP"


def test_a_publish_with_no_socket_flag_is_drained_only_when_asked(lab):
    """puma's slots: no flag (the socket nginx uses is never closed), so drain_always alone decides."""
    gate = lab.directory / "go"
    run = lab.publish(f"while [ ! -e {gate} ]; do sleep 0.05; done; echo published", drain_always=False)
    time.sleep(1.0)                                   # five agent intervals: a drain would show by now
    assert lab.status() == "UP"
    gate.touch()
    output, _ = run.communicate(timeout=30)
    assert run.returncode == 0 and "the socket nginx uses is kept: no drain" in output, output
    gate.unlink()
    run = lab.publish(f"while [ ! -e {gate} ]; do sleep 0.05; done; echo published", drain_always=True)
    lab.wait_status("DRAIN")
    gate.touch()
    output, _ = run.communicate(timeout=30)
    assert run.returncode == 0 and "no drain" not in output, output
    assert lab.status() == "UP"


def test_an_undrained_publish_that_fails_passes_its_status_on(lab):
    run = lab.publish("echo 'health check failed' >&2; exit 3", socket_flag=str(lab.directory / "socket-changed"),
                      drain_always=False)
    output, _ = run.communicate(timeout=30)
    assert run.returncode == 3, output


def test_a_drained_publish_that_keeps_the_socket_skips_the_wait_for_checks(lab):
    """Socket kept and requests waited under HAProxy's check timeout (as the step reports): its checks never
    failed, no hold; a longer wait, a step that reports nothing, or a re-created socket: the hold."""
    flag = lab.directory / "socket-changed"
    hold = CHECKS.interval_s * (CHECKS.rise + 1)        # settle = (rise + 1) * interval = 2 s here
    cases = (("900", False, False), ("5000", False, True), (None, False, True), ("900", True, True))
    for waited, recreated, holds in cases:
        flag.unlink(missing_ok=True)
        if recreated:
            flag.touch()
        tell = f'echo {waited} > "$ECOM_RESTART_WAIT_FILE"; ' if waited is not None else ""
        started = time.monotonic()
        run = lab.publish(f"{tell}sleep 1; echo published", socket_flag=str(flag))
        output, _ = run.communicate(timeout=30)
        took = time.monotonic() - started
        assert run.returncode == 0 and "127.0.0.1 drain" in output, output
        assert ("holding" in output) is holds and ("no hold" in output) is not holds, output
        # the heard waits are 2 * 0.2 + 0.2 s each, before and after the step.
        heard = 2 * (2 * lab.agent.inter_ms + 200) / 1000
        least = 1.0 + heard + (hold if holds else 0)
        assert least <= took < least + hold - 0.5, (waited, recreated, took)


def test_an_undrained_publish_holds_only_when_requests_waited_past_the_check_timeout(lab):
    """drain_always False, socket kept: a restart that kept requests waiting 5 s or more may have let HAProxy's
    checks fail, so the publish holds until they can have seen the server UP; under that, it ends at once."""
    flag = lab.directory / "socket-changed"
    for waited, holds in (("4999", False), ("5000", True)):
        started = time.monotonic()
        run = lab.publish(f'echo {waited} > "$ECOM_RESTART_WAIT_FILE"; echo published', socket_flag=str(flag),
                          drain_always=False)
        output, _ = run.communicate(timeout=30)
        took = time.monotonic() - started
        assert run.returncode == 0 and "no drain" in output, output
        assert ("holding" in output) is holds, output
        assert (took >= CHECKS.interval_s * (CHECKS.rise + 1)) is holds, (waited, took)
