"""A host step: one remote command, as plain data.

Renderers return `Step`s; components turn each into a `pulumi_command.remote.Command`
on the host's connection, in list order (each step depends on the one before it).
Keeping steps as data lets tests render, lint and run every script without Pulumi.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    name: str
    """Kebab-case, unique on its host (the component prefixes the host name)."""
    create: str
    """Script run on create, and again on update when any non-trigger input changes."""
    delete: str | None = None
    """Script run when the resource is deleted or replaced (after the new one's create)."""
    triggers: tuple[str, ...] = ()
    """Values whose change *replaces* the step (re-run create, then old delete). The
    component adds the instance id, so a new instance re-runs every step."""
    stdin: str | None = None
    """Name of a secret the component feeds on stdin (e.g. "deploy_key"), never in the text."""
    secret_triggers: tuple[str, ...] = ()
    """Names of secrets (as `stdin`) whose keyed hash the component adds to the triggers: a change
    of the secret re-runs the step, and the trigger tells nothing about the value."""
    secret_output: bool = False
    """True when stdout/stderr could carry a secret: the component marks them secret."""
    delete_before_replace: bool = False
