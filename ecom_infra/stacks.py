"""What stacks exist and which apps each declares, read from `Pulumi.<stack>.yaml`.

Used by the CLI (which runs outside Pulumi) to validate `--env`/`--app` arguments. The
Pulumi program itself reads config only through `ecom_infra.settings`.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROJECT_NAME = "ecom-infra"


def stack_file(stack: str, project_dir: Path = PROJECT_DIR) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def known_stacks(project_dir: Path = PROJECT_DIR) -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))


def stack_config(stack: str, project_dir: Path = PROJECT_DIR) -> dict:
    """The raw `config:` mapping of a stack file (keys like `ecom-infra:apps`)."""
    path = stack_file(stack, project_dir)
    if not path.is_file():
        raise ConfigError("--env" if stack else "stack",
                          f"unknown environment {stack!r} (known: {', '.join(known_stacks(project_dir))})",
                          "staging")
    doc = yaml.safe_load(path.read_text()) or {}
    return doc.get("config") or {}


def known_apps(stack: str, project_dir: Path = PROJECT_DIR) -> list[str]:
    """App names declared by a stack, in declaration order (the first is the legacy default)."""
    apps = stack_config(stack, project_dir).get(f"{PROJECT_NAME}:apps") or []
    return [a["name"] for a in apps if isinstance(a, dict) and "name" in a]
