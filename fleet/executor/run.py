"""`run_plan`: the steps of the diff, one at a time over SSH, with progress lines and the state kept current."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from ecom_infra.errors import ConfigError
from fleet.ssh.errors import SshError
from fleet.ssh.runner import SshRunner

from .diff import Action, _diff, empty_state
from .redact import _secrets, redact
from .report import RunReport, StepFailed, StepReport, _summary
from .resources import RemoteResource
from .state import LAST_RUN_FAILED, LAST_RUN_OK, LAST_RUN_RUNNING, _locked, load_state, save_state, set_last_run
from .steps import Log, _CommandExit, _Run

STDERR_TAIL_LINES = 20


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _check_stack(plan: Mapping, state: Mapping, state_path: Path) -> None:
    for key in ("project", "stack"):
        if state.get(key) is not None and plan.get(key) is not None and state[key] != plan[key]:
            raise ConfigError("--state", f"{state_path} belongs to {key} {state[key]!r}, "
                              f"the plan is for {plan[key]!r}")


def run_plan(plan: dict, state_path: Path, *, log: Log = print) -> RunReport:
    """Make the hosts match the plan; returns what ran. Raises StepFailed (after recording every step that
    succeeded) when a step fails, ConfigError when the plan or the state file is malformed."""
    started = time.monotonic()
    state_path = Path(state_path)
    with _locked(state_path):
        state = load_state(state_path) or empty_state(plan)
        _check_stack(plan, state, state_path)
        actions, planned = _diff(plan, state)
        if not state_path.exists():
            save_state(state_path, state)  # from the first run on, the state file says whose it is
        touched = {action.urn for action in actions if action.resource is not None}
        report = RunReport(unchanged=sum(1 for resource in planned if resource.urn not in touched))
        if not actions:
            _refresh_unchanged(state, planned, state_path)
            set_last_run(state, state_path, LAST_RUN_OK)
            report.seconds = time.monotonic() - started
            log(f"[executor] nothing to do: {report.unchanged} remote resources up to date "
                f"({report.seconds:.1f} s)")
            return report
        set_last_run(state, state_path, LAST_RUN_RUNNING)     # what a killed run leaves
        with SshRunner(log) as ssh:
            run = _Run(state, state_path, ssh, log)
            try:
                for action in actions:
                    _run_step(run, action, report, log, started)
            except StepFailed:
                set_last_run(state, state_path, LAST_RUN_FAILED)
                raise
        _refresh_unchanged(state, planned, state_path)
        set_last_run(state, state_path, LAST_RUN_OK)
        report.seconds = time.monotonic() - started
        log(_summary(report, failed=False))
        return report


def _run_step(run: _Run, action: Action, report: RunReport, log: Log, started: float) -> None:
    prefix = f"[executor] {action.host} {action.name}: {action.kind}"
    log(f"{prefix} ... ({action.reason})")
    step_started = time.monotonic()
    try:
        run.execute(action)
    except (_CommandExit, SshError) as err:
        seconds = time.monotonic() - step_started
        exit_code = err.exit_code if isinstance(err, _CommandExit) else None
        secrets = _secrets(action.resource.inputs if action.resource else None, action.stored and
                           action.stored.get("inputs"))
        if exit_code is not None:
            log(f"{prefix} FAILED (exit {exit_code}, {seconds:.1f} s)")
            detail = f"exited {exit_code} after {seconds:.1f} s"
            tail = _tail(err.stderr) if isinstance(err, _CommandExit) else ""
            detail += f"; stderr (last lines):\n{tail}" if tail else "; no stderr"
        else:
            log(f"{prefix} FAILED (before the command ran, {seconds:.1f} s)")
            detail = str(err)
        report.steps.append(StepReport(action.kind, action.name, action.host, seconds, False, exit_code))
        report.seconds = time.monotonic() - started
        log(_summary(report, failed=True))
        message = redact(f"{action.kind} of {action.name} on {action.host} failed: {detail}", secrets)
        raise StepFailed(message, report=report, action=action, exit_code=exit_code) from None
    seconds = time.monotonic() - step_started
    report.steps.append(StepReport(action.kind, action.name, action.host, seconds, True, 0))
    log(f"{prefix} ok ({seconds:.1f} s)")


def _refresh_unchanged(state: dict, planned: list[RemoteResource], state_path: Path) -> None:
    """Dependencies, names and hosts can change without any input changing (nothing runs for that, as in
    Pulumi); keep the stored copy current so later deletes go in the right order."""
    changed = False
    for resource in planned:
        entry = state["resources"].get(resource.urn)
        if entry is None:
            continue
        fresh = {"dependencies": list(resource.dependencies), "name": resource.name,
                 "delete_before_replace": resource.delete_before_replace}
        if any(entry.get(key) != value for key, value in fresh.items()):
            entry.update(fresh)
            changed = True
    if changed or not state_path.exists():
        save_state(state_path, state)
