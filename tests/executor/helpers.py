"""Builders for executor plans in tests: plan resources shaped like the offline plan's JSON."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.support.keys import new_ssh_key  # noqa: F401 - re-exported for the executor tests

PROJECT = "ecom-infra"
STACK = "local"
COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"


def urn(name: str, type_: str = COMMAND) -> str:
    return f"urn:pulumi:{STACK}::{PROJECT}::ecom:app:AppServer${type_}::{name}"


def connection(port: int, private_key: str, host_key: str, **extra) -> dict:
    return {"host": "127.0.0.1", "port": port, "user": extra.pop("user", "root"), "privateKey": private_key,
            "hostKey": host_key, "dialErrorLimit": extra.pop("dialErrorLimit", 2),
            "perDialTimeout": extra.pop("perDialTimeout", 5), **extra}


def command(name: str, conn: dict, *, deps: tuple[str, ...] = (), delete_before_replace: bool = False,
            **inputs) -> dict:
    """A command:remote:Command resource; `deps` are names of other resources (made into urns)."""
    return {"urn": urn(name), "type": COMMAND, "name": name, "custom": True, "parent": None,
            "dependencies": sorted(urn(dep) if "::" not in dep else dep for dep in deps),
            "options": {"delete_before_replace": delete_before_replace},
            "inputs": {"connection": conn, **inputs}}


def copy(name: str, conn: dict, source: dict, remote_path: str, *, deps: tuple[str, ...] = (), **inputs) -> dict:
    resource = command(name, conn, deps=deps, source=source, remotePath=remote_path, **inputs)
    resource["urn"] = urn(name, COPY)
    resource["type"] = COPY
    return resource


def other(name: str, type_: str = "aws:ec2/instance:Instance", *, deps: tuple[str, ...] = ()) -> dict:
    """A resource the executor ignores (AWS, TLS, components) but whose dependencies still order the run."""
    return {"urn": f"urn:pulumi:{STACK}::{PROJECT}::{type_}::{name}", "type": type_, "name": name,
            "custom": True, "parent": None, "dependencies": sorted(deps), "options": {}, "inputs": {}}


def plan(*resources: dict) -> dict:
    return {"project": PROJECT, "stack": STACK, "resources": list(resources), "outputs": {}}


def record(events: Path, text: str) -> str:
    """Shell that appends one line to the events file; `text` may use remote variables like $SSHD_NAME."""
    return f'echo "{text}" >> {shlex.quote(str(events))}'
