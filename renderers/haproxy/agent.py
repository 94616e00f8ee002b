"""The agent HAProxy's agent-check asks on each app server, and the publish it drains the server around."""
from __future__ import annotations

import dataclasses

from ecom_infra.rules import NAME, check

from .. import content_hash, render
from ..steps import Step
from .layout import AgentLayout
from .spec import CHECK_TIMEOUT_S, HealthCheck, _check_path, _heredoc_safe

AGENT_STEP = "haproxy-agent"
_HEREDOC_AGENT = "ECOM_HAPROXY_AGENT"
_HEREDOC_DRAINED = "ECOM_DRAINED_STEP"


def render_agent(agent: AgentLayout = AgentLayout()) -> str:
    """The agent itself (Python, run by systemd)."""
    agent.validate()
    return render("haproxy/haproxy_agent.py.j2", agent=agent,
                  py={"state_dir": repr(agent.state_dir), "port": repr(agent.port)})


def agent_step(agent: AgentLayout = AgentLayout()) -> Step:
    """Install and start the agent on an app server; re-run when what it installs changes."""
    agent.validate()
    script = _heredoc_safe(render_agent(agent), _HEREDOC_AGENT)
    unit = _heredoc_safe(render("haproxy/haproxy_agent.service.j2", agent=agent), _HEREDOC_AGENT)
    return Step(name=AGENT_STEP, create=render("haproxy/agent_install.sh.j2", agent=agent, agent_script=script,
                                               unit_text=unit, delimiter=_HEREDOC_AGENT),
                triggers=(content_hash(script + unit),))


def drained(step: Step, health: HealthCheck = HealthCheck(), agent: AgentLayout = AgentLayout(),
            socket_flag: str | None = None, drain_always: bool = True) -> Step:
    """`step` (a release-publish) run while this app server's agent answers "drain".

    The lock that makes the agent say "drain" is held by the wrapping shell only, so the server
    is ready again however the step ends (see templates/haproxy/drained.sh.j2).
    `socket_flag`: the file that says the step closes the socket nginx uses (None: it never does, as with
    puma's slots). While the socket is kept, the hold for HAProxy's checks is skipped when the step reports
    (ECOM_RESTART_WAIT_FILE) that requests waited for puma less than their timeout and, with `drain_always`
    False, so is the drain."""
    health.validate()
    agent.validate()
    if socket_flag is not None:
        _check_path(socket_flag, "socket_flag")
    check(bool(NAME.fullmatch(step.name)), "step.name", f"{step.name!r} must be kebab-case")
    script = _heredoc_safe(step.create, _HEREDOC_DRAINED)
    heard_wait_ms = 2 * agent.inter_ms + 200
    return dataclasses.replace(step, create=render(
        "haproxy/drained.sh.j2", step=step.name, script=script, delimiter=_HEREDOC_DRAINED, agent=agent,
        health=health, heard_wait_s=f"{heard_wait_ms // 1000}.{heard_wait_ms % 1000:03d}",
        settle_s=(health.rise + 1) * health.interval_s, socket_flag=socket_flag, drain_always=drain_always,
        check_timeout_s=CHECK_TIMEOUT_S))
