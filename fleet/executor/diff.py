"""What a run would do: the plan compared with the state file, as a list of steps (nothing runs here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .resources import RemoteResource, _canonical, _topological, remote_resources
from .state import STATE_VERSION


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

    @property
    def planned(self) -> RemoteResource:
        """The plan's resource: every kind but delete has one."""
        if self.resource is None:
            raise ValueError(f"{self.kind} {self.urn}: no planned resource")
        return self.resource

    @property
    def recorded(self) -> dict:
        """The state's entry: deletes and updates have one."""
        if self.stored is None:
            raise ValueError(f"{self.kind} {self.urn}: no recorded state")
        return self.stored


# Reasons that say where a delete belongs in a run (run.py groups the steps by them).
PENDING_DELETE = "left pending by an earlier run"
DELETE_BEFORE_REPLACE = "replaced (delete before replace)"


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
    actions = [_delete_action(entry, PENDING_DELETE)
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
                actions.append(_delete_action(old, DELETE_BEFORE_REPLACE))
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
