"""The fixed cost of `make up` (issue 16 item 3): what it avoids doing twice, and that avoiding it changes nothing.

No fleet: the stack file parsed once per content, one boto3 client per endpoint within a run, and no Pulumi SDK
loaded unless a plan runs.
"""
from __future__ import annotations

import subprocess
import sys

from ecom_infra import release, stacks
from fleet import moto

from ..conftest import ROOT


def test_a_stack_file_is_parsed_once_per_content_and_callers_cannot_change_the_kept_copy(tmp_path):
    path = tmp_path / "Pulumi.demo.yaml"
    path.write_text("config:\n  ecom-infra:apps: [{name: a}]\n")
    first = stacks.stack_config("demo", tmp_path)
    first["ecom-infra:apps"][0]["name"] = "changed by a caller"
    assert stacks.stack_config("demo", tmp_path) == {"ecom-infra:apps": [{"name": "a"}]}
    path.write_text("config:\n  ecom-infra:apps: [{name: b}]\n")      # same size, same second
    assert stacks.stack_config("demo", tmp_path) == {"ecom-infra:apps": [{"name": "b"}]}
    path.write_text("config: [1]\n")
    try:
        stacks.stack_config("demo", tmp_path)
    except Exception as exc:  # noqa: BLE001 - the same error as before the cache
        assert str(exc) == "Pulumi.demo.yaml: config: must be a mapping of keys to values"
    else:
        raise AssertionError("a bad stack file was accepted")


def test_within_one_session_the_release_verbs_share_one_s3_client_per_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert release.s3_client("http://127.0.0.1:1") is not release.s3_client("http://127.0.0.1:1")
    with release.one_session(moto.session()):
        client = release.s3_client("http://127.0.0.1:1")
        assert release.s3_client("http://127.0.0.1:1") is client
        assert release.s3_client("http://127.0.0.1:2") is not client
    assert release.s3_client("http://127.0.0.1:1") is not client
    assert moto.client("http://127.0.0.1:1", "s3") is moto.client("http://127.0.0.1:1", "s3")


def test_make_up_and_the_release_verbs_load_no_pulumi_until_a_plan_runs():
    probe = ("import sys; import fleet.local; from ecom_infra import cli; cli.build_parser(); "
             "print(sorted(m for m in ('pulumi', 'pulumi_aws', 'fleet.cloud') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_stack_file_reads_as_pyyamls_pure_safe_loader_reads_it_and_bad_yaml_is_one_line(tmp_path):
    import yaml  # noqa: PLC0415

    for stack in stacks.known_stacks(ROOT):
        pure = yaml.load(stacks.stack_file(stack, ROOT).read_text(), Loader=yaml.SafeLoader)["config"]
        assert stacks.stack_config(stack, ROOT) == pure
    (tmp_path / "Pulumi.bad.yaml").write_text("config:\n  a: [1\n")
    try:
        stacks.stack_config("bad", tmp_path)
    except Exception as exc:  # noqa: BLE001
        assert str(exc).startswith("Pulumi.bad.yaml: is not valid YAML (while parsing a flow sequence)"), str(exc)
    else:
        raise AssertionError("a bad stack file was accepted")
