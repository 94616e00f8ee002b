"""The offline plan: run `__main__.py` under the SDK's mocks and record what it declares.

The plan is every resource (type, name, parent, dependencies, options, inputs including
every script), and the stack outputs. It needs no cloud account and no Pulumi CLI, and
two runs with the same inputs are byte-identical. Tests assert on it, `ecom-deploy plan`
prints it, and the local fleet executes its remote commands.
"""
from __future__ import annotations

import json
import logging
import os
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import mocks as plan_mocks
from . import stacks
from .errors import ConfigError
from .stacks import PROJECT_DIR, PROJECT_NAME

SECRET_MASK = "[secret]"
PLACEHOLDER = "PLACEHOLDER-NOT-A-REAL-SECRET({key})"
REQUIRED_SECRETS = ("ecom-infra:deployKey", "ecom-infra:sshPrivateKey")
STRUCTURED_SECRETS = ("ecom-infra:appSecrets",)
PUBLIC_CONNECTION_KEYS = frozenset({"host", "port", "user", "hostKey", "dialErrorLimit", "perDialTimeout"})


@dataclass
class PlanResult:
    stack: str
    resources: list[plan_mocks.Registration]
    outputs: dict[str, Any]            # name -> value (secret outputs wrapped)
    warnings: list[str]

    def to_dict(self, reveal_secrets: bool = False) -> dict[str, Any]:
        """The JSON form: resources sorted by URN, keys sorted, secrets masked unless revealed."""
        by_urn = {r.urn: r for r in self.resources}

        def custom_descendants(urn: str) -> list[str]:
            kids = [r.urn for r in self.resources if r.parent == urn]
            found: list[str] = []
            for kid in kids:
                found.extend([kid] if by_urn[kid].custom else custom_descendants(kid))
            return found

        resources = []
        for r in sorted(self.resources, key=lambda r: r.urn):
            deps: set[str] = set()
            for dep in r.dependencies:
                if dep in by_urn and not by_urn[dep].custom:
                    deps.update(custom_descendants(dep))   # depending on a component = on all its resources
                else:
                    deps.add(dep)
            resources.append({
                "urn": r.urn, "type": r.type, "name": r.name, "custom": r.custom, "parent": r.parent,
                "dependencies": sorted(deps), "provider": r.provider, "id": r.id, "options": r.options,
                "inputs": to_json(r.inputs, reveal_secrets),
            })
        return {"project": PROJECT_NAME, "stack": self.stack, "resources": resources, "hosts": self.hosts(),
                "outputs": to_json(self.outputs, reveal_secrets), "warnings": list(self.warnings)}

    def hosts(self) -> dict[str, dict[str, Any]]:
        """Every EC2 host by name: id, address, role, app and the public half of its pinned host key."""
        keys = {r.name: plan_mocks.unwrap(r.state) for r in self.resources
                if r.type == "tls:index/privateKey:PrivateKey"}
        hosts = {}
        for r in self.resources:
            if r.type != "aws:ec2/instance:Instance":
                continue
            state = plan_mocks.unwrap(r.state)
            tags = state.get("tags") or {}
            hosts[r.name] = {"instanceId": r.id, "privateIp": state.get("privateIp"), "role": tags.get("Role"),
                             "app": None if tags.get("App") in (None, "-") else tags.get("App"),
                             "az": state.get("availabilityZone"),
                             "hostKey": (keys.get(f"{r.name}-host-key") or {}).get("publicKeyOpenssh", "").strip()}
        return dict(sorted(hosts.items()))


def to_json(value: Any, reveal: bool) -> Any:
    """Plain JSON for plan values: secrets masked (or revealed), assets described, keys sorted."""
    import pulumi

    if plan_mocks.is_secret(value):
        inner = value["value"]
        if reveal:
            return to_json(inner, reveal)
        if isinstance(inner, dict) and PUBLIC_CONNECTION_KEYS & set(inner):
            # A connection turns secret as a whole because its private key is; its address,
            # user and pinned host key are not secrets and the plan must show them.
            return {k: to_json(v, False) if k in PUBLIC_CONNECTION_KEYS else SECRET_MASK
                    for k, v in sorted(inner.items())}
        return SECRET_MASK
    if isinstance(value, dict):
        return {str(k): to_json(value[k], reveal) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [to_json(v, reveal) for v in value]
    if isinstance(value, pulumi.StringAsset):
        return {"text": value.text}
    if isinstance(value, pulumi.FileAsset):
        return {"path": str(value.path)}
    if isinstance(value, pulumi.FileArchive):
        return {"archive_path": str(value.path)}
    if isinstance(value, float) and value.is_integer():
        return int(value)   # protobuf turns every number into a float
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def stack_config(stack: str, project_dir: Path = PROJECT_DIR,
                 secrets: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """Config for an offline run from `Pulumi.<stack>.yaml`, as the engine would pass it.

    Encrypted (`secure:`) and missing required secrets become clearly fake placeholders,
    unless `secrets` supplies real values (the local fleet does).
    """
    raw = stacks.stack_config(stack, project_dir, key="--stack", noun="stack")
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in raw.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            # A structured secret must still parse: its placeholder is an empty object.
            config[key] = "{}" if key in STRUCTURED_SECRETS else PLACEHOLDER.format(key=key)
            secret_keys.append(key)
        elif isinstance(value, str):
            config[key] = value
        else:
            config[key] = json.dumps(value)
    for key in REQUIRED_SECRETS:
        if key not in config:
            config[key] = PLACEHOLDER.format(key=key)
            secret_keys.append(key)
    for key, value in (secrets or {}).items():
        config[key] = value
        if key not in secret_keys:
            secret_keys.append(key)
    return config, sorted(secret_keys)


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run(stack: str, *, sha_file_text: str | None = None, secrets: dict[str, str] | None = None,
        project_dir: Path = PROJECT_DIR, config_overrides: dict[str, str] | None = None,
        mocks: plan_mocks.PlanMocks | None = None) -> PlanResult:
    """Run the program for `stack` under mocks and return what it declared.

    Raises ConfigError for bad settings (nothing is declared in that case).
    """
    import pulumi
    from pulumi.runtime import settings as rt_settings
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    project_dir = Path(project_dir).resolve()   # the run chdirs into it; a relative path would then miss
    config, secret_keys = stack_config(stack, project_dir, secrets)
    config.update(config_overrides or {})
    # No raw config is read here (settings.py is its only reader): PlanMocks gives addresses
    # from the program's inputs; only the fleet's mocks need subnet blocks, and bring their own.
    mocks = mocks or plan_mocks.PlanMocks(stack=stack, region=config.get("aws:region", "us-east-1"),
                                          sha_file_text=sha_file_text)
    monitor = plan_mocks.RecordingMonitor(mocks)
    collector = _WarningCollector()
    logger = logging.getLogger(f"ecom-plan-{stack}")
    logger.handlers[:] = [collector]
    logger.propagate = False

    rt_settings.reset_options(project=PROJECT_NAME, stack=stack, preview=False)
    pulumi.runtime.set_all_config(config, secret_keys)
    pulumi.runtime.set_mocks(mocks, project=PROJECT_NAME, stack=stack, preview=False, monitor=monitor,
                             logger=logger)
    main = project_dir / "__main__.py"
    if str(project_dir) not in sys.path:
        sys.path.insert(0, str(project_dir))
    cwd = os.getcwd()
    os.chdir(project_dir)
    try:
        def run_program() -> None:
            runpy.run_path(str(main), run_name="__main__")

        _sync_await(run_pulumi_func(run_program))
    except pulumi.RunError as exc:
        raise ConfigError(*_split_config_error(str(exc))) from None
    finally:
        os.chdir(cwd)
    root = rt_settings.get_root_resource()
    outputs = _sync_await(_resolve_outputs(dict(getattr(root, "outputs", {}) or {})))
    return PlanResult(stack=stack, resources=list(monitor.registrations), outputs=outputs,
                      warnings=collector.messages)


def _split_config_error(text: str) -> tuple[str, str]:
    key, _, problem = text.partition(": ")
    return (key, problem) if problem else ("config", text)


async def _resolve_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    import pulumi

    resolved: dict[str, Any] = {}
    for name, value in outputs.items():
        out = pulumi.Output.from_input(value)
        result = await out.future()
        resolved[name] = plan_mocks.secret(result) if await out.is_secret() else result
    return resolved
