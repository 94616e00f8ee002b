"""The config files an app server receives, rendered from its spec (the steps install them)."""
from __future__ import annotations

import json
import re
from typing import Any

from ecom_infra.errors import ConfigError
from ecom_infra.rules import ENV_NAME

from .. import render
from .spec import SLOTS, AppServerSpec

ENV_FILE_HEADER = "# Written by ecom-infra (apps[].env, ecom-infra:appSecrets): edits are overwritten."
FILE_EOF = "ECOM_FILE_EOF"  # here-document terminator for file contents inside scripts


# ---------------------------------------------------------------------------- quoting helpers


def _ruby_str(value: str) -> str:
    """A single-quoted Ruby string literal (no interpolation)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _yaml_str(value: str) -> str:
    """A double-quoted YAML scalar (JSON string syntax is valid YAML)."""
    return json.dumps(value)


def _file_block(content: str) -> str:
    """File content ready to sit in a quoted here-document: ends with a newline, no terminator inside."""
    if not content.endswith("\n"):
        content += "\n"
    if any(line == FILE_EOF for line in content.splitlines()):
        raise ValueError(f"file content contains the here-document terminator {FILE_EOF}")
    return content


# ---------------------------------------------------------------------------- config files


def _env_quote(value: str) -> str:
    """A double-quoted value as systemd's EnvironmentFile reads it (and load_app_environment)."""
    return '"' + re.sub(r'(["\\`$])', r"\\\1", value) + '"'


def render_environment_file(variables: Any) -> str:
    """puma's environment file: plain and secret variables, one `NAME="value"` a line, sorted.

    Called inside an apply on secret values: the text is a secret and travels on stdin only."""
    lines = [ENV_FILE_HEADER]
    for name, value in sorted(variables):
        if not ENV_NAME.fullmatch(name) or set(value) & {"\n", "\r", "\0"}:
            raise ConfigError(f"app_server.env.{name if ENV_NAME.fullmatch(name) else '?'}",
                              "must be a variable name with a value without newlines or NUL")
        lines.append(f"{name}={_env_quote(value)}")
    return "\n".join(lines) + "\n"


def render_puma_config(spec: AppServerSpec) -> str:
    return render("app_server/puma.rb.j2", spec=spec, rb=_ruby_str, slots=list(SLOTS))


def render_puma_launcher(spec: AppServerSpec) -> str:
    return render("app_server/puma_start.rb.j2", spec=spec)


def render_puma_unit(spec: AppServerSpec) -> str:
    return render("app_server/puma.service.j2", spec=spec)


def render_puma_socket(spec: AppServerSpec) -> str:
    return render("app_server/puma.socket.j2", spec=spec)


def render_nginx_site(spec: AppServerSpec) -> str:
    listen = f"{spec.http_bind}:{spec.http_port}" if spec.http_bind else str(spec.http_port)
    return render("app_server/nginx_site.conf.j2", spec=spec, listen=listen,
                  upstream=f"puma-{spec.app}")


def render_datadog_conf(spec: AppServerSpec) -> str:
    return render("app_server/datadog_process.yaml.j2", spec=spec, y=_yaml_str)


def render_ssh_config(spec: AppServerSpec) -> str:
    if spec.git_host is None:
        raise ValueError("render_ssh_config needs spec.git_host")
    return render("app_server/ssh_config.j2", spec=spec)


def render_bundle_config(spec: AppServerSpec) -> str:
    """A release's `.bundle/config`: read by `bundle install` and by `bundle exec` at run time."""
    return render("app_server/bundle_config.yml.j2", spec=spec, y=_yaml_str)
