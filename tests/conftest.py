"""Shared fixtures: offline plans of the project's stacks (run once per session)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecom_infra import plan as offline_plan

ROOT = Path(__file__).resolve().parent.parent
SHA_A = "1" * 40          # digits only: must stay a string, never a YAML int
SHA_B = "ab" * 20
SHA_FILE = f"staging:\n  ecom-platform: '{SHA_A}'\n  ecom-docs: {SHA_B}\nproduction:\n  ecom-platform: {SHA_B}\n"


def synthetic_apps(servers: int) -> str:
    """Two apps with `servers` servers each, as the JSON config value of `ecom-infra:apps`."""
    return json.dumps([
        {"name": "ecom-platform", "repo": "git@github.com:emami/ecom-platform.git", "servers": servers,
         "hostnames": ["shop.example.com"]},
        {"name": "ecom-docs", "repo": "git@github.com:emami/ecom-docs.git", "servers": servers,
         "hostnames": ["docs.example.com"]},
    ])


@pytest.fixture(scope="session")
def plans():
    """stack name -> plan dict (masked), built once; 'synthetic' is staging with 2 apps x 20 servers."""
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            if name == "synthetic":
                result = offline_plan.run("staging", sha_file_text=SHA_FILE,
                                          config_overrides={"ecom-infra:apps": synthetic_apps(20)})
            else:
                result = offline_plan.run(name, sha_file_text=SHA_FILE)
            cache[name] = result.to_dict()
        return cache[name]

    return get


def resources_of(plan: dict, type_: str) -> list[dict]:
    return [r for r in plan["resources"] if r["type"] == type_]
