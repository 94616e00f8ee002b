"""The deploying plan's cache: `make up` reuses an earlier plan instead of running the program again when nothing
the program reads has changed.

The deploying plan is a function of what it reads, and of nothing else (no clock, no randomness: DESIGN.md):
- the program's files and the fleet code that runs it under its mocks, the Python and the packages installed,
  the stack file, this run's config overrides and secrets, and the mocks' own settings: the *static digest*;
- moto's answers to the reads the mocks made (instances by tag and state, the Elastic IP, the role and instance
  profile, the sha bucket's listing and the sha file's bytes): kept as the queries and a digest of the answers
  (fleet/cloud.py `MotoReads`). Reuse asks the same queries again and compares the answers. The program asks
  its n-th question from its inputs and the answers to the ones before, so the same answers to the same
  questions make the same run, question by question.
A plan whose run wrote to moto (it created an instance, the role...) is never kept: the next plan reads what it
wrote. Entries are the newest KEEP plans, mode 600 in a mode 700 folder (a revealed plan holds secrets), so a
rollback to a recent sha reuses that sha's plan.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

KEEP = 5
# Everything under these (but caches) is an input of the deploying plan: the program's own files (as for the
# fleet's shape) and the fleet code that builds its inputs and plays AWS for it (fleet/local.py, fleet/cloud.py).
PLAN_FILES = ("__main__.py", "Pulumi.yaml", "components", "ecom_infra", "renderers", "templates", "fleet")
INDEX = "index.json"


def installed() -> list[str]:
    """The packages the program runs on, by their metadata folders' names (which carry the versions): cheaper
    than importlib.metadata, and it sees every package, not only the ones named."""
    names: list[str] = []
    for entry in sys.path:
        if entry.endswith(("site-packages", "dist-packages")) and os.path.isdir(entry):
            names += sorted(n for n in os.listdir(entry) if n.endswith((".dist-info", ".egg-info", ".pth")))
    return names


def inputs_digest(project_dir: Path, stack: str, values: list, names: Sequence[str]) -> str:
    """Digest of `values` (as JSON), the Python and the packages installed, the stack file, and every file (but
    caches) under `names` in the project: what a plan reads besides moto. fleet/local.py digests the fleet's
    shape with it too."""
    digest = hashlib.sha256(json.dumps([*values, sys.version, installed()], sort_keys=True).encode())
    paths = [project_dir / f"Pulumi.{stack}.yaml"]
    for name in names:
        path = project_dir / name
        paths += sorted(path.rglob("*")) if path.is_dir() else [path]
    for path in paths:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(f"\0{path.relative_to(project_dir)}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def static_digest(project_dir: Path, stack: str, overrides: dict[str, str], secrets: dict[str, str],
                  mock_settings: dict) -> str:
    """Digest of every input of the deploying plan that is not read from moto."""
    return inputs_digest(project_dir, stack, [stack, overrides, secrets, mock_settings], PLAN_FILES)


@dataclass(frozen=True)
class Entry:
    key: str
    static: str
    answers: str          # MotoReads.digest() of the run that made the plan
    queries: list         # its reads, to ask again

    @property
    def plan_file(self) -> str:
        return f"{self.key}.json"


def write_private(path: Path, text: str) -> None:
    """Written whole or not at all (a temp file renamed), mode 600 from creation: the fleet's files that hold
    keys or secrets (kept plans, plan.json, the fleet's shape)."""
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _entries(folder: Path) -> list[Entry]:
    """The index, newest first; an unreadable one is an empty cache (the plan runs, and writes a new one)."""
    try:
        raw = json.loads((folder / INDEX).read_text())
        return [Entry(e["key"], e["static"], e["answers"], e["queries"]) for e in raw]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def store(folder: Path, static: str, answers: str, queries: list, plan_text: str) -> None:
    """Keep a plan (newest first); the oldest beyond KEEP go."""
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    key = hashlib.sha256(f"{static}\0{answers}".encode()).hexdigest()[:32]
    entry = Entry(key, static, answers, queries)
    write_private(folder / entry.plan_file, plan_text)
    kept = [entry] + [e for e in _entries(folder) if e.key != key]
    write_private(folder / INDEX, json.dumps([e.__dict__ for e in kept[:KEEP]]))
    for old in kept[KEEP:]:
        (folder / old.plan_file).unlink(missing_ok=True)


def lookup(folder: Path, static: str, replay: Callable[[list], str]) -> tuple[str | None, str]:
    """(the text of a kept plan whose inputs are this run's, or None; why). `replay(queries)` asks moto the same
    reads again and returns the digest of its answers now."""
    candidates = [e for e in _entries(folder) if e.static == static]
    if not candidates:
        return None, "its program, config or keys differ from the plans kept"
    asked: dict[str, str] = {}
    for entry in candidates:
        queries = json.dumps(entry.queries, sort_keys=True)
        if queries not in asked:
            asked[queries] = replay(entry.queries)
        if asked[queries] == entry.answers:
            try:
                return (folder / entry.plan_file).read_text(), f"{len(entry.queries)} reads from moto"
            except OSError:
                continue
    return None, "moto's instances, Elastic IP, IAM or sha file differ from what the plans kept read"
