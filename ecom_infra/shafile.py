"""`sha_number.yml`: which commit each environment runs, per app.

Current form (one entry per environment and app)::

    staging:
      ecom-platform: 3f1c0d5e...   # 40 lowercase hex characters
      ecom-docs: 9ab2...
    production:
      ecom-platform: 1d2e...

Old flat form, still accepted on read (the value is the sha of the *first* app)::

    staging: 3f1c0d5e...
    production: 1d2e...

The file is parsed with YAML's base loader, so every scalar stays a string: a sha made
only of digits (or one like `1e10...`) is not turned into a number.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import yaml

from .errors import ConfigError

SHA_RE = re.compile(r"^[0-9a-f]{40}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
EXAMPLE_SHA = "3f1c0d5e9a7b2c4d6e8f0a1b3c5d7e9f1a2b4c6d"

ShaMap = dict[str, dict[str, str]]


def check_sha(value: object, key: str) -> str:
    """Return `value` as a sha (40 hex, lowercased) or raise ConfigError naming `key`."""
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a 40-character hex commit sha, got {type(value).__name__}",
                          EXAMPLE_SHA)
    sha = value.strip().lower()
    if not SHA_RE.fullmatch(sha):
        shown = value if len(value) <= 60 and value.isprintable() else repr(value[:60])
        raise ConfigError(key, f"must be a 40-character hex commit sha, got {shown!r} "
                               f"({len(value)} characters)", EXAMPLE_SHA)
    return sha


def parse(text: str, apps: Sequence[str], source: str = "sha_number.yml") -> ShaMap:
    """Parse the sha file into {environment: {app: sha}}.

    `apps` is the ordered list of known apps; the first one receives the sha of an
    old flat entry. Unknown app names are an error (a typo would otherwise deploy nothing).
    """
    if not apps:
        raise ValueError("parse() needs at least one app")
    try:
        doc = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds only str/list/dict
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(source, f"is not valid YAML{where}",
                          f"staging: {{ecom-platform: {EXAMPLE_SHA}}}") from None
    if doc is None or doc == "":
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(source, "must be a mapping of environment to entries",
                          f"staging: {{ecom-platform: {EXAMPLE_SHA}}}")
    result: ShaMap = {}
    for env, entry in doc.items():
        if not isinstance(env, str) or not NAME_RE.fullmatch(env):
            raise ConfigError(f"{source}: {env!r}", "is not a valid environment name", "staging")
        if isinstance(entry, str):  # old flat form
            result[env] = {apps[0]: check_sha(entry, f"{source}: {env}")}
            continue
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {env}", "must map app names to shas",
                              f"{env}: {{{apps[0]}: {EXAMPLE_SHA}}}")
        shas: dict[str, str] = {}
        for app, sha in entry.items():
            if app not in apps:
                raise ConfigError(f"{source}: {env}.{app}",
                                  f"unknown app (known: {', '.join(apps)})", apps[0])
            shas[app] = check_sha(sha, f"{source}: {env}.{app}")
        result[env] = shas
    return result


def dump(shas: Mapping[str, Mapping[str, str]]) -> str:
    """Render the current form, sorted, shas quoted. `parse(dump(x)) == x`."""
    lines = ["# Which commit each environment runs, per app. Written by `ecom-deploy`; see README."]
    for env in sorted(shas):
        lines.append(f"{env}:")
        for app in sorted(shas[env]):
            lines.append(f"  {app}: \"{check_sha(shas[env][app], f'{env}.{app}')}\"")
    return "\n".join(lines) + "\n"
