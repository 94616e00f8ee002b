"""Helpers shared by the release tests (fixtures are in conftest.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from ecom_infra import release_cli
from ecom_infra.errors import ConfigError

ENVS = ("production", "staging")
APPS = ("ecom-platform", "ecom-docs")
SHA = {n: f"{n:x}" * 40 for n in range(1, 10)}   # distinct, valid 40-hex shas


def write_project(where: Path, envs: dict[str, list[str]]) -> Path:
    """Stack files of the shape the real ones have, with only what the release verbs read."""
    where.mkdir(parents=True, exist_ok=True)
    for env, apps in envs.items():
        config = {"config": {"ecom-infra:apps": [
            {"name": app, "repo": f"git@github.com:emami/{app}.git", "branch": "master"} for app in apps]}}
        (where / f"Pulumi.{env}.yaml").write_text(yaml.safe_dump(config))
    return where


def run_verb(*argv: str) -> int:
    """`ecom-deploy ARGV` through `ecom_infra.cli.main`.

    `cli` imports the plan verbs too; until they exist, the same thing is done with a
    parser holding only the release verbs (one-line error and exit 2 on ConfigError).
    """
    try:
        from ecom_infra import plan_cli  # noqa: F401
    except ImportError:
        top = argparse.ArgumentParser(prog="ecom-deploy")
        release_cli.register(top.add_subparsers(dest="command", required=True))
        args = top.parse_args(list(argv))
        try:
            return int(args.func(args) or 0)
        except ConfigError as exc:
            print(f"ecom-deploy: error: {exc}", file=sys.stderr)
            return 2
    from ecom_infra import cli
    return cli.main(list(argv))
