"""Pure renderers: typed inputs -> templates/*.j2 -> text.

Nothing in this package imports Pulumi: every script a host runs and every file it
receives is produced here from plain values, so tests can render, lint and execute
them without an engine.
"""
from __future__ import annotations

import hashlib
import shlex
from functools import lru_cache
from pathlib import Path

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, never an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    # `q` quotes a value for a POSIX shell; every value rendered into a script goes through it.
    env.filters["q"] = lambda value: shlex.quote(str(value))
    return env


def render(template: str, **context: object) -> str:
    """Render `templates/<template>` with `context` (StrictUndefined)."""
    return _environment().get_template(template).render(**context)


def content_hash(text: str) -> str:
    """Stable short hash of rendered text, used as a reload trigger."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
