"""The README's config reference states the defaults `ecom_infra.defaults` really applies."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ecom_infra import defaults, rules, settings
from ecom_infra.errors import ConfigError

from .test_settings import BASE, parse

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_defaults() -> dict[str, str]:
    """{key: default as written} from the README's "Config reference" table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Config reference\n", 1)[1].split("\n## ", 1)[0]
    found: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) < 3:
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        # `apps[].pumaWorkers`, `pumaThreads`: a short name shares the first one's section.
        keys = [n if n.startswith(("aws:",)) or "." in n or n == names[0] else names[0].rsplit(".", 1)[0] + "." + n
                for n in names]
        values = [cells[1]] if len(keys) == 1 else [v.strip() for v in re.findall(r"`[^`]*`|[^,]+", cells[1])]
        assert len(values) == len(keys), f"README row {cells[0]}: {len(keys)} keys but defaults {cells[1]!r}"
        for key, value in zip(keys, values, strict=True):
            found[key] = value[1:-1] if re.fullmatch(r"`[^`]*`", value) else value
    return found


def test_readme_table_matches_defaults_module():
    stated = readme_defaults()
    assert set(stated) == set(defaults.README_TABLE), (
        f"only in README: {sorted(set(stated) - set(defaults.README_TABLE))}; "
        f"only in defaults.README_TABLE: {sorted(set(defaults.README_TABLE) - set(stated))}")
    wrong = {k: (stated[k], defaults.README_TABLE[k]) for k in stated if stated[k] != defaults.README_TABLE[k]}
    assert not wrong, f"README default differs from ecom_infra.defaults (README, code): {wrong}"


def test_readme_table_covers_every_known_top_level_key():
    stated = {k.split(".", 1)[0].split("[", 1)[0] for k in readme_defaults() if not k.startswith("aws:")}
    assert stated == set(settings.KNOWN_KEYS)


def test_defaults_module_is_what_settings_applies():
    """The minimal stack config: everything left out comes from ecom_infra.defaults."""
    s = parse(BASE)
    app = s.app("ecom-docs")   # the entry that sets only name, repo and hostnames
    assert (app.branch, app.instance_type, app.health_check_path, app.health_check_timeout, app.puma_workers,
            app.puma_threads, app.drain_restarts, app.keep_standby, app.linked_dirs, app.linked_files) == (
        defaults.APP_BRANCH, defaults.APP_INSTANCE_TYPE, defaults.APP_HEALTH_CHECK_PATH,
        defaults.APP_HEALTH_CHECK_TIMEOUT, defaults.APP_PUMA_WORKERS, defaults.APP_PUMA_THREADS,
        defaults.APP_DRAIN_RESTARTS, defaults.APP_KEEP_STANDBY, defaults.APP_LINKED_DIRS, defaults.APP_LINKED_FILES)
    assert app.restart_batch == defaults.restart_batch(app.servers)
    assert (s.deploy.user, s.deploy.group, s.deploy.root, s.deploy.keep_releases, s.deploy.rails_env) == (
        defaults.DEPLOY_USER, defaults.DEPLOY_USER, defaults.DEPLOY_ROOT, defaults.KEEP_RELEASES, defaults.RAILS_ENV)
    assert (s.ruby.source, s.ruby.bundle_local, s.ssh.user) == (
        defaults.RUBY_SOURCE, defaults.RUBY_BUNDLE_LOCAL, defaults.SSH_USER)
    assert (s.ami.owners, s.ami.name_pattern) == (defaults.AMI_OWNERS, defaults.AMI_NAME_PATTERN)
    assert (s.sha_bucket.name, s.sha_bucket.key, s.sha_bucket.adopt, s.sha_bucket.noncurrent_days,
            s.sha_bucket.noncurrent_kept, s.sha_bucket.owner) == (
        defaults.SHA_BUCKET_NAME, defaults.SHA_BUCKET_KEY, defaults.SHA_BUCKET_ADOPT, defaults.NONCURRENT_DAYS,
        defaults.NONCURRENT_KEPT, defaults.sha_bucket_owner(s.environment))
    assert (s.haproxy.instance_type, s.haproxy.vrrp_router_id, s.haproxy.check_interval) == (
        defaults.HAPROXY_INSTANCE_TYPE, defaults.VRRP_ROUTER_ID, defaults.CHECK_INTERVAL)
    assert (s.datadog.enabled, s.datadog.conf_dir, s.datadog.api_url, s.deploy_events.timeout) == (
        defaults.DATADOG_ENABLED, defaults.DATADOG_CONF_DIR, defaults.DATADOG_API_URL, defaults.EVENT_TIMEOUT)


def readme_rows() -> dict[str, str]:
    """{first key of a row: its meaning column} from the config reference table."""
    section = README.read_text(encoding="utf-8").split("\n## Config reference\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[re.findall(r"`([^`]+)`", cells[0])[0]] = cells[2]
    return rows


# README key -> the range ecom_infra.rules enforces for it, in the order the row states them.
RANGES = {
    "apps[].servers": [rules.SERVERS],
    "apps[].healthCheckTimeout": [rules.HEALTH_CHECK_TIMEOUT],
    "apps[].pumaWorkers": [rules.PUMA_WORKERS, rules.PUMA_THREADS],
    "apps[].hooks.<point>[].timeout": [rules.HOOK_TIMEOUT],
    "deploy.keepReleases": [rules.KEEP_RELEASES],
    "shaBucket.noncurrentDays": [rules.NONCURRENT_DAYS],
    "shaBucket.noncurrentKept": [rules.NONCURRENT_KEPT],
    "haproxy.vrrpRouterId": [rules.VRRP_ROUTER_ID, rules.CHECK_INTERVAL],
    "deployEvents.timeout": [rules.EVENT_TIMEOUT],
    "awsEndpoint": [rules.PORT],
}


def test_readme_ranges_match_rules():
    rows = readme_rows()
    for key, ranges in RANGES.items():
        stated = [(int(a), int(b)) for a, b in re.findall(r"\b(\d+)-(\d+)\b", rows[key])]
        assert stated == ranges, f"README row {key} states {stated}, ecom_infra.rules has {ranges}"


def test_readme_error_example_is_what_settings_says():
    """The config reference quotes one error line: it is the real one."""
    intro = README.read_text(encoding="utf-8").split("\n## Config reference\n", 1)[1].split("\n| key |", 1)[0]
    quoted = re.search(r"\(`(ecom-infra:deploy\.keepReleases: [^`]+)`\)", " ".join(intro.split())).group(1)
    with pytest.raises(ConfigError) as caught:
        parse({**BASE, "deploy": {"keepReleases": 1}})
    assert str(caught.value) == quoted
