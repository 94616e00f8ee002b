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
only of digits (or one like `1e10...`) is not turned into a number. The file is machine-written
(`ecom-deploy` rewrites it whole, so comments and key order do not survive a write); it must
be UTF-8 and at most MAX_BYTES.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import yaml

from . import defaults
from .errors import ConfigError
from .rules import EXAMPLE_SHA, NAME, check_sha

# A real file is a few hundred bytes; YAML takes minutes and gigabytes on a 50 MB one.
MAX_BYTES = 1024 * 1024

ShaMap = dict[str, dict[str, str]]


def decode(data: bytes, source: str = defaults.SHA_BUCKET_KEY) -> str:
    """The file's text; invalid UTF-8 is refused, never replaced (a replaced byte hides a corruption)."""
    if len(data) > MAX_BYTES:
        raise ConfigError(source, f"is larger than {MAX_BYTES // 1024} KiB: not a sha file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, f"is not valid UTF-8 (byte {exc.start})") from None


def parse(text: str, apps: Sequence[str], source: str = defaults.SHA_BUCKET_KEY, *, environment: str | None = None,
          environments: Sequence[str] | None = None) -> ShaMap:
    """Parse the sha file into {environment: {app: sha}}.

    `apps` is the ordered list of known apps; the first one receives the sha of an
    old flat entry. Unknown app names are an error (a typo would otherwise deploy nothing).
    With `environment` (a stack reading its own shas) only that environment's entries are
    read and checked against `apps`: the others belong to stacks with other apps.
    With `environments` (the CLI), an environment no stack defines is an error.
    """
    if not apps:
        raise ValueError("parse() needs at least one app")
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ConfigError(source, f"is larger than {MAX_BYTES // 1024} KiB: not a sha file")
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
        if not isinstance(env, str) or not NAME.fullmatch(env):
            shown = repr(env) if len(repr(env)) <= 60 else repr(env)[:57] + "..."
            raise ConfigError(f"{source}: {shown}", "is not a valid environment name", "staging")
        if environment is not None and env != environment:
            continue
        if environments is not None and env not in environments:
            raise ConfigError(f"{source}: {env}", f"is an environment no stack defines "
                                                  f"(known: {', '.join(environments)})", "staging")
        if isinstance(entry, str):  # old flat form
            result[env] = {apps[0]: check_sha(entry, f"{source}: {env}")}
            continue
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {env}", "must map app names to shas",
                              f"{env}: {{{apps[0]}: {EXAMPLE_SHA}}}")
        shas: dict[str, str] = {}
        for app, sha in entry.items():
            if app not in apps:
                app = app if len(app) <= 60 and app.isprintable() else repr(app[:57]) + "..."
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
