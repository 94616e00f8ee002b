"""The renderers take the patterns ecom_infra.rules has from there: none compiles one of its own again."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from ecom_infra import rules

ROOT = Path(__file__).resolve().parents[2]


def compiled_patterns(path: Path) -> list[str]:
    """The literal patterns `path` passes to re.compile."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "compile"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
            and node.args and isinstance(node.args[0], ast.Constant)]


def test_no_renderer_compiles_a_pattern_rules_has():
    known = {value.pattern for value in vars(rules).values() if isinstance(value, re.Pattern)}
    found = {str(path.relative_to(ROOT)): compiled_patterns(path)
             for path in sorted((ROOT / "renderers").rglob("*.py"))}
    assert any(found.values())            # the scan sees the renderers' own (renderer-only) patterns
    assert {path: sorted(set(patterns) & known) for path, patterns in found.items() if set(patterns) & known} == {}
