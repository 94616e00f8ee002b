"""The plan's remote resources (command:remote:Command, CopyToRemote), validated, with the remote dependencies
between them and the order they run in."""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ecom_infra.errors import ConfigError
from fleet.ssh.connection import Connection, check_environment

COMMAND = "command:remote:Command"
COPY_TO_REMOTE = "command:remote:CopyToRemote"
REMOTE_TYPES = (COMMAND, COPY_TO_REMOTE)


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
    if not isinstance(source, Mapping) or len(kinds) != 1:
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
    raw_hosts = plan.get("hosts")
    hosts: Mapping = raw_hosts if isinstance(raw_hosts, Mapping) else {}
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
