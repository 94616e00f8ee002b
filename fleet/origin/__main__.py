"""`python -m fleet.origin DEST_DIR [--owner USER]`: build `DEST_DIR/<app>.git` for every app.

Prints {app: {tag: sha}} as JSON on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import OriginError, build_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet.origin", description=__doc__.splitlines()[0])
    parser.add_argument("dest_dir", type=Path, help="folder that receives <app>.git for every app")
    parser.add_argument("--owner", help="user that owns the repositories (git serves only its owner's)")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(build_all(args.dest_dir, args.owner), indent=2, sort_keys=True))
    except OriginError as exc:
        print(f"fleet.origin: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
