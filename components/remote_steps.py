"""Turn renderer `Step`s into remote commands on one host, run in order.

The one place where a script becomes a `pulumi_command.remote.Command`:
- scripts run as root through `sudo -n` (hosts are reached as an unprivileged admin user,
  as on Debian AMIs); the script text is passed in a quoted here-document, so stdin stays
  free for secrets;
- every step is triggered by the host's instance id plus its own triggers, so a new or
  replaced instance re-runs all of its steps and nothing time-based ever does;
- a step's secret arrives on stdin, never in the command text, and steps that could
  print one get their stdout/stderr marked secret; a step re-run by a secret's change has
  a keyed hash of that secret (HMAC, key: another secret) in its triggers;
- a step that receives a secret must not be able to print it: on failure pulumi-command puts
  the command text and its whole output in the error, whatever `logging` says, so such a
  script may not turn on xtrace (which would print the variable holding it) nor copy stdin
  to its output (`check_secret_script`, refused when the program is run).

Steps whose text depends on other resources' outputs (a peer's address, an instance id)
are rendered inside an Output: pass the static `shape` (rendered with placeholder values:
same names, same stdin, same count) and the real list as `rendered`.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, cast

import pulumi
import pulumi_command as command

from ecom_infra.rules import SCRIPT_COMMENT, SCRIPT_STDIN_TO_OUTPUT, SCRIPT_XTRACE
from renderers.steps import Step

HEREDOC_END = "ECOM_STEP_EOF"


def check_secret_script(name: str, script: str) -> None:
    """Refuse a script that receives a secret and could print it (xtrace, stdin copied to stdout)."""
    for number, line in enumerate(script.splitlines(), 1):
        code = SCRIPT_COMMENT.sub("", line)
        if SCRIPT_XTRACE.search(code):
            raise ValueError(f"step {name}: line {number} turns on xtrace, which would print the secret it reads "
                             f"from stdin into a failed step's error: {line.strip()}")
        if SCRIPT_STDIN_TO_OUTPUT.search(code.strip()):
            raise ValueError(f"step {name}: line {number} copies stdin to the output: {line.strip()}")


def as_root(script: str) -> str:
    """Wrap a rendered script so it runs under `sudo -n bash` with stdin left free."""
    if HEREDOC_END in script:
        raise ValueError(f"script contains the here-document terminator {HEREDOC_END}")
    return f"sudo -n /bin/bash -c \"$(cat <<'{HEREDOC_END}'\n{script.rstrip()}\n{HEREDOC_END}\n)\"\n"


TRIGGER_KEY = "trigger_key"
"""The secret that keys the hashes of secrets in triggers (the component supplies it)."""


def secret_hash(secrets: Mapping[str, pulumi.Input[str]] | None, step: Step, name: str) -> pulumi.Output[str]:
    """A trigger that changes with secret `name` and tells nothing about it: an HMAC keyed by
    another secret (a plain hash of a short secret could be guessed offline from the state). It
    is not secret itself, so the step's other triggers (instance id, sha) stay readable in
    previews; a change of the key re-runs the step once."""
    if not secrets or secrets.get(name) is None or secrets.get(TRIGGER_KEY) is None:
        raise KeyError(f"step {step.name} wants a trigger on secret {name!r}; none given (or no {TRIGGER_KEY})")
    digest = pulumi.Output.all(secrets[TRIGGER_KEY], secrets[name]).apply(
        lambda v: hmac.new(v[0].encode(), v[1].encode(), hashlib.sha256).hexdigest()[:32])
    return pulumi.Output.unsecret(digest).apply(lambda d: f"{name}:{d}")


def _nth(rendered: list[Step], index: int, expected: Step) -> Step:
    step = rendered[index]
    if (step.name, step.stdin, step.delete is None) != (expected.name, expected.stdin, expected.delete is None):
        raise ValueError(f"rendered step {index} is {step.name!r}, its shape said {expected.name!r}")
    _check_secret_step(step)
    return step


def _check_secret_step(step: Step) -> None:
    if step.stdin is not None or step.secret_output:
        for script in (step.create, step.delete):
            if script:
                check_secret_script(step.name, script)


def run_steps(prefix: str, steps: Sequence[Step], connection: Mapping, instance_id: pulumi.Input[str],
              parent: pulumi.Resource, secrets: Mapping[str, pulumi.Input[str]] | None = None,
              depends_on: Sequence[pulumi.Resource] = (),
              rendered: pulumi.Output[list[Step]] | None = None,
              step_depends_on: Mapping[str, Sequence[pulumi.Resource]] | None = None,
              ) -> list[command.remote.Command]:
    """One remote.Command per step, named `<prefix>-<step.name>`, each after the one before.

    `step_depends_on` adds resources a named step must also wait for (e.g. the IAM policy a
    step's script relies on).
    """
    created: list[command.remote.Command] = []
    after: list[pulumi.Resource] = list(depends_on)
    for index, step in enumerate(steps):
        _check_secret_step(step)
        create: pulumi.Input[str]
        delete: pulumi.Input[str] | None
        triggers: Any
        if rendered is None:
            create = as_root(step.create)
            delete = as_root(step.delete) if step.delete else None
            triggers = [instance_id, *step.triggers]
        else:
            this: pulumi.Output[Step] = rendered.apply(functools.partial(_nth, index=index, expected=step))
            create = this.apply(lambda s: as_root(s.create))
            delete = this.apply(lambda s: as_root(s.delete or "")) if step.delete else None
            triggers = pulumi.Output.all(instance_id, this).apply(lambda v: [v[0], *v[1].triggers])
        hashes = [secret_hash(secrets, step, name) for name in step.secret_triggers]
        if hashes and isinstance(triggers, list):
            triggers = [*triggers, *hashes]
        elif hashes:
            triggers = pulumi.Output.all(triggers, *hashes).apply(lambda v: [*v[0], *v[1:]])
        stdin = None
        if step.stdin is not None:
            if not secrets or secrets.get(step.stdin) is None:
                raise KeyError(f"step {step.name} wants secret {step.stdin!r} on stdin; none given")
            stdin = pulumi.Output.secret(secrets[step.stdin])
        secret_io = step.secret_output or stdin is not None
        cmd = command.remote.Command(
            f"{prefix}-{step.name}",
            connection=cast("command.remote.ConnectionArgsDict", connection),
            create=create,
            delete=delete,
            triggers=triggers,
            stdin=stdin,
            # Output that could carry a secret stays out of the engine's logs as well.
            logging=command.remote.Logging.NONE if secret_io else None,
            opts=pulumi.ResourceOptions(
                parent=parent, depends_on=[*after, *(step_depends_on or {}).get(step.name, ())],
                delete_before_replace=step.delete_before_replace,
                additional_secret_outputs=["stdout", "stderr"] if secret_io else None,
            ),
        )
        created.append(cmd)
        after = [cmd]
    return created
