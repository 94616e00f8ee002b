"""The planner: a process that waits, its packages already loaded, to make the next `make up`'s deploying plan.

When no kept plan fits (a new sha, a config change), `make up` runs the Pulumi program under the fleet's mocks; in
a fresh process about half of that is loading the SDK, pulumi-aws and the project's modules and making the boto3
clients. So each up leaves one planner behind, in the fleet's cgroup (`make down` stops it with moto), which loads
all that ahead and then waits for one request: the next up sends its fleet settings, the planner runs
`fleet.local.make_deploying_plan` as the up would (its "[up] plan" lines go back to the up), and exits. Loading
ends with one offline plan of the stack (no moto, throwaway): a process's first plan compiles the templates and
fills the SDK's caches, which the request's plan then finds done. It loads at a low priority and answers only once
loaded: an up that comes sooner (right after the last) plans itself rather than wait. One that waited IDLE_S
exits too.

What keeps its plan the one the up would make: what the planner loaded ahead must be what the up would load now.
The request carries the up's Python and installed packages, which must be the planner's, and every project module
and template the planner loaded must still have the source it had when loaded; else it answers `stale`. The
config, keys and moto are read only during the request. On `stale`, on no planner, and on anything but a plan or
a config error (a crash, a lost connection), the up plans in its own process, as before.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import hashlib
import importlib
import io
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import plan_cache

if TYPE_CHECKING:
    from .local import LocalFleet

SOCKET_NAME = "planner.sock"
LOG_NAME = "planner.log"
IDLE_S = 3600
# How long an up waits for a loaded planner's answer (a plan takes ~0.5 s) before it gives up and plans itself.
ANSWER_TIMEOUT_S = 60
# A planner greets at once when loaded; one that does not within this is still loading (an up right after the
# last), and the up plans itself rather than wait.
READY_TIMEOUT_S = 0.25
LOAD_NICE = 10          # it loads when the CPUs have nothing better to do
# What the program uses of the SDK's packages; pulumi-aws loads each of its modules on first use (the slow part).
PRELOAD = ("pulumi_aws.ec2", "pulumi_aws.iam", "pulumi_aws.s3", "pulumi_command.remote", "pulumi_tls",
           "ecom_infra.plan", "ecom_infra.release", "components.platform", "fleet.cloud", "fleet.local")
PROJECT_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_DIR / "templates"


def identity() -> dict[str, Any]:
    """What the up and its planner must share: the project (checkout), the Python and the packages installed."""
    return {"project": str(PROJECT_DIR), "python": sys.version, "executable": sys.executable,
            "packages": plan_cache.installed()}


def project_sources() -> dict[str, str]:
    """sha256 of the source of every project module loaded in this process (not the venv's, which may sit inside
    the project), by path."""
    venv = Path(sys.prefix).resolve()
    found = {}
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None)
        if not name:
            continue
        path = Path(name).resolve()
        if path.is_relative_to(PROJECT_DIR) and not path.is_relative_to(venv) and path.suffix == ".py":
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def template_sources() -> dict[str, str]:
    """sha256 of every template, by path, taken before the warm-up plan compiles them: jinja's cache trusts a
    file's mtime alone, the planner trusts only the same bytes."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(TEMPLATES_DIR.rglob("*")) if path.is_file()}


def why_stale(ours: dict[str, Any], loaded: dict[str, str], request: dict) -> str | None:
    """Why this planner, which loaded `loaded` with `ours` (identity()), may not plan for `request` (None: it
    may)."""
    if request.get("identity") != ours:
        return "the up runs from another checkout, or another Python or other packages"
    for path, digest in sorted(loaded.items()):
        try:
            now = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            now = None
        if now != digest:
            return f"{path} changed since the planner loaded it"
    return None


# ----------------------------------------------------------------------------- the up's side


def socket_path(fleet: LocalFleet) -> Path:
    return fleet.state / SOCKET_NAME


def ask(fleet: LocalFleet, say: Callable[[str, str], None], seed: dict[str, dict] | None = None) -> dict | None:
    """The deploying plan from the fleet's planner (its lines printed here as they come), or None when there is
    none, it is still loading, it is stale, or it failed: then the up plans itself. With `seed` (the apps' tags),
    the planner runs `seed_sha_file` first, as the up would. A config error is raised as the up would."""
    path = socket_path(fleet)
    if not path.exists():
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.settimeout(READY_TIMEOUT_S)
            conn.connect(str(path))
            answers = conn.makefile("r", encoding="utf-8")
            try:
                pid = int(json.loads(answers.readline())["ready"])   # its greeting: it accepts once loaded
            except TimeoutError:
                say("plan", "the planner the last up left is still loading: planning here")
                return None
            conn.settimeout(ANSWER_TIMEOUT_S)
            conn.sendall(json.dumps({"fleet": dataclasses.asdict(fleet), "identity": identity(),
                                     "seed": seed}).encode() + b"\n")
            try:
                return _answers(fleet, answers, say)
            except TimeoutError:
                # Never two plans at once (both would write to moto and the plan files): it goes first.
                _stop(pid)
                say("plan", f"the planner gave no answer in {ANSWER_TIMEOUT_S} s and was stopped: planning here")
                return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            say("plan", f"the waiting planner did not answer ({type(exc).__name__}): planning here")
            return None


def _answers(fleet: LocalFleet, answers: io.TextIOBase, say: Callable[[str, str], None]) -> dict | None:
    """Read the planner's answers to a request: its lines are printed; the plan, or None (stale, or failed)."""
    from ecom_infra.errors import ConfigError  # noqa: PLC0415

    for raw in answers:
        answer = json.loads(raw)
        if "line" in answer:
            print(answer["line"], flush=True)
        elif "stale" in answer:
            say("plan", f"the waiting planner is stale ({answer['stale']}): planning here")
            return None
        elif "config_error" in answer:
            raise ConfigError(*answer["config_error"])
        elif "plan_sha256" in answer:
            text = (fleet.state / "plan.json").read_text()
            if hashlib.sha256(text.encode()).hexdigest() != answer["plan_sha256"]:
                break
            return json.loads(text)
        else:
            break
    say("plan", "the waiting planner failed: planning here")
    return None


def _stop(pid: int) -> None:
    """SIGKILL the planner that greeted with `pid`, and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def dismiss(fleet: LocalFleet) -> bool:
    """Make a waiting planner exit without planning, once it has loaded (the next up plans itself; benchmarks
    compare the two): whether one was waiting."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(ANSWER_TIMEOUT_S)
        try:
            conn.connect(str(socket_path(fleet)))
            answers = conn.makefile("rb")
            answers.readline()
            conn.sendall(b'{"identity": null}\n')
            return b"stale" in answers.readline()
        except OSError:
            return False


def start(fleet: LocalFleet) -> None:
    """Leave a planner for the next up, unless one is waiting (it answers a connection without a request by
    waiting on). Best effort: an up never fails for it."""
    path = socket_path(fleet)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
            return
        except OSError:
            pass
    from . import hosts  # noqa: PLC0415

    argv = [sys.executable, "-m", "fleet.planner", "--state", str(fleet.state), "--endpoint", fleet.endpoint,
            "--stack", fleet.stack]
    try:
        hosts.spawn(argv, hosts.fleet_cgroup(fleet.name) / "planner", fleet.state / LOG_NAME, cwd=PROJECT_DIR)
    except OSError as exc:
        print(f"[up] planner: not started ({exc}); the next up plans itself", flush=True)


# ----------------------------------------------------------------------------- the planner's side


class _Lines(io.TextIOBase):
    """stdout for the plan: each complete line goes to the up as {"line": ...}."""

    def __init__(self, send: Callable[[dict], None]) -> None:
        self._send, self._buffer = send, ""

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._send({"line": line})
        return len(text)


def serve_one(listener: socket.socket, state: Path, ours: dict[str, Any], loaded: dict[str, str],
              taken: Callable[[], None]) -> None:
    """Answer the first request on `listener` (connections that send none are probes), then return. `taken()`
    runs as the request comes: from then on no up finds this planner waiting (the up it serves starts the next)."""
    listener.settimeout(IDLE_S)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                conn.sendall(json.dumps({"ready": os.getpid()}).encode() + b"\n")
                raw = conn.makefile("rb").readline()
            except OSError:
                continue                          # an up that found it still loading, and planned itself
            if not raw:
                continue                          # a probe: `start` checking that a planner waits
            taken()
            with contextlib.suppress(OSError):    # loaded at a low priority; a request is served at the up's
                os.setpriority(os.PRIO_PROCESS, 0, 0)
            conn.settimeout(None)
            answer(conn, json.loads(raw), state, ours, loaded)
            return


def answer(conn: socket.socket, request: dict, state: Path, ours: dict[str, Any], loaded: dict[str, str]) -> None:
    from . import local  # noqa: PLC0415

    def send(message: dict) -> None:
        conn.sendall(json.dumps(message).encode() + b"\n")

    stale = why_stale(ours, loaded, request)
    fleet = local.LocalFleet(**request["fleet"]) if stale is None else None
    if fleet is not None and fleet.state != state:
        stale = f"it serves {state}, not {fleet.state}"
    if fleet is None or stale is not None:
        send({"stale": stale})
        return
    send_plan(fleet, send, request.get("seed"))


def send_plan(fleet: LocalFleet, send: Callable[[dict], None], seed: dict[str, dict] | None = None) -> None:
    from ecom_infra.errors import ConfigError  # noqa: PLC0415

    from . import local  # noqa: PLC0415

    try:
        with contextlib.redirect_stdout(_Lines(send)):
            if seed is not None:
                with local.verbs_session():
                    local.seed_sha_file(fleet, seed)
            local.make_deploying_plan(fleet, local.Keys.load(fleet))
    except ConfigError as exc:
        send({"config_error": [exc.key, exc.problem, exc.example]})
        return
    send({"plan_sha256": hashlib.sha256((fleet.state / "plan.json").read_bytes()).hexdigest()})


def preload(endpoint: str, region: str) -> None:
    for name in PRELOAD:
        module = importlib.import_module(name)
        getattr(module, "__all__", None)            # a lazy module loads on its first attribute
    from . import moto  # noqa: PLC0415
    from .moto_reads import MOTO_SERVICES  # noqa: PLC0415

    for service in MOTO_SERVICES:
        moto.client(endpoint, service, region)


def warm_up(stack: str) -> str:
    """One offline plan of `stack` (its own mocks, a made-up sha per app: nothing read from moto or written), whose
    result is dropped: what a process's first plan does once (templates compiled, the SDK's type caches filled,
    its last modules imported) is then done before the request. Best effort: a failure only says so (the request
    meets the same error and reports it as the up would)."""
    from ecom_infra import plan as offline_plan  # noqa: PLC0415
    from ecom_infra import shafile, stacks  # noqa: PLC0415

    started = time.monotonic()
    try:
        apps = [app["name"] for app in stacks.stack_config(stack).get(f"{stacks.PROJECT_NAME}:apps") or []]
        offline_plan.run(stack, sha_file_text=shafile.dump({stack: {app: "0" * 40 for app in apps}}))
    except Exception as exc:  # noqa: BLE001 - the warm-up must never keep the planner from serving
        return f"warm-up plan of {stack} failed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    return f"warm-up plan of {stack} in {time.monotonic() - started:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet.planner", description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True, type=Path, help="the up's state dir (fleet.local): the socket "
                        "is there, and only a request for it is served")
    parser.add_argument("--endpoint", required=True, help="moto's endpoint (the clients are made ahead)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--stack", default="local", help="the stack whose offline plan warms the planner up")
    args = parser.parse_args(argv)
    gc.disable()                                  # as in an up (fleet/local.py says why)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, LOAD_NICE)
    started = time.monotonic()
    ours = identity()                             # before loading: packages installed later make it stale
    path = args.state / SOCKET_NAME
    path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        # Bound before loading, so `start` finds a planner and starts no second one; an up that comes meanwhile
        # gets no greeting within READY_TIMEOUT_S and plans itself.
        old = os.umask(0o177)
        try:
            listener.bind(str(path))
        finally:
            os.umask(old)
        bound = path.stat()

        def unlink() -> None:
            with contextlib.suppress(OSError):    # only our socket: the next planner may have bound the path
                if os.path.samestat(path.stat(), bound):
                    path.unlink()

        listener.listen(4)
        try:
            preload(args.endpoint, args.region)
            templates = template_sources()
            warmed = warm_up(args.stack)
            gc.collect()                          # the warm-up's plan, once: nothing else collects it (GC off)
            from . import spec  # noqa: PLC0415

            spec.STATE_ROOT = args.state.parent   # where fleet.local keeps `<name>.local`: the state served
            loaded = {**project_sources(), **templates}
            print(f"planner: loaded in {time.monotonic() - started:.1f} s ({len(loaded)} project modules and "
                  f"templates; {warmed})", flush=True)
            serve_one(listener, args.state, ours, loaded, unlink)
        except TimeoutError:
            print(f"planner: no request in {IDLE_S} s: exiting", flush=True)
        finally:
            unlink()
    gc.freeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
