"""The executor's state file: what the hosts did run. Read, written atomically (mode 600), and locked for a run."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from ecom_infra.errors import ConfigError

STATE_VERSION = 1
# How the last run ended (`last_run`): "ok" only once every step of it succeeded; "running" is what a killed run
# leaves. A caller that reuses an earlier plan (fleet/plan_cache.py) does so only after an "ok" run.
LAST_RUN_OK, LAST_RUN_FAILED, LAST_RUN_RUNNING = "ok", "failed", "running"


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


def set_last_run(state: dict, path: Path, result: str) -> None:
    """Record how the run ended (saved only when it changes: a no-op run writes nothing)."""
    if state.get("last_run") != result:
        state["last_run"] = result
        save_state(path, state)


def completed(state: Mapping | None) -> bool:
    """True when the last run succeeded in every step and left nothing to finish (no pending delete)."""
    return state is not None and state.get("last_run") == LAST_RUN_OK and not state.get("pending_deletes")


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
