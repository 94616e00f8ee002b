"""shellcheck over rendered step scripts, for tests that lint what they render."""
from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from renderers.steps import Step


def assert_shellcheck_clean(steps: dict[str, Step], names: Iterable[str], workdir: Path) -> None:
    """Each named step's create script, written under `workdir`, passes `shellcheck -x`."""
    for name in names:
        path = workdir / f"{name}.sh"
        path.write_text(steps[name].create)
        result = subprocess.run(["shellcheck", "-x", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{name}:\n{result.stdout}"
