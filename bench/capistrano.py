"""Benchmark: this project side by side with Debian's Capistrano 3.17 on the same fleet hosts (issue 16).

Both tools deploy the fleet's ecom-platform (the same Rails app, from the same git origin, with the same deploy
user and the same puma workers/threads) to the same two app hosts; Capistrano into its own folder
(/srv/cap/ecom-platform) with its own puma (a systemd unit binding port 9292, restarted in parallel on both hosts
by `sudo systemctl restart`), bundle install, assets:precompile and db:migrate on every deploy, as capistrano-rails
and capistrano-bundler do. Capistrano logs in as the deploy user with a key made for this run, and checks the hosts'
pinned host keys; git on the hosts uses the deploy key the project installed.

Phases, the two tools alternating (which goes first alternates too):
  first deploy      ours: the first `make up`'s ecom-platform release steps (build and publish on both servers,
                    as the executor timed them; the hosts' provisioning and the fleet's start are not counted);
                    Capistrano: `cap fleet deploy` into the empty folder (hosts provisioned beforehand, untimed)
  code-only change  a commit that changes a view (3 rounds: code-change, r1, r2)
  asset change      a commit that changes the asset inputs (2 rounds: the stylesheet in asset-change, the
                    locale config in config-change: the origin has no third)
  rollback          back to the previous release (ours: `ecom-deploy rollback`; Capistrano: deploy:rollback)
  no-op             the sha already deployed, again
Ours is `ecom-deploy stage`/`rollback` plus `make up`, as CI runs them. Capistrano's time is `cap`'s own; it
returns before its pumas have booted, so the seconds until both answer /health again are printed beside.
During each operation a steady client sends GET /health every 50 ms (2 s timeout) to that tool's servers, from 1 s
before until 1 s after the operation (Capistrano: until both pumas answer again): ours through the Elastic IP
(HAProxy), Capistrano's straight to port 9292 on both hosts, alternately (there is no load balancer in front of
Capistrano's pumas). A failed request is an error or an answer other than 200.
Needs root and a machine where `make up` runs; starts the fleet and takes it down again (about 15 minutes).

    .venv/bin/python bench/capistrano.py [--logs DIR]     (DIR keeps every cap and `make up` output)
    FRESH_ROOT_RUN='.venv/bin/python bench/capistrano.py' tests/fresh_root/run.sh HEAD     (isolated)

Why over ~400 lines: one script people run and read as a whole; the Ruby side lives in bench/capistrano/.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ecom_infra import settings as stack_settings
from ecom_infra.stacks import stack_config
from fleet.probe import ClientLoop, Platform, fresh_platform

APP = "ecom-platform"
STAGE = "fleet"                             # Capistrano's stage name (config/deploy/fleet.rb)
CAP_PORT = 9292
CAP_DEPLOY_TO = f"/srv/cap/{APP}"
CAP_UNIT = f"puma-cap-{APP}.service"
TEMPLATES = Path(__file__).resolve().parent / "capistrano"
SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")

# (phase, tag) per round; None for a rollback, "" for a no-op (the tag already deployed). The order keeps every
# deploy a new sha for both tools: a code-only change keeps the live release's asset inputs, an asset change
# does not, and the rollback goes back to a release both still keep.
ROUNDS: tuple[tuple[tuple[str, str | None], ...], ...] = (
    (("code-only change", "code-change"), ("asset change", "asset-change"), ("rollback", None), ("no-op", "")),
    (("asset change", "config-change"), ("code-only change", "r1"), ("rollback", None), ("no-op", "")),
    (("code-only change", "r2"), ("rollback", None), ("no-op", "")),
)
PHASES = ("first deploy", "code-only change", "asset change", "no-op", "rollback")
TARGETS = {"code-only change": 0.5, "rollback": 1.0, "no-op": 0.3}   # ours / Capistrano (issue 16)

RELEASE_STEP = re.compile(rf"^\[executor\] {APP}-\d+ {APP}-\d+-release-(build|publish): \w+ ok \(([0-9.]+) s\)$")
STEP_DONE = re.compile(r"^\[executor\] (\S+) (\S+): (\w+) ok \(([0-9.]+) s\)$")
EXECUTOR_END = re.compile(r"^\[executor\] (done|nothing to do)")


def say(message: str) -> None:
    print(f"[cap-bench] {message}", flush=True)


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


# ----------------------------------------------------------------------------- what both tools deploy


@dataclass(frozen=True)
class Target:
    """The app and deploy settings of the local stack (validated by the project's own settings parser)."""
    app: stack_settings.App
    deploy: stack_settings.Deploy
    ruby: stack_settings.Ruby

    @classmethod
    def load(cls, stack: str = "local") -> Target:
        config = stack_config(stack)
        raw = {key.split(":", 1)[1]: value for key, value in config.items() if key.startswith("ecom-infra:")}
        parsed = stack_settings.parse(raw, project="ecom-infra", stack=stack, region=config.get("aws:region"))
        [app] = [a for a in parsed.apps if a.name == APP]
        if not parsed.ruby.bundle_local:
            raise BenchError(f"Pulumi.{stack}.yaml: ecom-infra:ruby.bundleLocal must be true: Capistrano's "
                             "bundle install here uses Debian's gems (no network)")
        return cls(app, parsed.deploy, parsed.ruby)


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    host_key: str          # "ssh-ed25519 AAAA..." as the plan pins it


def app_hosts(platform: Platform) -> list[Host]:
    plan_hosts = platform.plan()["hosts"]
    hosts = [Host(name, entry["privateIp"], entry["hostKey"]) for name, entry in sorted(plan_hosts.items())
             if entry.get("app") == APP]
    if not hosts or any(not h.address or not h.host_key for h in hosts):
        raise BenchError(f"the plan has no {APP} hosts with an address and a pinned host key")
    return hosts


# ----------------------------------------------------------------------------- Capistrano's files


def setup_script(target: Target, public_key: str) -> str:
    """bench/capistrano/setup-host.sh with its CAP_* values (each shell-quoted) above it."""
    values = {
        "CAP_USER": target.deploy.user, "CAP_DEPLOY_TO": CAP_DEPLOY_TO, "CAP_UNIT": CAP_UNIT,
        "CAP_PORT": str(CAP_PORT), "CAP_PUBLIC_KEY": public_key, "CAP_PUMA_WORKERS": str(target.app.puma_workers),
        "CAP_PUMA_THREADS": str(target.app.puma_threads), "CAP_RAILS_ENV": target.deploy.rails_env,
    }
    prelude = "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items())
    return prelude + (TEMPLATES / "setup-host.sh").read_text()


def write_cap_project(work: Path, target: Target, hosts: list[Host], key_path: Path) -> Path:
    """Capistrano's project folder under `work`: Capfile, config/deploy.rb, config/deploy/fleet.rb (copied from
    bench/capistrano/) and config/bench.json with this fleet's values, plus the hosts' pinned keys."""
    if not SAFE_PATH.match(CAP_DEPLOY_TO):
        raise BenchError(f"CAP_DEPLOY_TO: not a plain absolute path: {CAP_DEPLOY_TO!r}")
    project = work / "cap"
    (project / "config" / "deploy").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TEMPLATES / "Capfile", project / "Capfile")
    shutil.copyfile(TEMPLATES / "deploy.rb", project / "config" / "deploy.rb")
    shutil.copyfile(TEMPLATES / "fleet.rb", project / "config" / "deploy" / f"{STAGE}.rb")
    known_hosts = work / "known_hosts"
    known_hosts.write_text("".join(f"{h.address} {h.host_key}\n" for h in hosts))
    settings = {
        "app": APP,
        "repo_url": target.app.repo.url,
        "deploy_to": CAP_DEPLOY_TO,
        "keep_releases": target.deploy.keep_releases,
        # What the project links, and public/assets as capistrano-rails links it.
        "linked_dirs": [*target.app.linked_dirs, "public/assets"],
        "rails_env": target.deploy.rails_env,
        "puma_unit": CAP_UNIT,
        # The project's git-ssh step keeps the deploy key and the git host's pinned key there.
        "git_ssh_config": f"$HOME/.ssh/{APP}/config",
        "user": target.deploy.user,
        "key": str(key_path),
        "known_hosts": str(known_hosts),
        "hosts": [h.address for h in hosts],
    }
    (project / "config" / "bench.json").write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")
    return project


def make_key(work: Path) -> tuple[Path, str]:
    """A key pair for Capistrano's logins, made for this run (mode 600, removed with `work`)."""
    path = work / "id_cap"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ecom-cap-bench", "-f", str(path)],
                   check=True, capture_output=True)
    return path, path.with_suffix(".pub").read_text().strip()


def ensure_capistrano() -> str:
    """`cap`, installed from Debian's archive when missing."""
    if shutil.which("cap") is None:
        say("installing Debian's capistrano (apt-get install --no-install-recommends capistrano)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        installed = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "capistrano"],
                                   env=env, capture_output=True, text=True, check=False)
        if installed.returncode != 0 or shutil.which("cap") is None:
            tail = (installed.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise BenchError(f"capistrano: apt-get install failed (exit {installed.returncode}): {tail}")
    version = subprocess.run(["cap", "--version"], capture_output=True, text=True, check=True).stdout
    return version.splitlines()[0].strip()


# ----------------------------------------------------------------------------- clients


def get(url: str, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


class DirectClient:
    """ClientLoop's twin for Capistrano's pumas: GET every `interval` s, alternately to each URL, counting
    answers other than 200 and errors as failures."""

    def __init__(self, urls: list[str], interval: float = 0.05, limit_s: float = 900.0):
        self.urls, self.interval, self.limit_s = urls, interval, limit_s
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        sent = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            url = self.urls[sent % len(self.urls)]
            sent += 1
            try:
                status, _ = get(url, timeout=2)
                success = status == 200
                if not success:
                    self.errors.append(f"{url}: HTTP {status}")
            except OSError as exc:
                success = False
                self.errors.append(f"{url}: {exc}")
            self.ok += success
            self.failed += not success
            time.sleep(self.interval)

    def __enter__(self) -> DirectClient:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# ----------------------------------------------------------------------------- the two tools


@dataclass
class Sample:
    tool: str
    phase: str
    seconds: float
    failed: int | None = None
    requests: int | None = None
    served_s: float | None = None           # Capistrano: until both pumas answer /health again


@dataclass
class Capistrano:
    platform: Platform
    project: Path
    hosts: list[Host]
    logs: Path
    deployed: list[str] = field(default_factory=list)    # tags, oldest first, as its releases/ holds them
    runs: int = 0

    name = "capistrano"

    def urls(self, path: str) -> list[str]:
        return [f"http://{h.address}:{CAP_PORT}{path}" for h in self.hosts]

    def cap(self, *args: str, sha: str) -> float:
        self.runs += 1
        log = self.logs / f"cap-{self.runs:02d}-{args[-1].replace(':', '-')}.log"
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.project), "LANG": "C.UTF-8", "USER": "cap-bench",
               "CAP_BENCH_SHA": sha}
        started = time.monotonic()
        with log.open("w") as out:
            done = subprocess.run(["cap", *args], cwd=self.project, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=900, check=False)
        seconds = time.monotonic() - started
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise BenchError(f"cap {' '.join(args)} exited {done.returncode} after {seconds:.1f} s:\n{tail}")
        return seconds

    def wait_served(self, tag: str, limit_s: float = 120.0) -> None:
        """Until every puma answers /health and its home page shows `tag`."""
        deadline = time.monotonic() + limit_s
        pending = list(self.hosts)
        while pending:
            host = pending[0]
            try:
                health, _ = get(f"http://{host.address}:{CAP_PORT}/health", timeout=2)
                status, body = get(f"http://{host.address}:{CAP_PORT}/", timeout=2)
                if health == 200 and status == 200 and f"version {tag}<" in body:
                    pending.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"capistrano: {host.name} port {CAP_PORT} does not serve {tag} after {limit_s:.0f} s")
            time.sleep(0.05)

    def run(self, phase: str, tag: str | None, count: bool = True) -> Sample:
        if tag is None:
            args = (STAGE, "deploy:rollback")
            self.deployed.pop()
        else:
            args = (STAGE, "deploy")
            self.deployed.append(tag or self.deployed[-1])
        expected = self.deployed[-1]
        # git:check reads the sha on a rollback too (it deploys nothing new then).
        sha = self.platform.tag_sha(APP, expected)
        with DirectClient(self.urls("/health")) as client:
            if count:
                time.sleep(1.0)
            started = time.monotonic()
            seconds = self.cap(*args, sha=sha)
            self.wait_served(expected)
            served = time.monotonic() - started
            if count:
                time.sleep(1.0)
        if not count:
            return Sample(self.name, phase, seconds, served_s=served)
        return Sample(self.name, phase, seconds, client.failed, client.ok + client.failed, served)


@dataclass
class Ours:
    platform: Platform
    shop: str
    logs: Path
    deployed: list[str] = field(default_factory=list)
    runs: int = 0

    name = "this project"

    def serves(self, tag: str) -> None:
        status, body = self.platform.get(self.shop, "/")
        if status != 200 or f"version {tag}<" not in body:
            raise BenchError(f"this project: {self.shop} answers HTTP {status}, not version {tag}")

    def run(self, phase: str, tag: str | None) -> Sample:
        if tag is None:
            self.deployed.pop()
        else:
            tag = tag or self.deployed[-1]
            self.deployed.append(tag)
        expected = self.deployed[-1]
        with ClientLoop(self.platform, self.shop) as client:
            time.sleep(1.0)
            started = time.monotonic()
            if tag is None:
                self.platform.deploy_cli("rollback", "--env", self.platform.fleet.stack, "--app", APP,
                                         "--actor", "cap-bench")
            else:
                self.platform.stage(APP, tag)
            out = self.platform.local("up").stdout
            seconds = time.monotonic() - started
            time.sleep(1.0)
        self.runs += 1
        (self.logs / f"up-{self.runs:02d}-{phase.replace(' ', '-')}.log").write_text(out)
        say(f"  this project's up: {executor_summary(out)}")
        self.serves(expected)
        return Sample(self.name, phase, seconds, client.failed, client.ok + client.failed)


def executor_summary(up_output: str) -> str:
    """The executor's last line and the steps that ran, with their seconds, from one `up`'s output."""
    lines = up_output.splitlines()
    end = next((line for line in reversed(lines) if EXECUTOR_END.match(line)), "(no executor summary)")
    steps = [f"{m.group(2)} {m.group(4)}" for m in map(STEP_DONE.match, lines) if m]
    return end.removeprefix("[executor] ") + (f" [{', '.join(steps)}]" if steps else "")


def release_seconds(up_output: str) -> float:
    """Executor seconds of ecom-platform's release-build and release-publish steps in one `up`'s output (the
    executor runs one step at a time, so their sum is the release's wall time)."""
    seconds = [float(m.group(2)) for m in map(RELEASE_STEP.match, up_output.splitlines()) if m]
    if not seconds:
        raise BenchError(f"the first up ran no {APP} release step")
    return sum(seconds)


# ----------------------------------------------------------------------------- the table


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{min(values):.1f} / {statistics.median(values):.1f}"


def table(samples: list[Sample]) -> list[str]:
    rows = ["phase | n | capistrano s (min / median) | this project s (min / median) | ratio (medians) | "
            "failed requests (cap / ours)",
            "---|---|---|---|---|---"]
    notes = []
    for phase in PHASES:
        cap = [s for s in samples if s.phase == phase and s.tool == Capistrano.name]
        ours = [s for s in samples if s.phase == phase and s.tool == Ours.name]
        if not cap or not ours:
            continue
        ratio = statistics.median(s.seconds for s in ours) / statistics.median(s.seconds for s in cap)

        def failed(group: list[Sample]) -> str:
            if any(s.failed is None for s in group):
                return "-"
            return f"{sum(s.failed or 0 for s in group)} of {sum(s.requests or 0 for s in group)}"

        rows.append(f"{phase} | {len(ours)} | {spread([s.seconds for s in cap])} | {spread([s.seconds for s in ours])}"
                    f" | {ratio:.2f}x | {failed(cap)} / {failed(ours)}")
        served = [s.served_s for s in cap if s.served_s is not None]
        notes.append(f"{phase}: capistrano until both pumas answer: {spread(served)} s")
        if phase in TARGETS:
            met = "met" if ratio <= TARGETS[phase] else "missed"
            notes.append(f"{phase}: target <= {TARGETS[phase]}x: {met}")
        if ours[0].failed is not None and phase != "first deploy":
            met = "missed" if any(s.failed for s in ours) else "met"
            notes.append(f"{phase}: 0 failed for this project: {met}")
    return rows + [""] + notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/capistrano.py", description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, help="keep every cap and make-up output in this folder")
    args = parser.parse_args(argv)
    try:
        version = ensure_capistrano()
        target = Target.load()
        say(f"{version}; {APP} with deploy user {target.deploy.user}, Capistrano in {CAP_DEPLOY_TO} (puma port "
            f"{CAP_PORT}), this project in {target.deploy.root}/{APP}")
        samples: list[Sample] = []
        with fresh_platform() as platform, tempfile.TemporaryDirectory(prefix="ecom-cap-bench-") as tmp:
            work = Path(tmp)
            logs = args.logs or work / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            say(f"outputs of every run in {logs}")
            say("this project: first make up (fleet start, provisioning, first release of v1)")
            started = time.monotonic()
            first = platform.local("up").stdout
            (logs / "up-00-first.log").write_text(first)
            say(f"this project: first up {time.monotonic() - started:.1f} s, of which {APP}'s release steps "
                f"{release_seconds(first):.1f} s")
            ours = Ours(platform, target.app.hostnames[0], logs, ["v1"])
            ours.serves("v1")
            samples.append(Sample(Ours.name, "first deploy", release_seconds(first)))

            hosts = app_hosts(platform)
            key_path, public_key = make_key(work)
            for host in hosts:
                say(f"capistrano: setting up {host.name} ({host.address}): folder, puma unit, login, sudo rule")
                platform.on_host(host.name, setup_script(target, public_key))
            cap = Capistrano(platform, write_cap_project(work, target, hosts, key_path), hosts, logs)
            say("capistrano: first deploy of v1 (cap fleet deploy into the empty folder)")
            sample = cap.run("first deploy", "v1", count=False)
            samples.append(sample)
            say(f"capistrano: first deploy {sample.seconds:.1f} s (both pumas answer after {sample.served_s:.1f} s)")

            turn = 0
            for index, phases in enumerate(ROUNDS, start=1):
                for phase, tag in phases:
                    tools = (cap, ours) if turn % 2 == 0 else (ours, cap)
                    turn += 1
                    for tool in tools:
                        say(f"round {index}: {phase} ({tag or 'same sha' if tag is not None else 'previous'}): "
                            f"{tool.name} ...")
                        sample = tool.run(phase, tag)
                        samples.append(sample)
                        extra = f", both pumas answer after {sample.served_s:.1f} s" if sample.served_s else ""
                        say(f"round {index}: {phase}: {tool.name} {sample.seconds:.1f} s{extra}, failed "
                            f"{sample.failed} of {sample.requests}")
        print("\n".join(table(samples)), flush=True)
        return 0
    except BenchError as exc:
        print(f"cap-bench: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
