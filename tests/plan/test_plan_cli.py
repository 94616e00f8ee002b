"""`ecom-deploy plan`, `diff` and `outputs` as a person runs them."""
from __future__ import annotations

import json
import subprocess
import sys

import jsonschema

from ecom_infra import plan as offline_plan
from ecom_infra.plan_cli import render_diff

from ..conftest import ROOT, SHA_FILE, synthetic_apps


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecom_infra.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_json_plan_is_byte_identical_across_runs(tmp_path):
    sha = tmp_path / "sha.yml"
    sha.write_text(SHA_FILE)
    first = cli("plan", "--stack", "production", "--json", "--sha-file", str(sha))
    second = cli("plan", "--stack", "production", "--json", "--sha-file", str(sha))
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    doc = json.loads(first.stdout)
    assert [r["urn"] for r in doc["resources"]] == sorted(r["urn"] for r in doc["resources"])


def test_text_plan_shows_tree_outputs_and_scripts_per_host_in_run_order(tmp_path):
    sha = tmp_path / "sha.yml"
    sha.write_text(SHA_FILE)
    out = cli("plan", "--stack", "staging", "--sha-file", str(sha))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "ecom:app:AppServer  ecom-platform-1" in text and "Outputs:" in text
    section = text[text.index("== ecom-platform-1 ("):text.index("== ecom-platform-2 (")]
    steps = [line.split()[1] for line in section.splitlines() if line.startswith("--- ") and "(create)" in line]
    assert steps[0] == "ecom-platform-1-deploy-user" and steps[-1] == "ecom-platform-1-release-publish"
    assert "--- ecom-platform-1-git-ssh (stdin): [secret]" in section
    assert "PLACEHOLDER-NOT-A-REAL-SECRET" not in text and "PRIVATE KEY" not in text


def test_outputs_verb_prints_schema_valid_json():
    out = cli("outputs", "--stack", "production")
    assert out.returncode == 0, out.stderr
    schema = json.loads((ROOT / "docs" / "outputs.schema.json").read_text())
    jsonschema.validate(json.loads(out.stdout), schema)


def test_diff_names_hosts_and_actions():
    old = offline_plan.run("staging", sha_file_text=SHA_FILE).to_dict()
    new_sha = SHA_FILE.replace("1" * 40, "c" * 40)
    new = offline_plan.run("staging", sha_file_text=new_sha,
                           config_overrides={"ecom-infra:apps": synthetic_apps(3)}).to_dict()
    text = render_diff(old, new)
    assert "| replace | `command:remote:Command ecom-platform-1-release-build` | create, triggers |" in text
    assert "| create | `aws:ec2/instance:Instance ecom-platform-3` |" in text
    ip = old["hosts"]["ecom-platform-1"]["privateIp"]
    assert f"**ecom-platform-1 ({ip})**" in text
    assert render_diff(old, old).endswith("No changes.\n")


def test_diff_of_a_file_that_is_not_a_plan_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = cli("diff", str(bad), str(bad))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "is not JSON" in out.stderr
