"""Smoke proof of the engine tools that `make tools` builds into .tools/bin.

The Pulumi CLI, the Python language host and the pulumi-command provider together: a tiny
Python program with one `command.local.Command` goes up and is destroyed on a local file
backend, with no plugin download allowed (the provider must be the one on PATH).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ECOM_PULUMI_BIN_DIR", ROOT / ".tools" / "bin"))  # as tests/standins/test_engine.py
PULUMI = BIN / "pulumi"
VENV = ROOT / ".venv"
PINS = ROOT / "tools" / "pulumi" / "versions.env"

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not PULUMI.exists(), reason=f"{PULUMI} absent: run `make tools` "
                       "(with PULUMI_FROM_PATH=0 when a pulumi is already on PATH)"),
]


def pins() -> dict[str, str]:
    out = {}
    for line in PINS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def engine_env(tmp: Path) -> dict[str, str]:
    """Only this test's Pulumi: local state, own PULUMI_HOME, tools first on PATH, no downloads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PULUMI_HOME": str(tmp / "home"),
        "PULUMI_BACKEND_URL": f"file://{tmp / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "test",
        "PULUMI_SKIP_UPDATE_CHECK": "1",
        # Fail instead of downloading a plugin: every plugin must come from PATH.
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    })
    (tmp / "state").mkdir(exist_ok=True)
    return env


def pulumi(env: dict[str, str], cwd: Path, *args: str, timeout: int = 300) -> str:
    proc = subprocess.run([str(PULUMI), *args, "--non-interactive"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"pulumi {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_version(tmp_path):
    out = pulumi(engine_env(tmp_path), tmp_path, "version")
    assert out.strip() == pins()["PULUMI_VERSION"]


def test_up_and_destroy_a_local_command(tmp_path):
    needed = [BIN / n for n in ("pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-command")]
    missing = [p.name for p in needed if not p.exists()]
    if missing:
        pytest.skip(f"not built in .tools/bin: {', '.join(missing)} (see `make tools` output)")
    if not (VENV / "bin" / "python").exists():
        pytest.skip(".venv absent: run `make setup-python`")

    env = engine_env(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    target = tmp_path / "written.txt"
    (project / "Pulumi.yaml").write_text(
        "name: engine-smoke\n"
        "runtime:\n"
        "  name: python\n"
        "  options:\n"
        f"    virtualenv: {VENV}\n")
    (project / "__main__.py").write_text(
        "import pulumi\n"
        "from pulumi_command import local\n\n"
        f"TARGET = {str(target)!r}\n"
        "cmd = local.Command('write',\n"
        "    create=f\"printf 'hello from pulumi-command' > {TARGET} && echo written\",\n"
        "    delete=f'rm -f {TARGET}')\n"
        "pulumi.export('stdout', cmd.stdout)\n")

    pulumi(env, project, "stack", "init", "smoke")
    pulumi(env, project, "up", "--yes", "--skip-preview")
    assert target.read_text() == "hello from pulumi-command"
    outputs = json.loads(pulumi(env, project, "stack", "output", "--json"))
    assert outputs == {"stdout": "written"}

    # The provider that ran is the one built here, at the pinned version, not a download.
    assert not list((tmp_path / "home").glob("plugins/resource-command*"))
    state = json.loads(pulumi(env, project, "stack", "export"))
    providers = [r for r in state["deployment"]["resources"] if r["type"] == "pulumi:providers:command"]
    assert [p["inputs"].get("version") for p in providers] == [pins()["COMMAND_VERSION"]]

    pulumi(env, project, "destroy", "--yes", "--skip-preview")
    assert not target.exists()
