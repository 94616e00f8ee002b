"""How a fleet daemon (the EIP follower, the metadata service) starts: they run in the fleet's cgroup, outlive
`up`, and stop on `down` (SIGTERM)."""
from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from .spec import FleetSpec, load_saved


def daemon_spec(name: str, log: Callable[[str], None]) -> FleetSpec | None:
    """The saved spec of fleet `name`, with SIGTERM set to end this process cleanly; None (said in the daemon's
    log) when the fleet has no state, and the daemon should exit 1."""
    spec = load_saved(name)
    if spec is None:
        log(f"fleet {name!r} has no state; exiting")
        return None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return spec
