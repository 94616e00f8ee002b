"""Property test (issue 12): hostile values in every setting, through the offline plan's settings reader.

Every generated value is wrong-typed, Unicode, huge, empty or a shell payload. Whatever it is,
the run ends in one of two ways: a ConfigError whose one-line message names the setting (never
a traceback), or, where the value happens to be valid, a plan in which no hostile string
reaches a rendered script. Deterministic (derandomize) and bounded, so CI runs the same cases.
"""
from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ecom_infra import plan as offline_plan
from ecom_infra import stacks
from ecom_infra.errors import ConfigError

from ..conftest import ROOT

RAW = stacks.stack_config("staging", ROOT)

# (setting, path inside its value); None: the whole value.
KEYS = [
    ("environment", None), ("awsEndpoint", None), ("apps", None), ("deploy", None), ("ruby", None),
    ("network", None), ("ssh", None), ("ami", None), ("shaBucket", None), ("haproxy", None), ("datadog", None),
    ("gitKnownHosts", None), ("tags", None),
    *[("apps", (0, k)) for k in ("name", "repo", "branch", "servers", "instanceType", "hostnames",
                                 "healthCheckPath", "healthCheckTimeout", "pumaWorkers", "pumaThreads")],
    ("apps", (0,)), ("apps", (0, "hostnames", 0)),
    *[("deploy", (k,)) for k in ("user", "group", "root", "keepReleases", "railsEnv")],
    *[("ruby", (k,)) for k in ("source", "bundleLocal")],
    ("network", ("vpcId",)), ("network", ("subnets",)), ("network", ("subnets", 0)),
    *[("network", ("subnets", 0, k)) for k in ("id", "az", "cidr")],
    *[("ssh", (k,)) for k in ("user", "adminCidrs", "publicKey")], ("ssh", ("adminCidrs", 0)),
    *[("ami", (k,)) for k in ("id", "owners", "namePattern")],
    *[("shaBucket", (k,)) for k in ("name", "key", "owner")],
    *[("haproxy", (k,)) for k in ("instanceType", "vrrpRouterId", "checkInterval")],
    *[("datadog", (k,)) for k in ("enabled", "confDir")],
    ("gitKnownHosts", (0,)), ("tags", ("Team",)),
]

PAYLOADS = ["$(touch /tmp/pwned)", "`id`", "a;reboot", "x\ny", "' OR '1'='1", "../../etc/passwd", "a|b", "a&&b",
            "${IFS}", "\x00", "%s%n", "-rf", "--upload-pack=sh"]
HOSTILE_CHARS = set("$`;|&<>\\'\"\n\x00") | {"{", "}"}
unicode_text = st.text(st.characters(min_codepoint=0x80, max_codepoint=0x2FFFF, exclude_categories=("Cs",)),
                       min_size=1, max_size=20)
scalars = st.one_of(
    st.sampled_from(PAYLOADS),
    unicode_text,
    st.sampled_from(["", " ", "\u00b2", "\u0663", "\uff15", "1e3", "0x10", "-1", "true\n", "null"]),
    st.integers().filter(lambda n: n < 0 or n > 10 ** 6),
    st.just(10 ** 400), st.floats(allow_nan=False), st.just(True),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "\u00e9", "$", "/"]), st.integers(5_000, 200_000)),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=8), scalars, max_size=2),
                   st.just([]), st.just({}))


def override(setting: str, path: tuple | None, value) -> dict[str, str]:
    if path is None:
        doc = value
    else:
        doc = copy.deepcopy(RAW.get(f"ecom-infra:{setting}", {} if isinstance(path[0], str) else []))
        node = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return {f"ecom-infra:{setting}": doc if isinstance(doc, str) else json.dumps(doc)}


def hostile_strings(value) -> list[str]:
    """The strings in `value` that must never reach a script as they are."""
    if isinstance(value, str):
        return [value] if (set(value) & HOSTILE_CHARS or not value.isascii()) and len(value) >= 2 else []
    if isinstance(value, list):
        return [s for v in value for s in hostile_strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in hostile_strings(k) + hostile_strings(v)]
    return []


@pytest.mark.parametrize("setting,path", KEYS, ids=[f"{s}{'' if p is None else p}" for s, p in KEYS])
@hsettings(max_examples=12, derandomize=True, deadline=None, database=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(value=values)
def test_hostile_values_are_one_line_errors_naming_the_setting(setting, path, value):
    try:
        result = offline_plan.run("staging", config_overrides=override(setting, path, value))
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 1000, message[:300]
        # The key named is the setting, or the one a cross-check names (a repo's host key, the
        # subnets' room for hosts, the sha bucket's owner for another environment).
        assert exc.key.startswith((f"ecom-infra:{setting}", "ecom-infra:gitKnownHosts", "ecom-infra:network")), \
            message[:300]
        return
    # Accepted (a value that is valid after all): nothing hostile reached a script.
    hostile = hostile_strings(value)
    for r in result.to_dict(reveal_secrets=True)["resources"]:
        for key in ("create", "update", "delete"):
            script = str(r["inputs"].get(key) or "")
            for s in hostile:
                assert s not in script, (r["name"], key, s[:60])


def test_a_hostile_stack_file_exits_2_with_one_line(tmp_path, capsys):
    from ecom_infra import cli

    for name in ("__main__.py", "Pulumi.yaml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    text = (ROOT / "Pulumi.staging.yaml").read_text().replace("user: deploy", "user: '$(touch /tmp/pwned)'")
    (tmp_path / "Pulumi.staging.yaml").write_text(text)
    code = cli.main(["plan", "--stack", "staging", "--project-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines() == [err.strip()] and err.startswith("ecom-deploy: error: ecom-infra:deploy.user:")
