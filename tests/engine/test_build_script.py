"""tools/pulumi: the build script lints clean and the builder modules agree with the pins."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "pulumi"


def pins() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (TOOLS / "versions.env").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def required(go_mod: Path) -> dict[str, str]:
    return dict(re.findall(r"^(?:require)?\s*(github\.com/pulumi/pulumi/(?:pkg|sdk)/v3) (v\S+)", go_mod.read_text(), re.M))


@pytest.mark.tools
def test_build_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("needs shellcheck")
    result = subprocess.run(["shellcheck", "--severity=style", str(TOOLS / "build.sh")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("module", ["cli", "langhost"])
def test_builder_modules_require_pkg_and_sdk_at_the_pinned_cli_version(module):
    version = pins()["PULUMI_VERSION"]
    assert required(TOOLS / module / "go.mod") == {
        "github.com/pulumi/pulumi/pkg/v3": version, "github.com/pulumi/pulumi/sdk/v3": version}


def test_pinned_commits_are_full_hashes():
    for key in ("LANGHOST_COMMIT", "COMMAND_COMMIT"):
        assert re.fullmatch(r"[0-9a-f]{40}", pins()[key]), key
