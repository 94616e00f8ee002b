"""`python -m fleet.executor --plan PLAN --state STATE [--dry-run]`: the executor on a plan file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ecom_infra.errors import ConfigError

from .diff import diff_plan
from .report import StepFailed
from .run import run_plan
from .state import load_state


def _read_plan(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError("--plan", f"{path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ConfigError("--plan", f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet.executor",
                                     description="Run the plan's remote commands over SSH, as pulumi-command.")
    parser.add_argument("--plan", required=True, help="the plan as JSON (the Pulumi program run under mocks)")
    parser.add_argument("--state", required=True, help="state file of earlier runs (created, mode 600)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run and change nothing")
    args = parser.parse_args(argv)
    try:
        plan = _read_plan(args.plan)
        if args.dry_run:
            actions = diff_plan(plan, load_state(Path(args.state)))
            for action in actions:
                print(f"[executor] would {action.kind} {action.host} {action.name} ({action.reason})")
            print(f"[executor] {len(actions)} step(s) would run")
            return 0
        run_plan(plan, Path(args.state))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StepFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
