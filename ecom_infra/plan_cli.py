"""`ecom-deploy plan`, `diff` and `outputs`: read the offline plan."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import shafile
from .errors import ConfigError
from .stacks import PROJECT_DIR

if TYPE_CHECKING:
    from . import plan as offline_plan

SCRIPT_KEYS = ("create", "update", "delete")
LONG_VALUE = 72


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="print the offline plan of a stack (no cloud, no Pulumi CLI)")
    p.add_argument("--stack", required=True, help="stack name, e.g. staging")
    p.add_argument("--json", action="store_true", help="stable, sorted JSON instead of text")
    p.add_argument("--sha-file", type=Path, help="use this local sha_number.yml instead of the bucket's")
    p.add_argument("--secrets-file", type=Path, help=argparse.SUPPRESS)   # local fleet: real secret values
    p.add_argument("--reveal-secrets", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--project-dir", type=Path, default=PROJECT_DIR, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_plan)

    d = sub.add_parser("diff", help="what changes between two JSON plans, per host and resource, as Markdown")
    d.add_argument("old", type=Path)
    d.add_argument("new", type=Path)
    d.set_defaults(func=cmd_diff)

    o = sub.add_parser("outputs", help="the stack outputs of the offline plan, as JSON (dashboards schema)")
    o.add_argument("--stack", required=True)
    o.add_argument("--sha-file", type=Path)
    o.set_defaults(func=cmd_outputs)


def _read_sha_file(path: Path | None) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        raise ConfigError("--sha-file", f"{path} does not exist", "sha_number.yml")
    return shafile.decode(path.read_bytes(), f"--sha-file {path}")


def _read_secrets(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise ConfigError("--secrets-file", "must map config keys to strings", "ecom-infra:deployKey: '...'")
    return doc


def build(args: argparse.Namespace) -> offline_plan.PlanResult:
    from . import plan as offline_plan  # noqa: PLC0415 - the SDK loads in ~0.3 s: only for the plan verbs

    return offline_plan.run(args.stack, sha_file_text=_read_sha_file(args.sha_file),
                            secrets=_read_secrets(getattr(args, "secrets_file", None)),
                            project_dir=getattr(args, "project_dir", PROJECT_DIR))


def cmd_plan(args: argparse.Namespace) -> int:
    result = build(args)
    doc = result.to_dict(reveal_secrets=args.reveal_secrets)
    if args.json:
        for warning in result.warnings:   # the text form prints them itself
            print(f"warning: {warning}", file=sys.stderr)
        sys.stdout.write(dump_json(doc))
    else:
        sys.stdout.write(render_text(doc))
    return 0


def cmd_outputs(args: argparse.Namespace) -> int:
    from . import plan as offline_plan  # noqa: PLC0415

    result = offline_plan.run(args.stack, sha_file_text=_read_sha_file(args.sha_file))
    sys.stdout.write(dump_json(result.to_dict()["outputs"]))
    return 0


def dump_json(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------- text form


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    if "\n" in text:
        return f"<{text.count(chr(10)) + 1} lines>"
    return text if len(text) <= LONG_VALUE else text[:LONG_VALUE - 3] + "..."


def render_text(doc: dict) -> str:
    out: list[str] = [f"Stack {doc['stack']} (project {doc['project']}): {len(doc['resources'])} resources", ""]
    for warning in doc["warnings"]:
        out.append(f"warning: {warning}")
    children: dict[str | None, list[dict]] = {}
    for r in doc["resources"]:
        children.setdefault(r["parent"], []).append(r)
    roots = [r for r in doc["resources"] if r["parent"] not in {x["urn"] for x in doc["resources"]}]

    def walk(r: dict, depth: int) -> None:
        opts = [k for k in ("protect", "retain_on_delete", "delete_before_replace") if r["options"].get(k)]
        flags = f"  [{', '.join(opts)}]" if opts else ""
        out.append(f"{'  ' * depth}{r['type']}  {r['name']}{flags}")
        for key, value in sorted(r["inputs"].items()):
            if key in SCRIPT_KEYS or key == "connection" or value in (None, [], {}, ""):
                continue
            out.append(f"{'  ' * depth}    {key}: {_short(value)}")
        for kid in sorted(children.get(r["urn"], []), key=lambda k: (k["type"], k["name"])):
            walk(kid, depth + 1)

    out.append("Resources:")
    for r in sorted(roots, key=lambda k: (k["type"], k["name"])):
        walk(r, 1)
    out += ["", "Outputs:", dump_json(doc["outputs"]).rstrip(), "", "Files and scripts per host:"]
    by_host: dict[str, list[dict]] = {}
    for r in doc["resources"]:
        if r["type"].startswith("command:remote:"):
            host = r["inputs"].get("connection", {}).get("host", "?")
            by_host.setdefault(str(host), []).append(r)
    names = {h["privateIp"]: name for name, h in doc.get("hosts", {}).items()}
    rank = {urn: i for i, urn in enumerate(execution_order(doc))}
    for host in sorted(by_host, key=lambda h: names.get(h, h)):
        out.append(f"== {names.get(host, '?')} ({host})")
        for r in sorted(by_host[host], key=lambda r: rank[r["urn"]]):
            for key in SCRIPT_KEYS:
                if key in r["inputs"]:
                    out += [f"--- {r['name']} ({key})", str(r["inputs"][key]).rstrip()]
            if "stdin" in r["inputs"]:
                out.append(f"--- {r['name']} (stdin): {_short(r['inputs']['stdin'])}")
    return "\n".join(out) + "\n"


def execution_order(doc: dict) -> list[str]:
    """URNs in an order that respects dependencies (ties by URN): how the engine would run them."""
    deps = {r["urn"]: set(r["dependencies"]) for r in doc["resources"]}
    deps = {urn: wanted & deps.keys() for urn, wanted in deps.items()}   # only what the plan declares
    done: list[str] = []
    placed: set[str] = set()
    pending = sorted(deps)
    while pending:
        ready = [u for u in pending if deps[u] <= placed]
        if not ready:                      # a cycle cannot come from Pulumi; keep going anyway
            ready = pending[:1]
        for urn in ready:
            done.append(urn)
            placed.add(urn)
        pending = [u for u in pending if u not in placed]
    return done


# ----------------------------------------------------------------------------- diff


def _load_plan(path: Path) -> dict:
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(str(path), "does not exist", "plan.json from `ecom-deploy plan --json`") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"is not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), f"is not JSON ({exc.msg} at line {exc.lineno})") from None
    example = "ecom-deploy plan --stack staging --json"
    if not isinstance(doc, dict) or not isinstance(doc.get("resources"), list):
        raise ConfigError(str(path), "is not a plan (no resources list)", example)
    if not isinstance(doc.get("hosts", {}), dict) or not all(
            isinstance(h, dict) for h in doc.get("hosts", {}).values()):
        raise ConfigError(f"{path}: hosts", "must map host names to objects", example)
    # diff_plans reads these fields of every resource; a hand-made or truncated plan lacks some.
    shape = {"urn": str, "type": str, "name": str, "inputs": dict, "options": dict}
    for i, r in enumerate(doc["resources"]):
        for field, kind in shape.items():
            if not isinstance(r, dict) or not isinstance(r.get(field), kind):
                raise ConfigError(f"{path}: resources[{i}].{field}", f"is missing or not a {kind.__name__}",
                                  example)
    return doc


def diff_plans(old: dict, new: dict) -> list[tuple[str, str, str, list[str]]]:
    """(host, action, resource, changed keys) for each resource that differs, sorted."""
    def index(doc: dict) -> dict[str, dict]:
        return {r["urn"]: r for r in doc["resources"]}

    names = {h.get("privateIp"): name for doc in (old, new) for name, h in doc.get("hosts", {}).items()}

    def host_of(r: dict) -> str:
        conn = r["inputs"].get("connection")
        if not isinstance(conn, dict):
            return "(cloud)"
        return f"{names.get(conn.get('host'), '?')} ({conn.get('host')})"

    before, after = index(old), index(new)
    rows: list[tuple[str, str, str, list[str]]] = []
    for urn in sorted(set(before) | set(after)):
        a, b = before.get(urn), after.get(urn)
        if b is None:   # urn is in one of the two, so a is not None here
            assert a is not None
            rows.append((host_of(a), "delete", f"{a['type']} {a['name']}", []))
        elif a is None:
            rows.append((host_of(b), "create", f"{b['type']} {b['name']}", []))
        else:
            changed = sorted(k for k in set(a["inputs"]) | set(b["inputs"])
                             if a["inputs"].get(k) != b["inputs"].get(k))
            if changed:
                replace = "triggers" in changed or any(k in a["options"].get("replace_on_changes", [])
                                                       for k in changed)
                rows.append((host_of(b), "replace" if replace else "update", f"{b['type']} {b['name']}", changed))
    return sorted(rows)


def render_diff(old: dict, new: dict) -> str:
    rows = diff_plans(old, new)
    title = f"### Plan diff: {old.get('stack')} → {new.get('stack')}"
    if not rows:
        return f"{title}\n\nNo changes.\n"
    counts: dict[str, int] = {}
    for _, action, _, _ in rows:
        counts[action] = counts.get(action, 0) + 1
    summary = ", ".join(f"{n} to {a}" for a, n in sorted(counts.items()))
    lines = [title, "", summary, ""]
    current = None
    for host, action, resource, keys in rows:
        if host != current:
            lines += ["", f"**{host}**", "", "| action | resource | changed |", "|---|---|---|"]
            current = host
        lines.append(f"| {action} | `{resource}` | {', '.join(keys)} |")
    return "\n".join(lines) + "\n"


def cmd_diff(args: argparse.Namespace) -> int:
    sys.stdout.write(render_diff(_load_plan(args.old), _load_plan(args.new)))
    return 0
