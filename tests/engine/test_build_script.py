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


def test_the_cli_module_requires_pkg_and_sdk_at_the_pinned_cli_version():
    version = pins()["PULUMI_VERSION"]
    assert required(TOOLS / "cli" / "go.mod") == {
        "github.com/pulumi/pulumi/pkg/v3": version, "github.com/pulumi/pulumi/sdk/v3": version}


def test_untagged_modules_are_pinned_to_pseudo_versions():
    # A pseudo-version names one commit (vX.0.0-yyyymmddhhmmss-<12 hex>): a branch or `latest` would drift.
    for key in ("LANGHOST_VERSION", "COMMAND_MODULE_VERSION"):
        assert re.fullmatch(r"v\d+\.0\.0-\d{14}-[0-9a-f]{12}", pins()[key]), key
