"""Release hooks (issue 13 item 2) offline: settings, where they land in the scripts, and the order
the plan gives them (no server switches before every server of the app is built and hooked)."""
from __future__ import annotations

import json

import pytest

from ecom_infra import plan as offline_plan
from ecom_infra.errors import ConfigError
from renderers.app_server.spec import AppServerSpec
from renderers.app_server.steps import app_server_steps
from tests.support.shellcheck import assert_shellcheck_clean

from ..conftest import SHA_FILE
from .test_settings import parse, with_
from .test_steps_in_plan import by_name, depends

HOOKS = {"afterBuild": [{"run": "bin/rails db:migrate", "once": True}, "echo built"],
         "afterPublish": [{"run": "bin/rails runner 'Rails.cache.clear'", "timeout": 60}],
         "onFailure": ["logger -t deploy failed"]}


def test_hooks_parse_with_their_defaults():
    app = parse(with_("apps.0.hooks", HOOKS)).app("ecom-platform")
    assert [(h.point, h.run, h.once, h.timeout) for h in app.hooks] == [
        ("afterBuild", "bin/rails db:migrate", True, 600), ("afterBuild", "echo built", False, 600),
        ("afterPublish", "bin/rails runner 'Rails.cache.clear'", False, 60),
        ("onFailure", "logger -t deploy failed", False, 600)]
    assert parse(with_("apps.0.hooks", {})).app("ecom-platform").hooks == ()


BAD = [
    ({"beforeBuild": ["x"]}, "ecom-infra:apps[ecom-platform].hooks.beforeBuild"),
    ({"afterBuild": "bin/rails db:migrate"}, "ecom-infra:apps[ecom-platform].hooks.afterBuild"),
    ({"afterBuild": [""]}, "ecom-infra:apps[ecom-platform].hooks.afterBuild[0].run"),
    ({"afterBuild": [{"once": True}]}, "ecom-infra:apps[ecom-platform].hooks.afterBuild[0].run"),
    ({"afterBuild": ["ok", "a\nrm -rf /"]}, "ecom-infra:apps[ecom-platform].hooks.afterBuild[1].run"),
    ({"afterPublish": [{"run": "x", "once": "yes"}]}, "ecom-infra:apps[ecom-platform].hooks.afterPublish[0].once"),
    ({"onFailure": [{"run": "x", "timeout": 0}]}, "ecom-infra:apps[ecom-platform].hooks.onFailure[0].timeout"),
    ({"onFailure": [{"run": "x", "user": "root"}]}, "ecom-infra:apps[ecom-platform].hooks.onFailure[0].user"),
    ([{"run": "x"}], "ecom-infra:apps[ecom-platform].hooks"),
]


@pytest.mark.parametrize("hooks,key", BAD, ids=[k.rsplit(".", 1)[-1] + str(i) for i, (_, k) in enumerate(BAD)])
def test_a_bad_hook_is_refused_in_one_line_naming_its_key(hooks, key):
    with pytest.raises(ConfigError) as info:
        parse(with_("apps.0.hooks", hooks))
    assert str(info.value).startswith(f"{key}:") and "\n" not in str(info.value), str(info.value)


def spec(**changes) -> AppServerSpec:
    values = dict(app="ecom-platform", repo_url="/srv/git/ecom-platform.git", hostnames=("shop.test",),
                  sha="a" * 40, hooks=(("afterBuild", "bin/rails db:migrate", True, 600),
                                       ("afterPublish", "echo \"it's $ECOM_SHA\"", False, 30),
                                       ("onFailure", "logger failed", False, 60)))
    values.update(changes)
    return AppServerSpec(**values)


@pytest.mark.tools
def test_hook_scripts_pass_shellcheck_and_quote_the_commands(tmp_path):
    steps = {s.name: s for s in app_server_steps(spec(runs_once_hooks=True))}
    assert_shellcheck_clean(steps, ("release-build", "release-publish"), tmp_path)
    build = steps["release-build"].create
    assert "run_hook \"$1\" afterBuild afterBuild-1-" in build and " once 600 'bin/rails db:migrate'" in build
    assert "'echo \"it'\"'\"'s $ECOM_SHA\"'" in build       # the command reaches bash -c verbatim
    assert "RUNS_ONCE_HOOKS=yes" in build
    assert "RUNS_ONCE_HOOKS=\n" in app_server_steps(spec())[-2].create


def test_a_changed_command_is_a_new_hook_for_its_once_marker():
    one = spec().hooks_at("afterBuild")[0][0]
    other = spec(hooks=(("afterBuild", "bin/rails db:migrate:with_data", True, 600),)).hooks_at("afterBuild")[0][0]
    assert one.startswith("afterBuild-1-") and other.startswith("afterBuild-1-") and one != other


def test_only_each_apps_first_server_runs_once_hooks_and_nothing_switches_before_every_build():
    plan = offline_plan.run("staging", sha_file_text=SHA_FILE).to_dict(reveal_secrets=True)
    scripts = {name: by_name(plan)[f"{name}-release-build"]["inputs"]["create"]
               for name in ("ecom-platform-1", "ecom-platform-2", "ecom-docs-1")}
    assert "RUNS_ONCE_HOOKS=yes" in scripts["ecom-platform-1"] and "RUNS_ONCE_HOOKS=yes" in scripts["ecom-docs-1"]
    assert "RUNS_ONCE_HOOKS=yes" not in scripts["ecom-platform-2"]
    # afterBuild hooks (db:migrate) run in the build: the first publish waits for every build of the app.
    assert depends(plan, "ecom-platform-1-release-publish", "ecom-platform-2-release-build")
    assert not depends(plan, "ecom-platform-1-release-publish", "ecom-docs-1-release-build")


def test_the_datadog_api_key_must_be_a_secret_and_only_its_presence_reaches_the_settings():
    plain = json.dumps({"enabled": True, "apiKey": "dd-plain-key"})
    with pytest.raises(ConfigError) as info:
        offline_plan.run("staging", sha_file_text=SHA_FILE, config_overrides={"ecom-infra:datadog": plain})
    assert str(info.value).startswith("ecom-infra:datadog.apiKey: is in plain text") and "dd-plain-key" not in str(
        info.value)
    result = offline_plan.run("staging", sha_file_text=SHA_FILE, secrets={"ecom-infra:datadog": plain})
    assert "dd-plain-key" not in json.dumps(result.to_dict(reveal_secrets=True))
    encrypted = json.dumps({"apiKey": {"secure": "v1:AAAA"}})      # a stack file's --path secret, offline
    offline_plan.run("staging", sha_file_text=SHA_FILE, config_overrides={"ecom-infra:datadog": encrypted})
