"""Per-app environment and secrets in the plan: on stdin only, a keyed hash in the triggers."""
from __future__ import annotations

import json

import pytest

from ecom_infra import plan as offline_plan
from ecom_infra import settings
from ecom_infra.errors import ConfigError

from ..conftest import SHA_FILE
from .test_settings import BASE

SECRET = "sk_live_Do-Not-Print-Me"


def run(app_secrets: dict | None = None, env: dict | None = None, reveal: bool = False):
    secrets = {"ecom-infra:appSecrets": json.dumps(app_secrets)} if app_secrets is not None else None
    overrides = None
    if env is not None:
        config, _ = offline_plan.stack_config("staging")
        apps = json.loads(config["ecom-infra:apps"])
        apps[0]["env"] = env
        overrides = {"ecom-infra:apps": json.dumps(apps)}
    result = offline_plan.run("staging", sha_file_text=SHA_FILE, secrets=secrets, config_overrides=overrides)
    return {r["name"]: r for r in result.to_dict(reveal_secrets=reveal)["resources"]}, result


def test_the_environment_file_travels_on_stdin_and_never_shows():
    plan, result = run({"ecom-platform": {"PAYMENT_API_KEY": SECRET}}, env={"SHOP_NAME": "Demo shop"})
    step = plan["ecom-platform-1-app-env"]
    assert step["inputs"]["stdin"] == "[secret]"
    assert SECRET not in json.dumps(result.to_dict())                 # nowhere in the plan, triggers included
    revealed, _ = run({"ecom-platform": {"PAYMENT_API_KEY": SECRET}}, env={"SHOP_NAME": "Demo shop"}, reveal=True)
    stdin = revealed["ecom-platform-1-app-env"]["inputs"]["stdin"]
    assert f'PAYMENT_API_KEY="{SECRET}"' in stdin and 'SHOP_NAME="Demo shop"' in stdin
    assert "ecom-docs" not in stdin and SECRET not in revealed["ecom-docs-1-app-env"]["inputs"]["stdin"]
    # Plain variables reach the build (not the secret, which the build never gets).
    build = revealed["ecom-platform-1-release-build"]["inputs"]["create"]
    assert "'SHOP_NAME=Demo shop'" in build and SECRET not in build and "SECRET_KEY_BASE=" in build


def test_a_changed_secret_restarts_puma_without_a_new_release():
    before, _ = run({"ecom-platform": {"PAYMENT_API_KEY": SECRET}})
    after, _ = run({"ecom-platform": {"PAYMENT_API_KEY": SECRET + "-rotated"}})
    changed = sorted(name for name in before if before[name]["inputs"].get("triggers")
                     != after[name]["inputs"].get("triggers"))
    # The file is rewritten, puma restarts (the publish drains itself through the HAProxy agent), nothing is
    # rebuilt, no step runs on the balancers; ecom-docs untouched.
    assert changed == sorted(["ecom-platform-1-app-env", "ecom-platform-2-app-env",
                              "ecom-platform-1-release-publish", "ecom-platform-2-release-publish"]), changed
    trigger = after["ecom-platform-1-app-env"]["inputs"]["triggers"][-1]
    assert trigger.startswith("app_env:") and len(trigger) == len("app_env:") + 32
    assert before["ecom-platform-1-release-build"] == after["ecom-platform-1-release-build"]


@pytest.mark.parametrize("value,key,problem", [
    ({"ecom-platform": {"lower": "x"}}, "ecom-infra:appSecrets.ecom-platform.lower", "must be a variable name"),
    ({"ecom-platform": {"RAILS_ENV": "x"}}, "ecom-infra:appSecrets.ecom-platform.RAILS_ENV", "is set by the platform"),
    ({"ecom-platform": {"KEY": "a\nb"}}, "ecom-infra:appSecrets.ecom-platform.KEY", "must not contain a newline"),
    ({"ecom-platform": {"KEY": "a\x00b"}}, "ecom-infra:appSecrets.ecom-platform.KEY", "must not contain a newline"),
    ({"nope": {"KEY": "x"}}, "ecom-infra:appSecrets.nope", "is not an app of this stack"),
    (["KEY"], "ecom-infra:appSecrets", "must be a JSON object"),
])
def test_bad_secrets_fail_in_one_line_without_the_value(value, key, problem):
    with pytest.raises(ConfigError) as caught:
        run(value)
    message = str(caught.value)
    assert message.startswith(f"{key}: {problem}") and "\n" not in message
    assert "a\nb" not in message and "a\x00b" not in message


def test_secrets_in_plain_text_are_refused():
    overrides = {"ecom-infra:appSecrets": json.dumps({"ecom-platform": {"KEY": SECRET}})}
    with pytest.raises(ConfigError, match=r"^ecom-infra:appSecrets: is in plain text") as caught:
        offline_plan.run("staging", sha_file_text=SHA_FILE, config_overrides=overrides)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("env,key", [({"PATH": "/tmp"}, "ecom-infra:apps[ecom-platform].env.PATH"),
                                     ({"9X": "y"}, "ecom-infra:apps[ecom-platform].env.9X"),
                                     ({"X": "a\nb"}, "ecom-infra:apps[ecom-platform].env.X"),
                                     ({"X": ["list"]}, "ecom-infra:apps[ecom-platform].env.X")])
def test_bad_plain_variables_name_the_key(env, key):
    raw = json.loads(json.dumps(BASE))
    raw["apps"][0]["env"] = env
    with pytest.raises(ConfigError) as caught:
        settings.parse(raw, project="ecom-infra", stack="staging", region="us-east-1")
    assert str(caught.value).startswith(f"{key}: ") and "\n" not in str(caught.value)


def test_a_variable_is_plain_or_secret_not_both():
    with pytest.raises(ConfigError, match=r"^ecom-infra:appSecrets\.ecom-platform\.SHOP_NAME: is also set in plain"):
        run({"ecom-platform": {"SHOP_NAME": "x"}}, env={"SHOP_NAME": "y"})


def test_an_encrypted_app_secrets_value_plans_as_no_secrets(tmp_path):
    # `ecom-deploy plan` cannot decrypt `secure:` values: appSecrets must still parse as an object.
    import shutil

    import yaml

    from ecom_infra import plan as plan_module
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml"):
        shutil.copy(plan_module.PROJECT_DIR / name, tmp_path / name)
    stack = yaml.safe_load((tmp_path / "Pulumi.staging.yaml").read_text())
    stack["config"]["ecom-infra:appSecrets"] = {"secure": "v1:abc"}
    (tmp_path / "Pulumi.staging.yaml").write_text(yaml.safe_dump(stack))
    config, secret_keys = offline_plan.stack_config("staging", tmp_path)
    assert config["ecom-infra:appSecrets"] == "{}" and "ecom-infra:appSecrets" in secret_keys
