"""What a test's own sshd needs from this machine before it starts."""
from __future__ import annotations

from pathlib import Path

# Compiled into Debian's sshd (no config option moves it). The ssh unit's RuntimeDirectory makes it at boot; on a
# machine where that unit never ran (packages installed with services blocked, a fresh container) nothing does.
PRIVSEP_DIR = Path("/run/sshd")


def ensure_privsep_dir() -> None:
    """Create sshd's privilege separation directory as the unit would (root, 0755); left in place for other users."""
    PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
