"""A hook's `ifChanged` paths (issue 16) offline: parsing, the one-line errors for each wrong shape, the
renderer's own check, and what the release scripts get (shellcheck-clean, every path quoted)."""
from __future__ import annotations

import pytest

from ecom_infra import stacks
from ecom_infra.errors import ConfigError
from renderers.app_server.spec import AppServerSpec
from renderers.app_server.steps import app_server_steps
from tests.support.shellcheck import assert_shellcheck_clean

from .test_settings import parse, with_

KEY = "ecom-infra:apps[ecom-platform].hooks"
MIGRATE = {"run": "bin/rails db:migrate", "once": True, "ifChanged": ["db/migrate", "db/schema.rb"]}


def hooks_of(hooks: dict):
    return parse(with_("apps.0.hooks", hooks)).app("ecom-platform").hooks


def test_if_changed_parses_to_its_paths_and_is_empty_when_absent():
    hooks = hooks_of({"afterBuild": [MIGRATE, "echo built"],
                      "afterPublish": [{"run": "bin/rails runner 'Rails.cache.clear'",
                                        "ifChanged": [".ruby-version", "config/initializers"]}]})
    assert [(h.point, h.run, h.once, h.if_changed) for h in hooks] == [
        ("afterBuild", "bin/rails db:migrate", True, ("db/migrate", "db/schema.rb")),
        ("afterBuild", "echo built", False, ()),
        ("afterPublish", "bin/rails runner 'Rails.cache.clear'", False, (".ruby-version", "config/initializers"))]


BAD = [
    ({"afterBuild": [{"run": "x", "ifChanged": "db/migrate"}]}, "afterBuild[0].ifChanged", "must be a list"),
    ({"afterBuild": [{"run": "x", "ifChanged": []}]}, "afterBuild[0].ifChanged", "at least 1"),
    ({"afterBuild": [{"run": "x", "ifChanged": None}]}, "afterBuild[0].ifChanged", "at least 1"),
    ({"afterBuild": [{"run": "x", "ifChanged": [""]}]}, "afterBuild[0].ifChanged[0]", "relative path"),
    ({"afterBuild": [{"run": "x", "ifChanged": [7]}]}, "afterBuild[0].ifChanged[0]", "got 7"),
    ({"afterBuild": [{"run": "x", "ifChanged": ["db/../etc"]}]}, "afterBuild[0].ifChanged[0]", "'..'"),
    ({"afterBuild": [{"run": "x", "ifChanged": [".."]}]}, "afterBuild[0].ifChanged[0]", "'..'"),
    ({"afterBuild": [{"run": "x", "ifChanged": ["./db"]}]}, "afterBuild[0].ifChanged[0]", "'.'"),
    ({"afterBuild": [{"run": "x", "ifChanged": ["db", "/etc/passwd"]}]}, "afterBuild[0].ifChanged[1]", "leading"),
    ({"afterBuild": [{"run": "x", "ifChanged": ["db/migrate/"]}]}, "afterBuild[0].ifChanged[0]", "trailing"),
    ({"afterBuild": [{"run": "x", "ifChanged": ["db//migrate"]}]}, "afterBuild[0].ifChanged[0]", "relative path"),
    ({"afterBuild": [{"run": "x", "ifChanged": ["db/*.rb"]}]}, "afterBuild[0].ifChanged[0]", "'db/*.rb'"),
    ({"afterBuild": [{"run": "x", "ifChanged": [":(glob)db"]}]}, "afterBuild[0].ifChanged[0]", "relative path"),
    ({"afterBuild": [{"run": "x", "ifChanged": ["db/$(reboot)"]}]}, "afterBuild[0].ifChanged[0]", "relative path"),
    ({"afterBuild": [{"run": "x", "ifChanged": ["db migrate"]}]}, "afterBuild[0].ifChanged[0]", "relative path"),
    ({"afterPublish": [{"run": "x", "ifChanged": [f"p{i}" for i in range(21)]}]}, "afterPublish[0].ifChanged",
     "at most 20"),
    ({"onFailure": [{"run": "x", "ifChanged": ["db/migrate"]}]}, "onFailure[0].ifChanged", "not allowed at onFailure"),
    ({"afterBuild": [{"run": "x", "if_changed": ["db/migrate"]}]}, "afterBuild[0].if_changed", "known: ifChanged"),
]


@pytest.mark.parametrize("hooks,key,problem", BAD, ids=[f"{k}-{i}" for i, (_, k, _) in enumerate(BAD)])
def test_each_wrong_shape_of_if_changed_is_one_line_naming_its_key(hooks, key, problem):
    with pytest.raises(ConfigError) as info:
        hooks_of(hooks)
    message = str(info.value)
    assert message.startswith(f"{KEY}.{key}:") and "\n" not in message, message
    assert problem in message, message


def test_the_local_stacks_migrate_runs_only_when_a_migration_or_the_schema_changed():
    apps = stacks.stack_config("local", key="--stack", noun="stack")["ecom-infra:apps"]
    platform = next(a for a in apps if a["name"] == "ecom-platform")
    (migrate,) = hooks_of(platform["hooks"])
    assert (migrate.point, migrate.run, migrate.once, migrate.if_changed) == (
        "afterBuild", "bin/rails db:migrate", True, ("db/migrate", "db/schema.rb"))


def spec(hooks) -> AppServerSpec:
    return AppServerSpec(app="ecom-platform", repo_url="/srv/git/ecom-platform.git", hostnames=("shop.test",),
                         sha="a" * 40, hooks=hooks, runs_once_hooks=True)


HOOKS = (("afterBuild", "bin/rails db:migrate", True, 600, ("db/migrate", "db/schema.rb")),
         ("afterBuild", "echo always", False, 60),
         ("afterPublish", "bin/warm", False, 60, ("-odd-name", "config/.env.example")),
         ("onFailure", "logger failed", False, 60, ()))


@pytest.mark.parametrize("hook,problem", [
    (("afterBuild", "x", False, 60, ("../etc",)), "ifChanged must be relative"),
    (("afterBuild", "x", False, 60, ("/etc",)), "ifChanged must be relative"),
    (("afterBuild", "x", False, 60, "db/migrate"), "ifChanged must be relative"),
    (("onFailure", "x", False, 60, ("db",)), "not allowed at onFailure"),
    (("afterBuild", "x", False, 60, ("db",), "extra"), "tuples"),
])
def test_the_renderer_refuses_if_changed_paths_settings_would_have_refused(hook, problem):
    with pytest.raises(ConfigError, match=problem):
        spec((hook,))


def test_adding_if_changed_keeps_the_hook_id_so_a_once_hook_that_ran_does_not_run_again():
    plain = spec((("afterBuild", "bin/rails db:migrate", True, 600),)).hooks_at("afterBuild")
    paths = spec(HOOKS[:1]).hooks_at("afterBuild")
    assert plain[0][0] == paths[0][0] and plain[0][4] == () and paths[0][4] == ("db/migrate", "db/schema.rb")


@pytest.mark.tools
def test_scripts_pass_the_paths_quoted_after_the_command_and_stay_shellcheck_clean(tmp_path):
    steps = {s.name: s for s in app_server_steps(spec(HOOKS))}
    assert_shellcheck_clean(steps, ("release-build", "release-publish"), tmp_path)
    build = steps["release-build"].create
    lines = [line.strip() for line in build.splitlines() if line.strip().startswith("run_hook ")]
    assert lines[0].endswith(" once 600 'bin/rails db:migrate' db/migrate db/schema.rb || return"), lines
    assert lines[1].endswith(" '' 60 'echo always' || return"), lines        # no paths: runs every time
    assert lines[2].endswith(" '' 60 bin/warm -odd-name config/.env.example || return"), lines
    assert lines[3].endswith(" '' 60 'logger failed' || return"), lines
    assert "git --literal-pathspecs diff-tree -r --quiet" in build       # names, never patterns
