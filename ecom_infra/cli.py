"""`ecom-deploy`: the offline plan and the release verbs.

Every failure a person can cause prints one line `ecom-deploy: error: ...` and exits 2;
nothing is written in that case.
"""
from __future__ import annotations

import argparse
import sys

from .errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecom-deploy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from . import plan_cli, release_cli  # noqa: PLC0415 - verbs register themselves

    plan_cli.register(sub)
    release_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"ecom-deploy: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
