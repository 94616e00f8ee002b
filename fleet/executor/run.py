"""`run_plan`: the steps of the diff over SSH, in parallel where the plan's dependencies allow (as the engine runs
them), with progress lines and the state kept current."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from ecom_infra.errors import ConfigError
from fleet.ssh.errors import SshError
from fleet.ssh.runner import SshRunner

from .diff import DELETE_BEFORE_REPLACE, PENDING_DELETE, Action, _diff, empty_state
from .redact import _secrets, redact
from .report import RunReport, StepFailed, StepReport, _summary
from .resources import RemoteResource
from .state import LAST_RUN_FAILED, LAST_RUN_OK, LAST_RUN_RUNNING, _locked, load_state, save_state, set_last_run
from .steps import Log, _CommandExit, _Run

STDERR_TAIL_LINES = 20
# The engine's --parallel is unbounded by default; this only bounds the threads of a very large run.
MAX_PARALLEL = 64


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _check_stack(plan: Mapping, state: Mapping, state_path: Path) -> None:
    for key in ("project", "stack"):
        if state.get(key) is not None and plan.get(key) is not None and state[key] != plan[key]:
            raise ConfigError("--state", f"{state_path} belongs to {key} {state[key]!r}, "
                              f"the plan is for {plan[key]!r}")


def run_plan(plan: dict, state_path: Path, *, log: Log = print, ssh: SshRunner | None = None) -> RunReport:
    """Make the hosts match the plan; returns what ran. Raises StepFailed (after recording every step that
    succeeded) when a step fails, ConfigError when the plan or the state file is malformed. `ssh`: a runner the
    caller opened (and closes), whose logins to the same hosts, users, keys and pins the steps reuse."""
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
        with contextlib.nullcontext(ssh) if ssh is not None else SshRunner(log) as runner:
            run = _Run(state, state_path, runner, log)
            failure = _run_actions(run, actions, planned, report, log)
            if failure is not None:
                set_last_run(state, state_path, LAST_RUN_FAILED)
                report.seconds = time.monotonic() - started
                log(_summary(report, failed=True))
                raise failure
        _refresh_unchanged(state, planned, state_path)
        set_last_run(state, state_path, LAST_RUN_OK)
        report.seconds = time.monotonic() - started
        log(_summary(report, failed=False))
        return report


def _groups(actions: Sequence[Action]) -> tuple[list[Action], list[list[Action]], list[Action]]:
    """(pending deletes, the changes as one job per resource, the final deletes), in the diff's order. A job is
    one create, update or replace, or a delete-before-replace's delete and then its replace."""
    pending = [a for a in actions if a.kind == "delete" and a.reason == PENDING_DELETE]
    rest = actions[len(pending):]
    jobs: list[list[Action]] = []
    finals: list[Action] = []
    for index, action in enumerate(rest):
        if action.kind != "delete":
            if jobs and jobs[-1][-1].kind == "delete" and jobs[-1][-1].urn == action.urn:
                jobs[-1].append(action)
            else:
                jobs.append([action])
        elif action.reason == DELETE_BEFORE_REPLACE:
            jobs.append([action])
        else:
            finals = list(rest[index:])
            break
    return pending, jobs, finals


def _waits_for(jobs: list[list[Action]], planned: Sequence[RemoteResource]) -> list[set[int]]:
    """Per job, the jobs it must wait for: those of every resource it depends on, directly or through unchanged
    ones (the engine's step for an unchanged resource completes only after its own dependencies)."""
    depends = {resource.urn: resource.dependencies for resource in planned}
    job_of = {job[-1].urn: index for index, job in enumerate(jobs)}
    closure: dict[str, set[str]] = {}

    def upstream(urn: str) -> set[str]:
        if urn not in closure:
            closure[urn] = set()   # the plan's graph is acyclic (resources.py checks it)
            for dep in depends.get(urn, ()):
                closure[urn] |= {dep} | upstream(dep)
        return closure[urn]

    return [{job_of[urn] for urn in upstream(job[-1].urn) if urn in job_of} for job in jobs]


def _run_actions(run: _Run, actions: Sequence[Action], planned: Sequence[RemoteResource], report: RunReport,
                 log: Log) -> BaseException | None:
    """Run the diff's steps as the engine does; returns the first failure, if any.

    Pending deletes first, one after the other; then every create, update and replace whose dependencies are
    done, all at once (as `pulumi up`, whose --parallel is unbounded by default); then the final deletes in
    reverse dependency order, one after the other. After a failure no new step starts, the steps already
    running finish (and are recorded), and the run fails with the first failure."""
    pending, jobs, finals = _groups(actions)
    failure: BaseException | None
    for action in pending:
        failure = _attempt(run, [action], report, log)
        if failure is not None:
            return failure
    failure = _run_graph(run, jobs, _waits_for(jobs, planned), report, log)
    if failure is not None:
        return failure
    for action in finals:
        failure = _attempt(run, [action], report, log)
        if failure is not None:
            return failure
    return None


def _run_graph(run: _Run, jobs: list[list[Action]], waits: list[set[int]], report: RunReport,
               log: Log) -> BaseException | None:
    waiting = set(range(len(jobs)))
    done: set[int] = set()
    failure: BaseException | None = None
    running: dict[Future, int] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), MAX_PARALLEL))) as pool:
        while True:
            if failure is None:
                for index in sorted(index for index in waiting if waits[index] <= done):
                    waiting.discard(index)
                    running[pool.submit(_attempt, run, jobs[index], report, log)] = index
            if not running:
                return failure
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                index = running.pop(future)
                raised = future.exception()     # not a StepFailed: a defect, raised after the others finish
                error = raised if raised is not None else future.result()
                if error is None:
                    done.add(index)
                elif failure is None:
                    failure = error


def _attempt(run: _Run, job: list[Action], report: RunReport, log: Log) -> StepFailed | None:
    """Run a job's steps in order; the StepFailed of the one that failed, or None."""
    try:
        for action in job:
            _run_step(run, action, report, log)
    except StepFailed as failed:
        return failed
    return None


def _run_step(run: _Run, action: Action, report: RunReport, log: Log) -> None:
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
