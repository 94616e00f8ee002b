"""`make up` / `make down`: the local stack deployed on the local fleet.

    python -m fleet.local up      # start (or grow) the fleet, deploy the local stack, print the endpoint
    python -m fleet.local down    # stop the fleet and forget everything it deployed
    python -m fleet.local plan    # print the path of the revealed plan the last `up` executed

What `up` does, each stage printed as it goes:
 1. keys: the fleet's own admin, deploy and git-host keys (ed25519, kept mode 600 in the
    state dir, hidden from the hosts); they replace the local stack's example keys;
 2. the offline plan of the local stack says which hosts exist (names, addresses, pinned
    host keys, user data; a running fleet reuses the last answer while nothing the plan reads
    changed); the fleet boots one system-container host per EC2 instance (through
    cloud-init, from the instance's user data) plus the git host, or adds the hosts a grown
    stack declares to a running fleet;
 3. the bare repositories of the real Rails apps are built here (fleet/origin) when they changed; the
    logins to every host (at once) start, and run while 4 and 5 work the CPU;
 4. moto gets the sha bucket and, if it has none yet, a sha file staged with
    `ecom-deploy stage` at each app's first version;
 5. the plan runs again against moto (instances, Elastic IP and its association become
    real moto state), or a plan an earlier up kept is reused when nothing it read changed
    (fleet/plan_cache.py), in the planner the last up left loaded when it may (fleet/planner.py),
    else here; once every host is logged in, the git host gets the repositories
    unless it already has these, and the executor runs the plan's remote commands over
    those logins (one SSH connection per host per up);
 6. the EIP emulation follows the plan's allocation, and the last line is the endpoint; a planner is
    left for the next up.

Why over ~400 lines: it is the `make up` sequence end to end, one function per stage above, read top
to bottom as one file (as Capistrano's deploy.rake is).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ecom_infra.defaults import SHA_BUCKET_KEY, SHA_BUCKET_NAME
from ecom_infra.errors import ConfigError
from ecom_infra.stacks import PROJECT_DIR, stack_config

from . import eip as fleet_eip
from . import hosts as fleet_hosts
from . import moto, plan_cache, planner
from . import network as fleet_network
from . import spec as fleet_spec
from .executor.report import StepFailed
from .executor.run import run_plan
from .executor.state import completed, load_state
from .network import FleetError
from .origin import HISTORIES, ensure_origin
from .ssh.connection import Connection
from .ssh.errors import SshError
from .ssh.runner import SshRunner

if TYPE_CHECKING:
    from ecom_infra import plan as offline_plan  # imported where a plan runs: the SDK takes ~0.3 s to load

STACK = "local"
FLEET_NAME = "ecomfleet"
ENV = {"AWS_ACCESS_KEY_ID": "fleet", "AWS_SECRET_ACCESS_KEY": "fleet", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_EC2_METADATA_DISABLED": "true"}


def say(stage: str, message: str) -> None:
    print(f"[up] {stage}: {message}", flush=True)


@dataclass(frozen=True)
class LocalFleet:
    """The local stack's `fleet:*` config: where the fleet lives on this machine."""

    name: str
    bridge: dict
    eip_address: str
    git_name: str
    git_address: str
    moto_port: int
    stack: str = STACK
    overrides: dict = field(default_factory=dict)    # `--set key=value`: config for this run only

    @classmethod
    def from_stack(cls, stack: str = STACK, project_dir: Path = PROJECT_DIR,
                   overrides: dict[str, str] | None = None) -> LocalFleet:
        config = stack_config(stack, project_dir)
        try:
            git = config["fleet:gitHost"]
            return cls(name=config.get("fleet:name", FLEET_NAME), bridge=config["fleet:bridge"],
                       eip_address=config["fleet:eipAddress"], git_name=git["name"], git_address=git["address"],
                       moto_port=int(config.get("fleet:motoPort", 5000)), stack=stack,
                       overrides=dict(overrides or {}))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"Pulumi.{stack}.yaml", f"fleet settings are incomplete ({exc})",
                              "fleet:gitHost: {name: git, address: 10.213.0.5}") from None

    @property
    def state(self) -> Path:
        """What the local deploy keeps (keys, plan, executor state): hidden from the hosts."""
        return fleet_spec.STATE_ROOT / f"{self.name}.local"

    @property
    def endpoint(self) -> str:
        return f"http://{self.bridge['gateway']}:{self.moto_port}"


# ----------------------------------------------------------------------------- keys


def _keypair(path: Path) -> tuple[str, str]:
    """(private OpenSSH text, public line) of the ed25519 key at `path`, made on first use (mode 600)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - only here; keeps start-up short
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415

    if not path.exists():
        new_key = Ed25519PrivateKey.generate()
        text = new_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption()).decode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
    private = path.read_text()
    key = serialization.load_ssh_private_key(private.encode(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public


@dataclass(frozen=True)
class Keys:
    admin: tuple[str, str]
    deploy: tuple[str, str]
    git_host: tuple[str, str]

    @classmethod
    def load(cls, fleet: LocalFleet) -> Keys:
        keys = fleet.state / "keys"
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(admin=_keypair(keys / "admin"), deploy=_keypair(keys / "deploy"),
                   git_host=_keypair(keys / "git-host"))


def plan_inputs(fleet: LocalFleet, keys: Keys) -> tuple[dict[str, str], dict[str, str]]:
    """(config overrides, secrets) that put the fleet's own keys into the local stack."""
    config = stack_config(fleet.stack)
    ssh = dict(config["ecom-infra:ssh"], publicKey=f"{keys.admin[1]} fleet-admin")
    overrides = {**fleet.overrides, "ecom-infra:ssh": json.dumps(ssh),
                 "ecom-infra:gitKnownHosts": json.dumps([f"{fleet.git_address} {keys.git_host[1]}"])}
    secrets = {"ecom-infra:deployKey": keys.deploy[0], "ecom-infra:sshPrivateKey": keys.admin[0]}
    return overrides, secrets


# ----------------------------------------------------------------------------- fleet


def shape_hosts(fleet: LocalFleet, result: offline_plan.PlanResult, keys: Keys) -> dict[str, dict]:
    """The fleet's hosts by name: the git host and one host per EC2 instance of the plan."""
    from ecom_infra import plan as offline_plan  # noqa: PLC0415

    private_keys = {r.name[:-len("-host-key")]: offline_plan.plan_mocks.unwrap(r.state)["privateKeyOpenssh"]
                    for r in result.resources if r.type == "tls:index/privateKey:PrivateKey"}
    # Each instance boots through cloud-init from the plan's user data (which installs the host key above).
    user_data = {r.name: offline_plan.plan_mocks.unwrap(r.inputs)["userData"]
                 for r in result.resources if r.type == "aws:ec2/instance:Instance"}
    authorized = [f"{keys.admin[1]} fleet-admin"]
    wanted = {fleet.git_name: {"name": fleet.git_name, "address": fleet.git_address, "host_key": keys.git_host[0],
                               "authorized_keys": authorized}}
    for name, host in result.hosts().items():
        wanted[name] = {"name": name, "address": host["privateIp"], "host_key": private_keys[name],
                        "authorized_keys": authorized, "user_data": user_data[name],
                        "instance_id": host["instanceId"]}
    return wanted


# The program's own files: with the stack's config and the run's keys, all that the offline plan reads.
PROGRAM_FILES = ("__main__.py", "Pulumi.yaml", "components", "ecom_infra", "renderers", "templates")


def shape_inputs(fleet: LocalFleet, overrides: dict[str, str], secrets: dict[str, str]) -> str:
    """Digest of every input of the offline plan that gives the fleet's shape (same digest: same hosts)."""
    return plan_cache.inputs_digest(PROJECT_DIR, fleet.stack, [fleet.stack, overrides, secrets], PROGRAM_FILES)


def fleet_shape(fleet: LocalFleet, keys: Keys, running: fleet_spec.FleetSpec | None) -> dict[str, dict]:
    """`shape_hosts` of the offline plan. A running fleet whose inputs did not change since the last `up`
    reuses that run's answer (kept mode 600: it holds host keys) instead of running the plan once more."""
    overrides, secrets = plan_inputs(fleet, keys)
    inputs = shape_inputs(fleet, overrides, secrets)
    path = fleet.state / "shape.json"
    if running is not None and path.exists():
        saved = json.loads(path.read_text())
        if saved.get("inputs") == inputs:
            say("plan", f"the {fleet.stack} stack's program and config are unchanged: same hosts as the last up")
            return saved["hosts"]
    say("plan", f"offline plan of the {fleet.stack} stack: which hosts exist")
    from ecom_infra import plan as offline_plan  # noqa: PLC0415

    wanted = shape_hosts(fleet, offline_plan.run(fleet.stack, secrets=secrets, config_overrides=overrides), keys)
    plan_cache.write_private(path, json.dumps({"inputs": inputs, "hosts": wanted}))
    return wanted


def check_shape(fleet: LocalFleet, spec: fleet_spec.FleetSpec, plan: dict) -> None:
    """The plan that deploys must declare the hosts the fleet runs (name, address, host key): were a reused
    shape ever stale, nothing runs, and the next `up` plans the shape afresh."""
    running = {h.name: h for h in spec.hosts}
    for name, host in sorted(plan["hosts"].items()):
        have = running.get(name)
        if have is None or str(have.address) != host["privateIp"] or \
                have.host_public_key.split()[:2] != host["hostKey"].split()[:2]:
            (fleet.state / "shape.json").unlink(missing_ok=True)
            raise FleetError(f"{name}: the deploying plan's host is not the one the fleet runs (address or host "
                             "key); nothing was run: run `make up` again")


def fleet_spec_from(fleet: LocalFleet, wanted: dict[str, dict], running: fleet_spec.FleetSpec | None) -> dict:
    """The fleet spec: the hosts of `shape_hosts`.

    Hosts of a running fleet keep their place (their veth is numbered by it); new ones are appended.
    """
    order = [h.name for h in running.hosts] if running else []
    order += sorted(n for n in wanted if n not in order)
    return {"name": fleet.name, "bridge": fleet.bridge, "eip": {"address": fleet.eip_address, "allocation_id": None},
            "moto": {"port": fleet.moto_port}, "hosts": [wanted[n] for n in order if n in wanted]}


def start_or_grow(raw: dict, running: fleet_spec.FleetSpec | None, work: Path) -> fleet_spec.FleetSpec:
    spec = fleet_spec.parse(raw)
    if running is None:
        path = work / "fleet-spec.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(raw, out)
        subprocess.run([sys.executable, "-m", "fleet", "up", "--spec", str(path)], check=True, cwd=PROJECT_DIR)
        return spec
    from .__main__ import fleet_lock, recover, wait_for_sshd  # noqa: PLC0415 - the fleet CLI's own helpers

    known = {h.name for h in running.hosts}
    removed = known - {h.name for h in spec.hosts}
    if removed:
        raise ConfigError("Pulumi.local.yaml", f"hosts {sorted(removed)} left the stack; shrinking a running "
                                               "fleet is not supported: run `make down` first")
    # A host of the running fleet that died is started again first, as AWS would treat its instance.
    recovered = recover(running)
    new = [(i, h) for i, h in enumerate(spec.hosts) if h.name not in known]
    if not new:
        still = len(spec.hosts) - len(recovered)
        say("fleet", f"{still} hosts already up" + (f", {len(recovered)} started again" if recovered else ""))
        return spec
    with fleet_lock():
        fleet_spec.save(spec)
        boots = {}
        for index, host in new:
            say("fleet", f"adding host {host.name} ({host.address})")
            fleet_hosts.prepare_root(spec, host)
            fleet_network.create_host_link(spec, index, host)
            boots[host.name] = (fleet_hosts.boot(spec, host), time.monotonic())
        grown = fleet_spec.FleetSpec(**{**spec.__dict__, "hosts": tuple(h for _, h in new)})
        wait_for_sshd(grown, boots)
    return spec


def login_connection(spec: fleet_spec.FleetSpec, keys: Keys, name: str) -> Connection:
    """How `up` logs in to a fleet host: as the plan's remote commands do (the stack's admin user with the fleet's
    admin key, the host's pinned key), so the executor's steps reuse these logins."""
    host = spec.host(name)
    return Connection.from_inputs({"host": str(host.address), "user": "admin", "privateKey": keys.admin[0],
                                   "hostKey": host.host_public_key}, name)


def log_in(ssh: SshRunner, spec: fleet_spec.FleetSpec, keys: Keys, host_names: list[str]) -> dict[str, Connection]:
    """Log in to every named host before anything runs on any (nothing half-done); one line names the first
    that refuses. The fleet's status check: a host that answers but refuses the run's key fails here, even on a
    run with nothing to change (stricter than a real `pulumi up`, which would not dial it then). The logins run
    at once and stay open: later commands of this run reuse them."""
    conns = {name: login_connection(spec, keys, name) for name in host_names}
    for name, err in zip(host_names, ssh.connect([conns[name] for name in host_names]), strict=True):
        if err is not None:
            raise FleetError(f"{name} ({spec.host(name).address}): cannot log in over SSH, nothing was run: "
                             f"{_one_line(str(err))}") from None
    return conns


def run_as_root(ssh: SshRunner, conns: dict[str, Connection], script: str, stdin: bytes | None = None) -> None:
    """Run one root script on each fleet host of `conns` (logged in by `log_in`) over SSH."""
    from components.remote_steps import as_root  # noqa: PLC0415

    for name, conn in conns.items():
        try:
            result = ssh.run(conn, as_root(script), stdin=stdin)
        except SshError as err:
            raise FleetError(f"{name}: lost the SSH connection during a setup script: "
                             f"{_one_line(str(err))}") from None
        if result.exit_code != 0:
            tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise FleetError(f"{name}: setup script failed (exit {result.exit_code}): {tail}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------- git origin and sha file


ORIGIN_TEMPLATE = "fleet/git-origin.sh.j2"
ORIGIN_DIGEST = "/srv/git/.origin-digest"     # written by that script once the repositories are in place


@dataclass(frozen=True)
class Origin:
    """The apps' bare repositories built here, and what the git host must have received to serve them."""

    shas: dict[str, dict]          # {app: {tag: sha}}
    digest: str
    deploy_key: str
    repos: list[str]


def build_origin(fleet: LocalFleet, keys: Keys, work: Path) -> Origin:
    """Build each app's bare repository here (only when its inputs changed: fleet/origin)."""
    origin = work / "origin"
    shas = {}
    for app in sorted(HISTORIES):
        if not (origin / f"{app}.git" / "HEAD").exists():
            say("origin", f"building {app} (real Rails app from Debian's packages)")
        shas[app], _ = ensure_origin(origin / f"{app}.git", app)
    repos = sorted(f"{app}.git" for app in HISTORIES)
    deploy_key = f"{keys.deploy[1]} deploy"
    template = PROJECT_DIR / "templates" / ORIGIN_TEMPLATE
    digest = hashlib.sha256(json.dumps([shas, deploy_key, repos, template.read_text()], sort_keys=True)
                            .encode()).hexdigest()
    return Origin(shas, digest, deploy_key, repos)


def served_origin(fleet: LocalFleet, ssh: SshRunner, conn: Connection) -> str:
    """The digest of the repositories the git host last received ("" if none)."""
    try:
        return ssh.run(conn, f"cat {ORIGIN_DIGEST} 2>/dev/null || true").stdout.strip()
    except SshError as err:
        raise FleetError(f"{fleet.git_name}: lost the SSH connection: {_one_line(str(err))}") from None


def publish_origin(fleet: LocalFleet, spec: fleet_spec.FleetSpec, work: Path, origin: Origin, served: str,
                   ssh: SshRunner, conn: Connection) -> None:
    """Install the repositories on the git host, unless it says it has these already (`served`)."""
    where = f"{fleet.git_name} ({spec.host(fleet.git_name).address})"
    if served == origin.digest:
        say("origin", f"{', '.join(sorted(HISTORIES))} unchanged on {where}")
        return
    from renderers import render  # noqa: PLC0415 - jinja only when the origin changes

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for app in sorted(HISTORIES):
            tar.add(work / "origin" / f"{app}.git", arcname=f"{app}.git")
    script = render(ORIGIN_TEMPLATE, deploy_public_key=origin.deploy_key, repos=origin.repos, digest=origin.digest,
                    digest_path=ORIGIN_DIGEST)
    run_as_root(ssh, {fleet.git_name: conn}, script, stdin=buffer.getvalue())
    say("origin", f"{', '.join(sorted(HISTORIES))} served by {where}")


def sha_file_location(fleet: LocalFleet) -> tuple[str, str]:
    """(bucket, key) of the local stack's sha file."""
    config = stack_config(fleet.stack)
    return (config.get("ecom-infra:shaBucket", {}).get("name", SHA_BUCKET_NAME),
            config.get("ecom-infra:shaBucket", {}).get("key", SHA_BUCKET_KEY))


def ecom_deploy(fleet: LocalFleet, *args: str) -> tuple[int, str, str]:
    """`ecom-deploy <verb>` on the local stack's sha file in moto, as CI runs it, in this process (the verbs are
    plain functions; a second Python would only add its start-up): (exit code, stdout, stderr)."""
    from ecom_infra import cli  # noqa: PLC0415

    bucket, key = sha_file_location(fleet)
    os.environ.update(ENV)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([*args, "--bucket", bucket, "--key", key, "--endpoint-url", fleet.endpoint,
                             "--actor", "make-up"])
        except SystemExit as exc:          # argparse refusing the arguments
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:  # noqa: BLE001 - as a crashed helper process: its exit code and its last words
            print(f"ecom-deploy: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
            code = 1
    return code, out.getvalue(), err.getvalue()


def release_cli(fleet: LocalFleet, *args: str) -> None:
    """`ecom-deploy <verb>` whose failure fails the up (after its own output, as printed by the verb)."""
    code, out, err = ecom_deploy(fleet, *args)
    sys.stdout.write(out)
    sys.stdout.flush()
    sys.stderr.write(err)
    if code != 0:
        raise FleetError(f"ecom-deploy {args[0]} exited {code}")


def seed_sha_file(fleet: LocalFleet, tags: dict[str, dict]) -> None:
    """The sha bucket in moto, and a first release per app recorded the way CI records it."""
    s3 = moto.client(fleet.endpoint, "s3")
    config = stack_config(fleet.stack)
    bucket, key = sha_file_location(fleet)
    if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
    if any(o["Key"] == key for o in listed):
        say("sha file", f"s3://{bucket}/{key} exists: deploying what it says")
        return
    for app in [a["name"] for a in config["ecom-infra:apps"]]:
        # The shas were just read from the fleet's own origin; the CLI's check would need the deploy key.
        release_cli(fleet, "stage", "--env", fleet.stack, "--app", app, "--sha", tags[app]["v1"], "--no-verify-sha")


def write_outputs(fleet: LocalFleet, outputs: dict) -> Path:
    """The up's stack outputs as `pulumi stack output --json` writes them, for the verbs CI runs after an up."""
    path = fleet.state / "outputs.json"
    path.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n")
    return path


def send_deploy_events(fleet: LocalFleet, result: str, started: int, plan: dict | None = None) -> Path:
    """What CI does after every up, successful or not: one deploy event per app whose sha changed
    (to wherever the stack's settings say; the local stack sets no Datadog key). Never fails the up.
    Returns the outputs file it wrote (of `plan`, else of the plan.json the up wrote)."""
    plan = plan or json.loads((fleet.state / "plan.json").read_text())
    path = write_outputs(fleet, plan["outputs"])
    code, out, err = ecom_deploy(fleet, "deploy-event", "--env", fleet.stack, "--result", result,
                                 "--outputs", str(path), "--started", str(started))
    for line in (out + err).splitlines():
        say("events", line)
    if code != 0:
        say("events", f"warning: deploy-event exited {code}")
    return path


def mark_live(fleet: LocalFleet, outputs: Path) -> None:
    """What CI does after a successful `pulumi up`: record what went live (the up's outputs file, which
    `send_deploy_events` wrote), so rollback proposes only those."""
    release_cli(fleet, "mark-live", "--env", fleet.stack, "--outputs", str(outputs))


# ----------------------------------------------------------------------------- up / down


def deploying_plan(fleet: LocalFleet, keys: Keys, seed: dict[str, dict] | None = None) -> dict:
    """`make_deploying_plan`, by the planner the last up left (fleet/planner.py: loaded ahead) when one waits and
    may, else here. With `seed` (the apps' tags), `seed_sha_file(fleet, seed)` runs first, where the plan runs:
    the planner has botocore and moto's S3 client loaded already, which the up then loads meanwhile."""
    planned = planner.ask(fleet, say, seed)
    if planned is not None:
        return planned
    if seed is not None:
        with verbs_session():
            seed_sha_file(fleet, seed)
    return make_deploying_plan(fleet, keys)


def make_deploying_plan(fleet: LocalFleet, keys: Keys) -> dict:
    """The revealed plan against moto, written to `<state>/plan.json`. A plan kept by an earlier up is reused
    when its inputs are this run's (fleet/plan_cache.py says what they are) and the last deploy completed;
    otherwise the program runs, and its plan is kept when the run wrote nothing to moto."""
    from .moto_reads import MOTO_SERVICES, MotoReads, RecordingClient, replay  # noqa: PLC0415

    overrides, secrets = plan_inputs(fleet, keys)
    config = stack_config(fleet.stack)
    mock_settings = {"stack": fleet.stack, "region": config.get("aws:region", "us-east-1"),
                     "endpoint": fleet.endpoint, "eip_address": fleet.eip_address,
                     "subnet_cidrs": {s["id"]: s["cidr"] for s in config["ecom-infra:network"]["subnets"]}}
    cache = fleet.state / "plans"
    static = plan_cache.static_digest(PROJECT_DIR, fleet.stack, overrides, secrets, mock_settings)

    def replay_digest(queries: list) -> str:
        reads = MotoReads()
        clients = {service: RecordingClient(moto.client(fleet.endpoint, service, mock_settings["region"]),
                                            service, reads) for service in MOTO_SERVICES}
        replay(queries, clients)
        return reads.digest()

    text, why = None, "the last deploy did not complete"
    if completed(load_state(fleet.state / "executor-state.json")):
        text, why = plan_cache.lookup(cache, static, replay_digest)
    if text is not None:
        say("plan", f"reusing a plan an earlier up made: the same program, config and keys, the same answers to its "
                    f"{why}, and the last deploy completed, so the program would declare the same again")
        plan = json.loads(text)
    else:
        say("plan", f"running the {fleet.stack} stack's program against moto ({why})")
        from ecom_infra import plan as offline_plan  # noqa: PLC0415

        from .cloud import MotoMocks  # noqa: PLC0415

        os.environ.update(ENV)
        mocks = MotoMocks(**mock_settings)
        plan = offline_plan.run(fleet.stack, secrets=secrets, config_overrides=overrides,
                                mocks=mocks).to_dict(reveal_secrets=True)
        text = json.dumps(plan, indent=1, sort_keys=True)
        if mocks.reads.keepable:
            plan_cache.store(cache, static, mocks.reads.digest(), mocks.reads.queries(), text)
    for warning in plan["warnings"]:
        say("plan", f"warning: {warning}")
    plan_cache.write_private(fleet.state / "plan.json", text)
    return plan


@dataclass(frozen=True)
class Hosts:
    """What `up` needs of the hosts before the executor runs: every host logged in (`log_in`) on the run's one
    SSH runner, and the git host's origin digest."""

    ssh: SshRunner
    conns: dict[str, Connection]
    served_origin: str


def log_in_all(fleet: LocalFleet, spec: fleet_spec.FleetSpec, keys: Keys, ssh: SshRunner) -> Hosts:
    """`log_in` to every host; the git host is asked for its origin digest as soon as its own login is done (a
    round trip less after the slowest login). A host that refuses is reported by `log_in`, as before."""
    git = login_connection(spec, keys, fleet.git_name)

    def served() -> str | None:
        return served_origin(fleet, ssh, git) if ssh.connect([git]) == [None] else None

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="origin") as pool:
        digest = pool.submit(served)
        conns = log_in(ssh, spec, keys, [host.name for host in spec.hosts])
        answer = digest.result()
    # Its login failed and then worked (a retried dial): ask now, on the login `log_in` checked.
    return Hosts(ssh, conns, served_origin(fleet, ssh, conns[fleet.git_name]) if answer is None else answer)


def deploy(fleet: LocalFleet, keys: Keys, spec: fleet_spec.FleetSpec, origin: Origin,
           hosts: Callable[[], Hosts]) -> dict:
    """Seed the sha file, plan against moto and execute the plan's remote commands; returns the revealed plan.
    `hosts()` waits for the logins, which run meanwhile (they wait on SSH while the plan works the CPU); nothing
    runs on a host until every host is logged in, and a host that refuses fails the up before the plan's own
    errors."""
    try:
        plan = deploying_plan(fleet, keys, seed=origin.shas)
    finally:
        ready = hosts()
    publish_origin(fleet, spec, fleet.state, origin, ready.served_origin, ready.ssh, ready.conns[fleet.git_name])
    check_shape(fleet, spec, plan)
    allocation = plan["outputs"]["endpoint"]["allocationId"]
    if fleet_eip.read_allocation(fleet.name) != allocation:
        fleet_eip.follow(fleet.name, allocation)   # what `python -m fleet eip --allocation-id` does
    say("deploy", f"{sum(r['type'].startswith('command:remote:') for r in plan['resources'])} remote commands "
                  "in the plan; running what changed")
    # The steps reuse the logins above: same hosts, user, key and pinned host keys (one dial per host per up).
    run_plan(plan, fleet.state / "executor-state.json", ssh=ready.ssh)
    return plan


def up(fleet: LocalFleet) -> int:
    started = time.monotonic()
    fleet.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = Keys.load(fleet)
    running = fleet_spec.load_saved(fleet.name)
    spec = start_or_grow(fleet_spec_from(fleet, fleet_shape(fleet, keys, running), running), running, fleet.state)
    try:
        origin = build_origin(fleet, keys, fleet.state)
        with SshRunner() as ssh, ThreadPoolExecutor(max_workers=2, thread_name_prefix="up") as pool:
            logins = pool.submit(log_in_all, fleet, spec, keys, ssh)
            # The release verbs the up runs after the plan (botocore: ~0.2 s to import, ~0.1 s for the S3
            # client's model) load while the planner plans; an up that plans itself needs them at once.
            verbs = pool.submit(load_verbs, fleet)
            return _deploy(fleet, keys, spec, origin, logins.result, verbs.result, started)
    finally:
        planner.start(fleet)    # for the next up (this one's, if any, answered and exited)


def load_verbs(fleet: LocalFleet) -> None:
    """Import what the release verbs use and make moto's S3 client (its session then has the S3 model loaded,
    so the verbs' own client is cheap)."""
    from ecom_infra import cli, release  # noqa: F401, PLC0415

    cli.build_parser()                    # the verbs' modules import as the parser is built
    moto.client(fleet.endpoint, "s3")


@contextlib.contextmanager
def verbs_session() -> Iterator[None]:
    """One botocore session for the release verbs run within: moto's and theirs (release.one_session)."""
    from ecom_infra import release  # noqa: PLC0415 - botocore: only `up` talks to moto

    with release.one_session(moto.session()):
        yield


def _deploy(fleet: LocalFleet, keys: Keys, spec: fleet_spec.FleetSpec, origin: Origin,
            hosts: Callable[[], Hosts], verbs: Callable[[], None], started: float) -> int:
    """`up` from the sha file on: deploy, then what CI does after an up (`verbs()` waits for their loading)."""
    deploy_started = int(time.time())
    try:
        plan = deploy(fleet, keys, spec, origin, hosts)
    except StepFailed:
        verbs()
        with verbs_session():
            send_deploy_events(fleet, "failure", deploy_started)
        raise
    verbs()
    with verbs_session():
        outputs = send_deploy_events(fleet, "success", deploy_started, plan)
        mark_live(fleet, outputs)
    apps = plan["outputs"]["apps"]
    for app, entry in sorted(apps.items()):
        say("done", f"{app} {entry['sha'] or '(no release)'} on {len(entry['servers'])} server(s): "
                    f"curl -H 'Host: {entry['hostnames'][0]}' {plan['outputs']['endpoint']['url']}")
    say("done", f"in {time.monotonic() - started:.0f} s")
    print(f"endpoint: {plan['outputs']['endpoint']['url']}")
    return 0


def down(fleet: LocalFleet) -> int:
    subprocess.run([sys.executable, "-m", "fleet", "down", "--name", fleet.name], check=True, cwd=PROJECT_DIR)
    if fleet.state.exists():
        shutil.rmtree(fleet.state)
        print(f"[down] removed {fleet.state}")
    try:
        fleet_spec.STATE_ROOT.rmdir()      # only when no other fleet is left
    except OSError:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet.local", description=__doc__.splitlines()[0])
    parser.add_argument("verb", choices=["up", "down", "plan"])
    parser.add_argument("--stack", default=STACK)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config for this run only, like `pulumi config set` (JSON for structured values)")
    args = parser.parse_args(argv)
    try:
        overrides = {}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep or not key.startswith("ecom-infra:"):
                raise ConfigError("--set", f"must be ecom-infra:KEY=VALUE, got {item!r}", "ecom-infra:apps=[...]")
            overrides[key] = value
        fleet = LocalFleet.from_stack(args.stack, overrides=overrides)
        if args.verb == "up":
            # An up keeps what it makes (the SDK's modules, the plan: millions of objects) until it exits, so the
            # cyclic collector only walks them again and again (~0.35 s of a plan), and once more at exit unless
            # frozen (~0.5 s). Peak memory measured the same without it.
            gc.disable()
            try:
                return up(fleet)
            finally:
                gc.freeze()
        if args.verb == "down":
            return down(fleet)
        print(fleet.state / "plan.json")
        return 0
    except ConfigError as exc:
        print(f"fleet.local: error: {exc}", file=sys.stderr)
        return 2
    except FleetError as exc:
        # A host that cannot be reached or started: one line naming it, no traceback.
        print(f"fleet.local: error: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        # A helper (`python -m fleet up/down`) failed and printed its own error above.
        print(f"fleet.local: error: python {' '.join(map(str, exc.cmd[1:4]))} exited {exc.returncode}", file=sys.stderr)
        return 1
    except StepFailed as exc:
        # The executor already printed the step's progress; this names the host, the resource and the
        # tail of its stderr. The state file keeps what succeeded: the next `up` retries the rest.
        print(f"fleet.local: deploy failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
