"""What stacks exist and which apps each declares, read from `Pulumi.<stack>.yaml`.

Used by the CLI (which runs outside Pulumi) to validate `--env`/`--app` arguments. The
Pulumi program itself reads config only through `ecom_infra.settings`.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

from .errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROJECT_NAME = "ecom-infra"
# libyaml's safe loader when PyYAML has it (Debian's and the wheels do): the same documents and errors, a stack
# file parsed in 0.3 ms instead of 8 (each release verb reads every stack file).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def stack_file(stack: str, project_dir: Path = PROJECT_DIR) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def known_stacks(project_dir: Path = PROJECT_DIR) -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))


def stack_config(stack: str, project_dir: Path = PROJECT_DIR, *, key: str = "--env",
                 noun: str = "environment") -> dict:
    """The raw `config:` mapping of a stack file (keys like `ecom-infra:apps`).

    The one reader of stack files outside Pulumi; `key` and `noun` name the argument that chose
    the stack in the error for an unknown one.
    """
    path = stack_file(stack, project_dir)
    if not path.is_file():
        raise ConfigError(key, f"unknown {noun} {stack!r} (known: {', '.join(known_stacks(project_dir))})",
                          "staging")
    return copy.deepcopy(_parsed_config(path.name, path.read_bytes()))


@functools.lru_cache(maxsize=16)
def _parsed_config(name: str, data: bytes) -> dict:
    """The config mapping of a stack file's bytes. Parsed once per content: `make up` and the verbs it runs in
    its process read the same files many times, and YAML parsing is slow (the callers get a deep copy)."""
    try:
        doc = yaml.load(data.decode("utf-8"), Loader=_SAFE_LOADER) or {}  # noqa: S506 - a safe loader
    except UnicodeDecodeError as exc:
        raise ConfigError(name, f"is not valid UTF-8 (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(name, f"is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(name, f"must be a mapping with a config: key, got a {type(doc).__name__}",
                          "config: {aws:region: us-east-1}")
    raw = doc.get("config") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: config", "must be a mapping of keys to values")
    return raw


def known_apps(stack: str, project_dir: Path = PROJECT_DIR) -> list[str]:
    """App names declared by a stack, in declaration order (the first is the legacy default)."""
    apps = stack_config(stack, project_dir).get(f"{PROJECT_NAME}:apps") or []
    return [a["name"] for a in apps if isinstance(a, dict) and "name" in a]
