"""One step on a host, as pulumi-command's Create / Update / Delete do it, recorded in the state the moment it
succeeds."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from fleet.ssh.connection import PREVIOUS_STDERR, PREVIOUS_STDOUT, Connection, check_environment
from fleet.ssh.copy import copy_dir_script, copy_file_script
from fleet.ssh.runner import SshRunner

from .diff import Action
from .resources import COMMAND, COPY_TO_REMOTE, RemoteResource, _copy_source
from .state import save_state

Log = Callable[[str], None]


class _CommandExit(Exception):
    def __init__(self, exit_code: int, stderr: str):
        super().__init__(f"exit {exit_code}")
        self.exit_code = exit_code
        self.stderr = stderr


class _Run:
    """One run of the executor: holds the state and records each step the moment it succeeds. Steps run in
    threads; the remote work runs unlocked, the record and the state file write under one lock."""

    def __init__(self, state: dict, state_path: Path, ssh: SshRunner, log: Log):
        self.state = state
        self.state_path = state_path
        self.ssh = ssh
        self.log = log
        self._lock = threading.Lock()

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
        if action.kind == "delete":
            self._delete(action.recorded)
            with self._lock:
                self._record_delete(action)
        elif action.kind == "update":
            outputs = self._update(action.planned, action.recorded)
            with self._lock:
                self.state["resources"][action.urn] = self._new_entry(action.planned, outputs,
                                                                      action.recorded["serial"])
                save_state(self.state_path, self.state)
        else:  # create, or replace: the new resource is created; the old one is deleted first or at the end
            outputs = self._create(action.planned)
            with self._lock:
                self._record_create(action, outputs)

    def _record_delete(self, action: Action) -> None:
        resources = self.state["resources"]
        serial = action.recorded["serial"]
        if resources.get(action.urn, {}).get("serial") == serial:
            del resources[action.urn]
        self.state["pending_deletes"] = [entry for entry in self.state["pending_deletes"]
                                         if entry["serial"] != serial]
        save_state(self.state_path, self.state)

    def _record_create(self, action: Action, outputs: Mapping[str, str]) -> None:
        resources = self.state["resources"]
        old = resources.get(action.urn)
        if old is not None:  # create-before-delete: the old one now waits for its delete
            self.state["pending_deletes"].append(old)
        resources[action.urn] = self._new_entry(action.planned, outputs)
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
