"""Apply the offline plan's remote commands to real hosts, with pulumi-command 1.x's lifecycle.

The plan (every resource, its inputs and dependencies, made by running the Pulumi program under mocks) says
what the hosts should have run; the state file says what they did run. `diff_plan` compares the two and lists
the steps, and `run_plan` runs them over SSH, one at a time:

- a resource new to the plan is created (its `create` runs);
- a changed `triggers` replaces it: the new `create` runs, and the old resource's `delete` runs with the *old*
  stored inputs and connection, at the end of the run (Pulumi's "deleting original"); with
  `delete_before_replace` the old delete runs first instead;
- any other changed input updates it: `update` runs if set, else `create`;
- a resource gone from the plan is deleted with its stored `delete` and connection, in reverse dependency order;
- unchanged resources run nothing.

`addPreviousOutputInEnv` (default true) hands the previous create/update's stdout and stderr to `update` and
`delete` as PULUMI_COMMAND_STDOUT / PULUMI_COMMAND_STDERR, as the provider does.

Each step is recorded in the state file as soon as it succeeds (temp file + rename, mode 600: it holds stored
inputs, secrets included). A failing step stops the run; the next run retries it and what depends on it. An
old resource whose replacement succeeded but whose delete did not happen yet is kept as a *pending delete*
and deleted first by the next run, as Pulumi does.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import heapq
import io
import json
import os
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from ecom_infra.errors import ConfigError
from fleet.ssh import (PREVIOUS_STDERR, PREVIOUS_STDOUT, Connection, SshError, SshRunner, check_environment,
                       copy_dir_script, copy_file_script)

COMMAND = "command:remote:Command"
COPY_TO_REMOTE = "command:remote:CopyToRemote"
REMOTE_TYPES = (COMMAND, COPY_TO_REMOTE)
STATE_VERSION = 1
STDERR_TAIL_LINES = 20
REDACTED = "[secret]"
SECRET_KEY_WORDS = ("secret", "password", "privatekey")

Log = Callable[[str], None]


# -- the plan -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RemoteResource:
    """One command:remote:* resource of the plan, validated."""

    urn: str
    type: str
    name: str
    inputs: dict = field(repr=False)
    connection: Connection = field(repr=False)
    delete_before_replace: bool
    dependencies: tuple[str, ...]  # remote resources it must run after, found through any resource in between
    source_digest: str | None = None  # CopyToRemote: the content, so an edited file is copied again
    host_name: str | None = None  # the plan's name for the host at this address, for progress lines

    @property
    def host(self) -> str:
        return self.host_name or self.connection.label


def _resource_key(name: str) -> str:
    return f"resources[{name}]"


def _check_scripts(inputs: Mapping, key: str) -> None:
    for script in ("create", "update", "delete", "stdin"):
        value = inputs.get(script)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key}.{script}", "must be a string")
    triggers = inputs.get("triggers")
    if triggers is not None and not isinstance(triggers, list):
        raise ConfigError(f"{key}.triggers", "must be a list", '["i-0abc", "3f1c0d5e"]')
    previous = inputs.get("addPreviousOutputInEnv")
    if previous is not None and not isinstance(previous, bool):
        raise ConfigError(f"{key}.addPreviousOutputInEnv", "must be true or false")
    check_environment(inputs.get("environment"), f"{key}.environment")


def _copy_source(inputs: Mapping, key: str) -> tuple[str, str]:
    """CopyToRemote's `source` -> (kind, value) for kind text | path | archive_path."""
    source = inputs.get("source")
    kinds = [kind for kind in ("text", "path", "archive_path") if isinstance(source, Mapping) and kind in source]
    if len(kinds) != 1:
        raise ConfigError(f"{key}.source", "must be exactly one of {text}, {path}, {archive_path}",
                          '{"path": "/abs/file"}')
    kind = kinds[0]
    value = source[kind]
    if not isinstance(value, str):
        raise ConfigError(f"{key}.source.{kind}", "must be a string")
    if kind != "text":
        if not os.path.isabs(value):
            raise ConfigError(f"{key}.source.{kind}", f"must be an absolute path, got {value!r}")
        if not os.path.exists(value):
            raise ConfigError(f"{key}.source.{kind}", f"{value} does not exist on this machine")
    remote_path = inputs.get("remotePath")
    if not isinstance(remote_path, str) or not remote_path.startswith("/"):
        raise ConfigError(f"{key}.remotePath", f"must be an absolute path, got {remote_path!r}", "/etc/x.conf")
    return kind, value


def _source_digest(kind: str, value: str) -> str:
    """A hash of what CopyToRemote would send; the provider keeps an asset hash for the same reason."""
    digest = hashlib.sha256(kind.encode() + b"\0")
    if kind == "text":
        digest.update(value.encode())
    elif os.path.isdir(value):
        for root, dirs, files in os.walk(value):
            dirs.sort()
            for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, value).encode() + b"\0")
                digest.update(oct(os.lstat(path).st_mode).encode() + b"\0")
                if os.path.islink(path):
                    digest.update(os.readlink(path).encode())
                else:
                    digest.update(Path(path).read_bytes())
                digest.update(b"\0")
    else:
        digest.update(Path(value).read_bytes())
    return digest.hexdigest()


def _plan_resources(plan: object) -> list[Mapping]:
    if not isinstance(plan, Mapping) or not isinstance(plan.get("resources"), list):
        raise ConfigError("plan", "must be an object with a resources list")
    resources = plan["resources"]
    seen: set[str] = set()
    for index, resource in enumerate(resources):
        if not isinstance(resource, Mapping) or not isinstance(resource.get("urn"), str):
            raise ConfigError(f"resources[{index}].urn", "missing: every resource needs a urn")
        if resource["urn"] in seen:
            raise ConfigError(f"resources[{index}].urn", f"{resource['urn']} appears twice")
        seen.add(resource["urn"])
        dependencies = resource.get("dependencies", [])
        if not isinstance(dependencies, list) or not all(isinstance(dep, str) for dep in dependencies):
            raise ConfigError(f"resources[{index}].dependencies", "must be a list of urns")
    for resource in resources:
        for dep in resource.get("dependencies", []):
            if dep not in seen:
                raise ConfigError(f"{_resource_key(resource.get('name', resource['urn']))}.dependencies",
                                  f"names {dep}, which is not in the plan")
    return resources


def _remote_dependencies(resources: list[Mapping]) -> dict[str, tuple[str, ...]]:
    """For each remote resource, the remote resources it depends on, directly or through others (aws:, tls:,
    components) in between: those are never run here, but the order they imply still holds."""
    by_urn = {resource["urn"]: resource for resource in resources}
    found: dict[str, frozenset[str]] = {}

    def reach(urn: str, path: tuple[str, ...]) -> frozenset[str]:
        if urn in found:
            return found[urn]
        if urn in path:
            cycle = " -> ".join(by_urn[u].get("name", u) for u in path[path.index(urn):] + (urn,))
            raise ConfigError("resources", f"dependency cycle: {cycle}")
        result: set[str] = set()
        for dep in by_urn[urn].get("dependencies", []):
            below = reach(dep, path + (urn,))  # walked for remote ones too, so any cycle is reported
            result |= {dep} if by_urn[dep].get("type") in REMOTE_TYPES else below
        found[urn] = frozenset(result)
        return found[urn]

    return {resource["urn"]: tuple(sorted(reach(resource["urn"], ())))
            for resource in resources if resource.get("type") in REMOTE_TYPES}


def remote_resources(plan: Mapping) -> list[RemoteResource]:
    """The plan's remote resources, validated, in the order they run: dependencies first, ties by urn."""
    resources = _plan_resources(plan)
    dependencies = _remote_dependencies(resources)
    hosts = plan.get("hosts") if isinstance(plan.get("hosts"), Mapping) else {}
    names = {h.get("privateIp"): name for name, h in hosts.items() if isinstance(h, Mapping)}
    parsed: dict[str, RemoteResource] = {}
    for resource in resources:
        if resource.get("type") not in REMOTE_TYPES:
            continue
        name = resource.get("name") or resource["urn"].rsplit("::", 1)[-1]
        key = f"{_resource_key(name)}.inputs"
        inputs = resource.get("inputs")
        if not isinstance(inputs, Mapping):
            raise ConfigError(key, "missing: a remote resource needs its inputs")
        connection = Connection.from_inputs(inputs.get("connection"), f"{key}.connection")
        _check_scripts(inputs, key)
        digest = None
        if resource["type"] == COPY_TO_REMOTE:
            digest = _source_digest(*_copy_source(inputs, key))
        options = resource.get("options") or {}
        parsed[resource["urn"]] = RemoteResource(
            urn=resource["urn"], type=resource["type"], name=name, inputs=_normalized(inputs),
            connection=connection, delete_before_replace=bool(options.get("delete_before_replace", False)),
            dependencies=dependencies[resource["urn"]], source_digest=digest,
            host_name=names.get(connection.host))
    order = _topological([(urn, res.dependencies) for urn, res in parsed.items()])
    return [parsed[urn] for urn in order]


def _topological(nodes: Iterable[tuple[str, Iterable[str]]]) -> list[str]:
    """Kahn's algorithm; among the nodes ready at the same time the smallest urn goes first (deterministic)."""
    after: dict[str, set[str]] = {}
    waiting: dict[str, int] = {}
    for urn, deps in nodes:
        deps = set(deps)
        waiting[urn] = len(deps)
        for dep in deps:
            after.setdefault(dep, set()).add(urn)
    ready = [urn for urn, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        urn = heapq.heappop(ready)
        order.append(urn)
        for follower in after.get(urn, ()):
            waiting[follower] -= 1
            if waiting[follower] == 0:
                heapq.heappush(ready, follower)
    if len(order) != len(waiting):  # _remote_dependencies reports cycles first; this is the safety net
        raise ConfigError("resources", "dependency cycle among " + ", ".join(sorted(set(waiting) - set(order))))
    return order


def _normalized(inputs: Mapping) -> dict:
    """An absent input and a null one mean the same to the provider: drop nulls so they compare equal."""
    return {key: value for key, value in inputs.items() if value is not None}


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# -- what would run -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Action:
    """One step of a run. `resource` is the plan's resource (create/update/replace); `stored` is the state's
    entry a delete works from (its old inputs and connection)."""

    kind: str  # create | update | replace | delete
    urn: str
    name: str
    host: str
    reason: str
    resource: RemoteResource | None = field(default=None, repr=False, compare=False)
    stored: dict | None = field(default=None, repr=False, compare=False)


def empty_state(plan: Mapping | None = None) -> dict:
    plan = plan or {}
    return {"version": STATE_VERSION, "project": plan.get("project"), "stack": plan.get("stack"),
            "next_serial": 1, "resources": {}, "pending_deletes": []}


def _changed_inputs(stored: Mapping, resource: RemoteResource) -> list[str]:
    """Names (never values) of the inputs that differ; a CopyToRemote's source also differs when its content did."""
    old, new = stored.get("inputs", {}), resource.inputs
    changed = sorted(key for key in set(old) | set(new) if _canonical(old.get(key)) != _canonical(new.get(key)))
    if resource.source_digest != stored.get("source_digest") and "source" not in changed:
        changed.append("source content")
    return changed


def _delete_action(entry: Mapping, reason: str) -> Action:
    return Action("delete", entry["urn"], entry["name"], entry["host"], reason, stored=dict(entry))


def _reverse_dependency_order(entries: list[Mapping]) -> list[Mapping]:
    """Deletes go dependants first: an entry is deleted before the entries it depended on."""
    by_serial = {str(entry["serial"]): entry for entry in entries}
    serials_by_urn: dict[str, list[str]] = {}
    for serial, entry in by_serial.items():
        serials_by_urn.setdefault(entry["urn"], []).append(serial)
    # Edge "dependant before dependency": reverse the stored dependencies. Sort keys keep urn ties stable.
    dependants: dict[str, set[str]] = {serial: set() for serial in by_serial}
    for serial, entry in by_serial.items():
        for dep in entry.get("dependencies", []):
            for dep_serial in serials_by_urn.get(dep, []):
                dependants[dep_serial].add(serial)
    keyed = {f"{by_serial[s]['urn']}\0{int(s):012d}": s for s in by_serial}
    key_of = {s: k for k, s in keyed.items()}
    order = _topological([(key_of[s], [key_of[d] for d in dependants[s]]) for s in by_serial])
    return [by_serial[keyed[key]] for key in order]


def diff_plan(plan: Mapping, state: Mapping | None) -> list[Action]:
    """What a run would do, in order, without doing it (reads CopyToRemote sources, changes nothing).

    1. pending deletes left by an earlier run; 2. creates, updates and replacements in dependency order (a
    delete-before-replace deletes its old resource just before); 3. deletes of removed and replaced resources,
    dependants first.
    """
    return _diff(plan, state)[0]


def _diff(plan: Mapping, state: Mapping | None) -> tuple[list[Action], list[RemoteResource]]:
    state = state or empty_state(plan)
    stored: Mapping[str, Mapping] = state.get("resources", {})
    actions = [_delete_action(entry, "left pending by an earlier run")
               for entry in _reverse_dependency_order(list(state.get("pending_deletes", [])))]
    final_deletes: list[Mapping] = []
    planned = remote_resources(plan)
    for resource in planned:
        old = stored.get(resource.urn)
        if old is None:
            actions.append(Action("create", resource.urn, resource.name, resource.host, "new", resource))
            continue
        if _canonical(old["inputs"].get("triggers")) != _canonical(resource.inputs.get("triggers")):
            if resource.delete_before_replace:
                actions.append(_delete_action(old, "replaced (delete before replace)"))
            else:
                final_deletes.append(old)
            actions.append(Action("replace", resource.urn, resource.name, resource.host, "triggers changed",
                                  resource, dict(old)))
            continue
        changed = _changed_inputs(old, resource)
        if changed:
            actions.append(Action("update", resource.urn, resource.name, resource.host,
                                  "changed: " + ", ".join(changed), resource, dict(old)))
    in_plan = {resource.urn for resource in planned}
    final_deletes += [entry for urn, entry in stored.items() if urn not in in_plan]
    replaced = {entry["serial"] for entry in final_deletes if entry["urn"] in in_plan}
    for entry in _reverse_dependency_order(final_deletes):
        reason = "replaced" if entry["serial"] in replaced else "removed from the plan"
        actions.append(_delete_action(entry, reason))
    return actions, planned


# -- state file ---------------------------------------------------------------------------------------------

def load_state(path: Path) -> dict | None:
    """The state of the last run, or None before the first one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError("--state", f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ConfigError("--state", f"{path} is not an executor state file of version {STATE_VERSION}")
    return state


def save_state(path: Path, state: Mapping) -> None:
    """Write atomically (temp file in the same directory, fsync, rename): a crash leaves the old or the new
    state, never half of one. Mode 600 from creation: the state holds private keys and stdin."""
    text = json.dumps(state, indent=2, sort_keys=True) + "\n"
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case a stale temp file with another mode was left by a killed run
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def _locked(state_path: Path) -> Iterator[None]:
    """One run per state file at a time: two runs would both record steps and lose each other's."""
    lock_path = state_path.with_name(state_path.name + ".lock")
    fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise ConfigError("--state", f"another executor run holds {lock_path}") from None
            raise
        yield
    finally:
        os.close(fd)


# -- running ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepReport:
    kind: str
    name: str
    host: str
    seconds: float
    ok: bool
    exit_code: int | None = None


@dataclass
class RunReport:
    steps: list[StepReport] = field(default_factory=list)
    unchanged: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def counts(self) -> dict[str, int]:
        """Successful steps by action."""
        return dict(Counter(step.kind for step in self.steps if step.ok))


class StepFailed(Exception):
    """A step failed; the message names the resource and host and ends with the tail of stderr (redacted)."""

    def __init__(self, message: str, *, report: RunReport, action: Action, exit_code: int | None):
        super().__init__(message)
        self.report = report
        self.action = action
        self.exit_code = exit_code


class _CommandExit(Exception):
    def __init__(self, exit_code: int, stderr: str):
        super().__init__(f"exit {exit_code}")
        self.exit_code = exit_code
        self.stderr = stderr


def _secrets(*inputs: Mapping | None) -> list[str]:
    """Values that must never be printed: stdin, the private key and anything under a secret-sounding key."""
    found: list[str] = []

    def walk(value: object, secret: bool) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, secret or any(word in str(key).lower() for word in SECRET_KEY_WORDS))
        elif isinstance(value, list):
            for item in value:
                walk(item, secret)
        elif secret and isinstance(value, str):
            found.append(value)

    for item in inputs:
        if item:
            walk(item.get("stdin"), True)
            walk(item, False)
    return found


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (and every longer line of a multi-line one, such as a key) with [secret].
    Very short values are left alone: hiding "y" would hide every y in the output and protect nothing."""
    pieces = set()
    for secret in secrets:
        if len(secret.strip()) >= 4:
            pieces.add(secret.strip())
        pieces |= {line.strip() for line in secret.splitlines() if len(line.strip()) >= 8}
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, REDACTED)
    return text


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


class _Run:
    """One run of the executor: holds the state and records each step the moment it succeeds."""

    def __init__(self, state: dict, state_path: Path, ssh: SshRunner, log: Log):
        self.state = state
        self.state_path = state_path
        self.ssh = ssh
        self.log = log

    def _new_entry(self, resource: RemoteResource, outputs: Mapping[str, str], serial: int | None = None) -> dict:
        if serial is None:  # a new resource; an updated one keeps its serial
            serial = self.state["next_serial"]
            self.state["next_serial"] = serial + 1
        return {"serial": serial, "urn": resource.urn, "type": resource.type, "name": resource.name,
                "host": resource.host, "inputs": resource.inputs, "dependencies": list(resource.dependencies),
                "delete_before_replace": resource.delete_before_replace, "source_digest": resource.source_digest,
                "outputs": dict(outputs)}

    def execute(self, action: Action) -> None:
        """Run the action's remote work, then record it; raises _CommandExit or SshError on failure."""
        resources = self.state["resources"]
        if action.kind == "delete":
            self._delete(action.stored)
            serial = action.stored["serial"]
            if resources.get(action.urn, {}).get("serial") == serial:
                del resources[action.urn]
            self.state["pending_deletes"] = [entry for entry in self.state["pending_deletes"]
                                             if entry["serial"] != serial]
        elif action.kind == "update":
            outputs = self._update(action.resource, action.stored)
            resources[action.urn] = self._new_entry(action.resource, outputs, action.stored["serial"])
        else:  # create, or replace: the new resource is created; the old one is deleted first or at the end
            outputs = self._create(action.resource)
            old = resources.get(action.urn)
            if old is not None:  # create-before-delete: the old one now waits for its delete
                self.state["pending_deletes"].append(old)
            resources[action.urn] = self._new_entry(action.resource, outputs)
        save_state(self.state_path, self.state)

    # The three lifecycle calls, as the provider's Create / Update / Delete do them.

    def _create(self, resource: RemoteResource) -> dict[str, str]:
        if resource.type == COPY_TO_REMOTE:
            self._copy(resource)
            return {}
        script = resource.inputs.get("create")
        if script is None:
            return {"stdout": "", "stderr": ""}
        return self._command(resource.connection, script, resource.inputs, previous=None)

    def _update(self, resource: RemoteResource, stored: Mapping) -> dict[str, str]:
        if resource.type == COPY_TO_REMOTE:
            # The provider copies again only when the content or the remote path changed.
            if (resource.source_digest != stored.get("source_digest")
                    or resource.inputs.get("remotePath") != stored["inputs"].get("remotePath")):
                self._copy(resource)
            return {}
        script = resource.inputs.get("update", resource.inputs.get("create"))
        previous = stored.get("outputs", {})
        if script is None:
            return dict(previous)
        return self._command(resource.connection, script, resource.inputs, previous=previous)

    def _delete(self, stored: Mapping) -> None:
        script = stored["inputs"].get("delete")
        if stored["type"] != COMMAND or script is None:
            return  # CopyToRemote has no delete; a Command without `delete` leaves the host as it is
        connection = Connection.from_inputs(stored["inputs"].get("connection"),
                                            f"state {stored['name']}.inputs.connection")
        self._command(connection, script, stored["inputs"], previous=stored.get("outputs", {}))

    def _command(self, connection: Connection, script: str, inputs: Mapping,
                 previous: Mapping[str, str] | None) -> dict[str, str]:
        optional: dict[str, str] = {}
        if previous and inputs.get("addPreviousOutputInEnv", True):
            optional = {PREVIOUS_STDOUT: previous.get("stdout", ""), PREVIOUS_STDERR: previous.get("stderr", "")}
        stdin = inputs.get("stdin")
        result = self.ssh.run(connection, script, stdin=stdin.encode() if stdin else None,
                              env=check_environment(inputs.get("environment"), "environment"),
                              optional_env=optional)
        if result.exit_code != 0:
            raise _CommandExit(result.exit_code, result.stderr)
        return {"stdout": result.stdout, "stderr": result.stderr}

    def _copy(self, resource: RemoteResource) -> None:
        kind, value = _copy_source(resource.inputs, resource.name)
        remote_path = resource.inputs["remotePath"]
        if kind == "text":
            script, data = copy_file_script(remote_path, ""), value.encode()
        elif os.path.isdir(value):
            script = copy_dir_script(remote_path, os.path.basename(value.rstrip("/")), value.endswith("/"))
            data = _tar_directory(value)
        else:  # a file, or a file archive (.tgz...), which the provider copies as it is, unpacked
            script, data = copy_file_script(remote_path, os.path.basename(value)), Path(value).read_bytes()
        result = self.ssh.run(resource.connection, script, stdin=data)
        if result.exit_code != 0:
            raise _CommandExit(result.exit_code, result.stderr)


def _tar_directory(path: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(path, arcname=".")
    return buffer.getvalue()


def _summary(report: RunReport, failed: bool) -> str:
    counts = report.counts
    parts = [f"{counts.get(kind, 0)} {kind}" for kind in ("create", "update", "replace", "delete")]
    parts.append(f"{report.unchanged} unchanged")
    head = "stopped by a failure" if failed else "done"
    return f"[executor] {head} in {report.seconds:.1f} s: {', '.join(parts)}"


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
            report.seconds = time.monotonic() - started
            log(f"[executor] nothing to do: {report.unchanged} remote resources up to date "
                f"({report.seconds:.1f} s)")
            return report
        with SshRunner(log) as ssh:
            run = _Run(state, state_path, ssh, log)
            for action in actions:
                _run_step(run, action, report, log, started)
        _refresh_unchanged(state, planned, state_path)
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
            tail = _tail(err.stderr)
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


# -- command line -------------------------------------------------------------------------------------------

def _read_plan(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError("--plan", f"{path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ConfigError("--plan", f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet.executor",
                                     description="Run the plan's remote commands over SSH, as pulumi-command.")
    parser.add_argument("--plan", required=True, help="the plan as JSON (the Pulumi program run under mocks)")
    parser.add_argument("--state", required=True, help="state file of earlier runs (created, mode 600)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run and change nothing")
    args = parser.parse_args(argv)
    try:
        plan = _read_plan(args.plan)
        if args.dry_run:
            actions = diff_plan(plan, load_state(Path(args.state)))
            for action in actions:
                print(f"[executor] would {action.kind} {action.host} {action.name} ({action.reason})")
            print(f"[executor] {len(actions)} step(s) would run")
            return 0
        run_plan(plan, Path(args.state))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StepFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
