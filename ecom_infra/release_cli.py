"""The release verbs of `ecom-deploy`: stage, promote, rollback, mark-live, deploy-event, show, history.

They read and write `sha_number.yml` in S3 through `ecom_infra.release`. Every argument
is checked before anything is read or written: known environments and apps come from the
stack files (`Pulumi.<env>.yaml`), shas must be 40 hex characters, branches must exist.
A mistake is a ConfigError naming the argument, which `ecom_infra.cli` prints as one line.

Why over ~400 lines: seven verbs share one set of argument checks, the stack-file lookup and the
output format; split per verb, each file would import the others' checks. Split by verb group if it grows.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from . import defaults, events, release, stacks
from .errors import ConfigError
from .rules import ACTOR, BUCKET, EXAMPLE_SHA, check_http_url, check_sha, redact_url
from .settings import event_settings, parse_git_remote

ENV_BUCKET = "ECOM_SHA_BUCKET"
ENV_PROJECT_DIR = "ECOM_PROJECT_DIR"
ENV_ENDPOINT = "AWS_ENDPOINT_URL"

# Where CI systems other than GitHub put the person who started the build.
CI_ACTOR_VARS = ("GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILDKITE_BUILD_CREATOR", "CIRCLE_USERNAME")
GIT_TIMEOUT_S = defaults.GIT_TIMEOUT_S


# -- argument parsing -----------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the release verbs to `ecom-deploy`'s sub-command parser."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where the sha file is")
    where.add_argument("--bucket", help=f"S3 bucket (default: ${ENV_BUCKET} or {defaults.SHA_BUCKET_NAME})")
    where.add_argument("--key", default=defaults.SHA_BUCKET_KEY, help="object key (default: %(default)s)")
    where.add_argument("--endpoint-url", help=f"S3 endpoint, e.g. moto (default: ${ENV_ENDPOINT})")
    # Where the stack files are; tests point it at a temporary project.
    where.add_argument("--project-dir", help=argparse.SUPPRESS)

    writer = argparse.ArgumentParser(add_help=False)
    writer.add_argument("--actor", help="who is writing, stored with the version "
                                        "(default: $GITHUB_ACTOR, other CI variables, then the login user)")

    stage = subparsers.add_parser("stage", parents=[common, writer], help="record a commit for an env/app",
                                  description="Set one environment's sha for one app to a branch's "
                                              "latest commit (git ls-remote) or to --sha.")
    stage.add_argument("--env", required=True, help="environment (stack), e.g. staging")
    stage.add_argument("--app", required=True, help="app name, e.g. ecom-platform")
    stage.add_argument("--branch", help="branch to resolve (default: the app's branch in the stack file)")
    source = stage.add_mutually_exclusive_group()
    source.add_argument("--repo", help="git URL or path (default: the app's repo in the stack file)")
    source.add_argument("--sha", help="use this 40-hex commit instead of resolving the branch")
    stage.add_argument("--no-verify-sha", action="store_true",
                       help="do not ask the app's repository whether --sha is in it (offline use)")
    stage.set_defaults(func=cmd_stage)

    promote = subparsers.add_parser("promote", parents=[common, writer], help="copy shas to another env",
                                    description="Copy the shas of one environment to another.")
    promote.add_argument("--from", dest="source", required=True, help="environment to copy from")
    promote.add_argument("--to", dest="target", required=True, help="environment to copy to")
    promote.add_argument("--app", help="only this app (default: every app of the target stack)")
    promote.set_defaults(func=cmd_promote)

    rollback = subparsers.add_parser("rollback", parents=[common, writer], help="go back to an earlier sha",
                                     description="Set env/app back to the release that was live before the "
                                                 "current one (from the records `mark-live` keeps), or to --to.")
    rollback.add_argument("--env", required=True)
    rollback.add_argument("--app", required=True)
    rollback.add_argument("--to", help="this sha instead of the previous live one")
    rollback.add_argument("--force", action="store_true", help="allow a --to sha that never ran in this env")
    rollback.set_defaults(func=cmd_rollback)

    mark = subparsers.add_parser("mark-live", parents=[common, writer], help="record what went live",
                                 description="After a successful `pulumi up --stack E`: record, per app, the "
                                             "sha the servers now run (rollback's default target comes "
                                             "from these records).")
    mark.add_argument("--env", required=True)
    mark.add_argument("--app", help="only this app (default: every app of the stack)")
    mark.add_argument("--outputs", help="the stack outputs of that up (`pulumi stack output --json`), "
                                        "whose apps.<app>.sha is what was deployed (default: the sha "
                                        "file now, which is right only if nothing was staged since the up "
                                        "read it)")
    mark.set_defaults(func=cmd_mark_live)

    event = subparsers.add_parser("deploy-event", parents=[common, writer], help="send one event per publish",
                                  description="After every `pulumi up --stack E`, successful or not, and before "
                                              "`mark-live`: for each app whose sha changed, one deploy event to "
                                              "Datadog (when datadog.apiKey is set; the key on stdin) and to "
                                              "deployEvents.webhookUrl. A delivery failure only warns.")
    event.add_argument("--env", required=True)
    event.add_argument("--app", help="only this app (default: every app of the stack)")
    event.add_argument("--result", required=True, choices=events.RESULTS, help="how the up ended")
    event.add_argument("--outputs", required=True,
                       help="the stack outputs (`pulumi stack output --json`): the deployed shas on success, "
                            "the server counts either way")
    event.add_argument("--started", type=int, required=True, help="POSIX time the up started (duration)")
    event.add_argument("--api-key-stdin", action="store_true",
                       help="read the Datadog API key from stdin (never an argument: command lines are visible)")
    event.set_defaults(func=cmd_deploy_event)

    show = subparsers.add_parser("show", parents=[common], help="print the shas",
                                 description="Print `<env>/<app>: <sha>` for every entry.")
    show.add_argument("--env", help="only this environment")
    show.set_defaults(func=cmd_show)

    hist = subparsers.add_parser("history", parents=[common], help="who set which sha when",
                                 description="When env/app got each sha, who set it and what it replaced, "
                                             "newest first, from the object's versions.")
    hist.add_argument("--env", required=True)
    hist.add_argument("--app", required=True)
    hist.add_argument("--limit", type=int, default=20, help="newest N changes (default: %(default)s)")
    hist.set_defaults(func=cmd_history)


# -- shared checks --------------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    project_dir: Path
    store: release.ShaStore


def project_dir(args: argparse.Namespace) -> Path:
    raw = args.project_dir or os.environ.get(ENV_PROJECT_DIR)
    path = Path(raw) if raw else stacks.PROJECT_DIR
    if not stacks.known_stacks(path):
        raise ConfigError("--project-dir" if args.project_dir else (ENV_PROJECT_DIR if raw else "project"),
                          f"no Pulumi.<stack>.yaml files in {path}")
    return path


def stack_apps(env: str, where: Path) -> list[dict]:
    """The raw `ecom-infra:apps` entries of one stack file."""
    try:
        config = stacks.stack_config(env, where)
    except yaml.YAMLError:
        raise ConfigError(str(stacks.stack_file(env, where)), "is not valid YAML") from None
    apps = config.get(f"{stacks.PROJECT_NAME}:apps") or []
    return [a for a in apps if isinstance(a, dict) and isinstance(a.get("name"), str)]


def check_env(name: str, arg: str, where: Path) -> str:
    known = stacks.known_stacks(where)
    if name not in known:
        raise ConfigError(arg, f"unknown environment {name!r} (known: {', '.join(known)})")
    return name


def check_app(app: str, env: str, where: Path, arg: str = "--app") -> dict:
    """The stack file's entry for `app` in `env`, or a ConfigError listing the known apps."""
    entries = stack_apps(env, where)
    for entry in entries:
        if entry["name"] == app:
            return entry
    names = [e["name"] for e in entries]
    raise ConfigError(arg, f"unknown app {app!r} in {env} (known: {', '.join(names) or 'none'})",
                      names[0] if names else None)


def all_apps(where: Path) -> list[str]:
    """Every app of every stack, first-declared first (the first takes a legacy flat entry)."""
    names: list[str] = []
    for env in stacks.known_stacks(where):
        names += [e["name"] for e in stack_apps(env, where) if e["name"] not in names]
    return names


def context(args: argparse.Namespace) -> Context:
    where = project_dir(args)
    bucket = args.bucket or os.environ.get(ENV_BUCKET) or defaults.SHA_BUCKET_NAME
    if not BUCKET.fullmatch(bucket):
        raise ConfigError("--bucket", f"{bucket!r} is not a valid S3 bucket name", defaults.SHA_BUCKET_NAME)
    key = args.key
    if not key or key.startswith("/") or len(key.encode()) > 1024:
        raise ConfigError("--key", f"{key!r} is not a valid object key", defaults.SHA_BUCKET_KEY)
    endpoint = args.endpoint_url or os.environ.get(ENV_ENDPOINT) or None
    if endpoint:
        check_http_url(endpoint, "--endpoint-url")
    apps = all_apps(where)
    if not apps:
        raise ConfigError("project", f"no stack in {where} declares {stacks.PROJECT_NAME}:apps")
    location = release.Location(bucket, key)
    with release.s3_errors(location, endpoint):   # an unknown AWS_PROFILE fails here already
        client = release.s3_client(endpoint)
    store = release.ShaStore(client, location, apps, endpoint_url=endpoint,
                             environments=stacks.known_stacks(where))
    return Context(where, store)


def resolve_actor(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """Who is writing: --actor, else the CI's user variables, else `ci` on CI, else the login user.

    Values found in the environment are made header-safe instead of refused, since the
    person running the command did not type them.
    """
    if explicit is not None:
        if not ACTOR.fullmatch(explicit):
            shown = repr(explicit) if len(explicit) <= 40 else f"{explicit[:37]!r}... ({len(explicit)} characters)"
            raise ConfigError("--actor", f"{shown} must be 1-100 ASCII letters, digits or ._@+-[]", "octocat")
        return explicit
    env_vars: Mapping[str, str] = os.environ if environ is None else environ
    for var in CI_ACTOR_VARS:
        if env_vars.get(var, "").strip():
            return _header_safe(env_vars[var])
    if env_vars.get("CI", "").lower() in {"1", "true", "yes"}:
        return "ci"
    try:
        return _header_safe(getpass.getuser())
    except (KeyError, OSError):   # a container user with no passwd entry and no $USER
        return f"uid-{os.getuid()}"


def _header_safe(value: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._@+\[\]-]+", "-", value.strip()).strip("-")[:100]
    return cleaned if cleaned and ACTOR.fullmatch(cleaned) else "unknown"


redact = redact_url   # kept for callers of the old name
# What git sees of the caller's environment: enough for ssh to find its agent, config and
# keys, nothing that changes git's behaviour (GIT_ALLOW_PROTOCOL, GIT_SSH_COMMAND, GIT_CONFIG_*...).
GIT_ENV_KEEP = ("PATH", "HOME", "USER", "LOGNAME", "SSH_AUTH_SOCK", "LANG", "LC_ALL", "TMPDIR")
# A failing git's message: its fatal:/error: lines, else its last lines (the last alone often says
# only "and the repository exists.").
GIT_STDERR_TAIL = 3


def _git(*args: str, **options) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, **options)
    except FileNotFoundError:
        raise ConfigError("--repo", "git is not installed (needed to resolve --branch; or pass --sha)") from None


def resolve_branch(repo: str, branch: str, key: str = "--repo") -> str:
    """The latest commit of `branch` in `repo`, via `git ls-remote` (no clone needed)."""
    if repo.startswith("-"):
        raise ConfigError("--repo", f"{redact(repo)[:60]!r} must be a git URL, not an option",
                          "git@github.com:emami/ecom-platform.git")
    # The transports the stack settings allow (SSH), checked by the same rule; git enforces
    # it again after any url.insteadOf rewrite through GIT_ALLOW_PROTOCOL.
    parse_git_remote(repo, key)
    ref = f"refs/heads/{branch}"
    if branch.startswith("-") or _git("check-ref-format", ref).returncode != 0:
        raise ConfigError("--branch", f"{branch[:60]!r} is not a valid branch name", "master")
    try:
        done = _git("ls-remote", "--exit-code", repo, ref, env=_git_env(), timeout=GIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConfigError("--repo", f"git ls-remote {redact(repo)} timed out after {GIT_TIMEOUT_S}s") from None
    if done.returncode == 2:   # --exit-code: the remote answered, but has no such ref
        raise ConfigError("--branch", f"no branch {branch!r} in {redact(repo)}", "master")
    if done.returncode != 0:
        raise ConfigError("--repo", f"git ls-remote {redact(repo)} failed: {_git_why(done, repo)}")
    for line in done.stdout.splitlines():
        sha, _, name = line.partition("\t")
        if name == ref:   # patterns match ref tails too (refs/heads/x/refs/heads/master)
            return check_sha(sha, "--branch")
    raise ConfigError("--branch", f"no branch {branch!r} in {redact(repo)}", "master")


def _git_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in GIT_ENV_KEEP if k in os.environ}
    env.update(GIT_ALLOW_PROTOCOL="ssh", GIT_TERMINAL_PROMPT="0",   # fail instead of asking for a password
               GIT_SSH_COMMAND="ssh -o BatchMode=yes", GIT_CONFIG_NOSYSTEM="1")
    return env


def _git_why(done: subprocess.CompletedProcess, repo: str) -> str:
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    lines = [line for line in lines if line.startswith(("fatal:", "error:"))] or lines[-GIT_STDERR_TAIL:]
    return redact(" / ".join(lines).replace(repo, redact(repo)))[:500] if lines else f"exit {done.returncode}"


# What git says when the remote answered but has no such object.
_NOT_THERE = ("not our ref", "couldn't find remote ref", "no such remote ref", "not a valid object",
              "unadvertised object")


def verify_sha(repo: str, sha: str, key: str) -> None:
    """Refuse a sha the app's repository does not have, at stage time rather than at build time.

    The tip of a ref is found with `git ls-remote`; any other commit is fetched alone (depth 1)
    into a throw-away repository, which git servers allow for reachable commits (GitHub does).
    """
    parse_git_remote(repo, key)   # SSH only, as for --repo
    hint = "; pass --no-verify-sha to stage it without checking (offline)"
    try:
        listed = _git("ls-remote", repo, env=_git_env(), timeout=GIT_TIMEOUT_S)
        if listed.returncode != 0:
            raise ConfigError("--sha", f"cannot check it: git ls-remote {redact(repo)} failed: "
                                       f"{_git_why(listed, repo)}{hint}")
        if any(line.split("\t", 1)[0] == sha for line in listed.stdout.splitlines()):
            return
        with tempfile.TemporaryDirectory(prefix="ecom-verify-") as scratch:
            if _git("init", "--quiet", "--bare", scratch).returncode != 0:
                raise ConfigError("--sha", f"cannot check it: git init failed in {scratch}{hint}")
            fetched = _git("-C", scratch, "fetch", "--quiet", "--depth=1", "--no-tags", repo, sha,
                           env=_git_env(), timeout=GIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConfigError("--sha", f"cannot check it: git timed out after {GIT_TIMEOUT_S}s on "
                                   f"{redact(repo)}{hint}") from None
    if fetched.returncode == 0:
        return
    if any(marker in fetched.stderr.lower() for marker in _NOT_THERE):
        raise ConfigError("--sha", f"commit {sha} is not in {redact(repo)}")
    raise ConfigError("--sha", f"cannot check it: git fetch from {redact(repo)} failed: "
                               f"{_git_why(fetched, repo)}{hint}")


# -- the verbs --------------------------------------------------------------------------------
def cmd_stage(args: argparse.Namespace) -> int:
    where = project_dir(args)
    env = check_env(args.env, "--env", where)
    entry = check_app(args.app, env, where)
    actor = resolve_actor(args.actor)
    store = context(args).store   # checks --bucket/--key/--endpoint-url before running git
    if args.sha is not None:
        sha = check_sha(args.sha, "--sha")
        if not args.no_verify_sha:
            repo = entry.get("repo")
            if not isinstance(repo, str) or not repo:
                raise ConfigError("--sha", f"cannot check it: {env}/{args.app} has no repo in its stack file; "
                                           f"pass --no-verify-sha")
            verify_sha(repo, sha, f"{env} stack file: {args.app}.repo")
    else:
        repo = args.repo or entry.get("repo")
        branch = args.branch or entry.get("branch")
        if not isinstance(repo, str) or not repo:
            raise ConfigError("--repo", f"needed: {env}/{args.app} has no repo in its stack file",
                              "git@github.com:emami/ecom-platform.git")
        if not isinstance(branch, str) or not branch:
            raise ConfigError("--branch", f"needed: {env}/{args.app} has no branch in its stack file", "master")
        sha = resolve_branch(repo, branch, "--repo" if args.repo else f"{env} stack file: {args.app}.repo")
    changes = store.update(release.stage_mutation(env, args.app, sha), verb="stage", actor=actor)
    _print_changes(changes)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    where = project_dir(args)
    source = check_env(args.source, "--from", where)
    target = check_env(args.target, "--to", where)
    if source == target:
        raise ConfigError("--to", f"must differ from --from (both {source!r})", "production")
    if args.app:
        check_app(args.app, source, where)
        check_app(args.app, target, where)
        apps = [args.app]
    else:
        apps = [e["name"] for e in stack_apps(target, where)]
    actor = resolve_actor(args.actor)
    store = context(args).store
    changes = store.update(release.promote_mutation(source, target, apps, explicit=bool(args.app)),
                           verb="promote", actor=actor)
    _print_changes(changes)
    for app in sorted(set(apps) - {c.app for c in changes}):
        print(f"{target}/{app}: nothing staged in {source}, left as is")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    where = project_dir(args)
    env = check_env(args.env, "--env", where)
    check_app(args.app, env, where)
    actor = resolve_actor(args.actor)
    wanted = check_sha(args.to, "--to") if args.to is not None else None
    store = context(args).store
    current = store.read().shas.get(env, {}).get(args.app)
    if current is None:
        raise ConfigError("--app", f"{env}/{args.app} has no sha in {store.location}: nothing to roll back")
    rows = list(release.history(store, env, args.app))
    lives = live_store(store).records(env, args.app)
    if wanted is None:
        if not lives:
            raise ConfigError("--to", f"no record of a release of {env}/{args.app} that went live (`ecom-deploy "
                                      f"mark-live` keeps them after each successful up); name the sha with "
                                      f"--to <sha>", EXAMPLE_SHA)
        target = release.rollback_target(lives, rows, current)
        if target is None:
            raise ConfigError("--to", f"no release of {env}/{args.app} went live before {current[:12]}; name "
                                      f"the sha with --to <sha>", EXAMPLE_SHA)
    elif wanted not in release.shas_that_ran(rows) | {r.sha for r in lives} and not args.force:
        raise ConfigError("--to", f"{wanted} never ran in {env}/{args.app}; add --force to use it anyway")
    else:
        target = wanted
    changes = store.update(release.rollback_mutation(env, args.app, current, target),
                           verb="rollback", actor=actor)
    _print_changes(changes)
    if any(c.changed for c in changes):
        print(f"next: pulumi up --stack {env}")
    return 0


def live_store(store: release.ShaStore) -> release.LiveStore:
    """The live record beside the store's sha file, on the same client."""
    return release.LiveStore(store.client, release.live_location(store.location), endpoint_url=store.endpoint_url)


def deployed_shas(path: str, env: str, apps: list[str]) -> dict[str, str]:
    """apps.<app>.sha of a `pulumi stack output --json` file, for the apps asked for that have one."""
    section = outputs_apps(path, env)
    found = {}
    for app in apps:
        sha = section.get(app, {}).get("sha") if isinstance(section.get(app), dict) else None
        if sha is not None:
            found[app] = check_sha(sha, "--outputs")
    return found


def cmd_mark_live(args: argparse.Namespace) -> int:
    where = project_dir(args)
    env = check_env(args.env, "--env", where)
    apps = [check_app(args.app, env, where)["name"]] if args.app else [e["name"] for e in stack_apps(env, where)]
    actor = resolve_actor(args.actor)
    store = context(args).store
    if args.outputs is not None:
        shas = deployed_shas(args.outputs, env, apps)
    else:
        shas = {app: sha for app, sha in store.read().shas.get(env, {}).items() if app in apps}
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for app, previous, sha in live_store(store).mark(env, shas, actor=actor, when=when):
        text = f"{env}/{app}: live {previous or release.NONE} \u2192 {sha}"
        print(text if previous != sha else f"{env}/{app}: {sha} already recorded live")
    for app in sorted(set(apps) - set(shas)):
        print(f"{env}/{app}: no sha deployed, nothing recorded")
    return 0


def outputs_apps(path: str, env: str) -> dict:
    """The apps object of a `pulumi stack output --json` file (mark-live and deploy-event read it)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--outputs", f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError("--outputs", f"{path} is not JSON (line {exc.lineno})") from None
    section = data.get("apps") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise ConfigError("--outputs", f"{path} has no apps object: not the outputs of a {env} up")
    return section


def deploy_events(store: release.ShaStore, live: release.LiveStore, env: str, apps: list[str], result: str,
                  outputs: dict, duration_s: int, now: int, runner: str) -> list[events.DeployEvent]:
    """One event per app whose sha changed in this up. Old: the newest live record. New: what the up
    deployed (its outputs) on success; what it was asked to deploy (the sha file) on failure. Actor and
    kind: the sha file's record that set the new sha (`rollback` verb: a rollback), else `runner`."""
    wanted = store.read().shas.get(env, {}) if result == "failure" else {}
    records = live.read()[0].get(env, {})
    found = []
    for app in apps:
        raw = outputs.get(app)
        entry: dict = raw if isinstance(raw, dict) else {}
        new = entry.get("sha") if result == "success" else wanted.get(app)
        old = records[app][-1].sha if records.get(app) else None
        if not new or new == old:
            continue
        new = check_sha(new, "--outputs")
        actor, kind = runner, "deploy"
        for row in release.history(store, env, app, limit=1):
            if row.sha == new:
                actor, kind = row.actor, ("rollback" if row.verb == "rollback" else "deploy")
        servers = entry.get("servers")
        found.append(events.DeployEvent(app=app, environment=env, hosts=len(servers) if isinstance(servers, list)
                                        else 0, old_sha=old, new_sha=new, actor=actor, duration_s=duration_s,
                                        result=result, kind=kind, time=now))
    return found


def cmd_deploy_event(args: argparse.Namespace) -> int:
    where = project_dir(args)
    env = check_env(args.env, "--env", where)
    apps = [check_app(args.app, env, where)["name"]] if args.app else [e["name"] for e in stack_apps(env, where)]
    datadog, targets = event_settings(stacks.stack_config(env, where))
    api_key = None
    if args.api_key_stdin:
        api_key = sys.stdin.readline().strip() or None
    if datadog.api_key_set and not api_key:
        print("warning: datadog.apiKey is set but no key came on stdin (--api-key-stdin): no Datadog event",
              file=sys.stderr)
    if api_key and not datadog.api_key_set:
        api_key = None    # the stack decides whether Datadog gets events, not the caller
    runner = resolve_actor(args.actor)
    now = int(datetime.now(UTC).timestamp())
    duration = max(0, now - args.started)
    ctx = context(args)
    found = deploy_events(ctx.store, live_store(ctx.store), env, apps, args.result, outputs_apps(args.outputs, env),
                          duration, now, runner)
    for event in found:
        delivered = events.send(event, datadog_url=datadog.api_url, api_key=api_key, webhook_url=targets.webhook_url,
                                timeout=targets.timeout, warn=lambda text: print(f"warning: {text}", file=sys.stderr))
        sent = ", ".join(name for name, ok in delivered.items() if ok) or "nowhere"
        print(f"{event.summary()} (event sent to {sent})")
    if not found:
        print(f"{env}: no app changed sha in this up: no deploy event")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    where = project_dir(args)
    envs = [check_env(args.env, "--env", where)] if args.env else None
    store = context(args).store
    shas = store.read().shas
    known = stacks.known_stacks(where)
    for env in envs or sorted(set(known) | set(shas)):
        declared = [e["name"] for e in stack_apps(env, where)] if env in known else []
        for app in declared + sorted(set(shas.get(env, {})) - set(declared)):
            print(f"{env}/{app}: {shas.get(env, {}).get(app) or release.NONE}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    where = project_dir(args)
    env = check_env(args.env, "--env", where)
    check_app(args.app, env, where)
    if args.limit < 1:
        raise ConfigError("--limit", f"must be at least 1, got {args.limit}", "20")
    store = context(args).store
    skipped: list[str] = []
    rows = list(release.history(store, env, args.app, skipped, limit=args.limit))
    if not rows:
        print(f"{env}/{args.app}: no sha recorded in {store.location}")
    else:
        print(f"{'time (UTC)':<20}  {'sha':<40}  {'who':<20}  {'verb':<9}  previous")
        for row in rows:
            print(row.line())
    if skipped:
        print(f"note: skipped {len(skipped)} version(s) that are not a valid sha file: {', '.join(skipped)}",
              file=sys.stderr)
    return 0


def _print_changes(changes: list[release.Change]) -> None:
    for change in changes:
        print(change.line())
