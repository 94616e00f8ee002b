"""ecom_infra.rules: one error type, one line naming the key; and the only home of patterns."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ecom_infra import rules
from ecom_infra.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("call, message", [
    (lambda: rules.check_count(True, "k", 1, 5, "2"), "k: must be an integer from 1 to 5, got True (example: 2)"),
    (lambda: rules.check_count("٣", "k", 1, 5), "k: must be an integer from 1 to 5, got '٣'"),
    (lambda: rules.check_count(2 ** 200, "k", 1, 5), "k: must be an integer from 1 to 5, got a 53-hex-digit number"),
    (lambda: rules.match(7, rules.APP_NAME, "a.name", "an app name", "shop"), "a.name: must be an app name, got int 7 "
                                                                               "(example: shop)"),
    (lambda: rules.check_bool("yes", "k"), "k: must be true or false, got 'yes' (example: true)"),
    (lambda: rules.check_path("/srv/../etc", "k", "/srv/www"), "k: must not contain '.' or '..' segments, got "
                                                                "'/srv/../etc' (example: /srv/www)"),
    (lambda: rules.check_unknown_keys({"nmae": 1}, {"name"}, "s"), "s.nmae: is not a known setting (known: name)"),
    (lambda: rules.check_http_url("http://h:70000", "e"), "e: port must be 1-65535, got 70000 "
                                                          "(example: http://127.0.0.1:5000)"),
    (lambda: rules.check_sha("abc\nx", "s"), "s: must be a 40-character hex commit sha, got 'abc\\nx' "
                                              "(5 characters) (example: 3f1c0d5e9a7b2c4d6e8f0a1b3c5d7e9f1a2b4c6d)"),
])
def test_checks_raise_one_line_naming_the_key(call, message):
    with pytest.raises(ConfigError) as caught:
        call()
    assert str(caught.value) == message and "\n" not in str(caught.value)


def test_checks_return_the_normalised_value():
    assert rules.check_count(" 12 ", "k", 1, 50) == 12
    assert rules.check_bool("false", "k") is False
    assert rules.check_cidr("10.0.0.0/8", "k") == "10.0.0.0/8"
    assert rules.check_sha("A" * 40, "k") == "a" * 40
    assert rules.redact_url("https://u:p@h/x") == "https://***@h/x"


def test_app_name_rule_is_the_strict_one():
    """One app-name rule: 2-40 characters, ending in a letter or digit (was 40 in settings, 63 elsewhere)."""
    assert rules.APP_NAME.fullmatch("a" * 40) and not rules.APP_NAME.fullmatch("a" * 41)
    assert not rules.APP_NAME.fullmatch("shop-") and not rules.APP_NAME.fullmatch("s")


def test_patterns_live_only_in_rules():
    """No module the rules cover compiles a pattern of its own (renderers/ adopt rules separately)."""
    paths = sorted((ROOT / "ecom_infra").glob("*.py")) + sorted((ROOT / "components").glob("*.py"))
    paths.append(ROOT / "fleet" / "local.py")
    offenders = [str(p.relative_to(ROOT)) for p in paths
                 if p.name != "rules.py" and re.search(r"\bre\.compile\(", p.read_text(encoding="utf-8"))]
    assert offenders == []
