"""Apply the offline plan's remote commands to real hosts, with pulumi-command 1.x's lifecycle.

The plan (every resource, its inputs and dependencies, made by running the Pulumi program under mocks) says
what the hosts should have run; the state file says what they did run. `diff_plan` compares the two and lists
the steps, and `run_plan` runs them over SSH as the engine does: every step whose dependencies are done at once
(in threads; `pulumi up`'s --parallel is unbounded by default), and after a failure no new step starts while the
running ones finish and are recorded. Deletes left pending by an earlier run go first and the run's final deletes
last, one at a time (the engine runs those in parallel too, in reverse dependency order):

- a resource new to the plan is created (its `create` runs);
- a changed `triggers` replaces it: the new `create` runs, and the old resource's `delete` runs with the *old*
  stored inputs and connection, at the end of the run (Pulumi's "deleting original"); with
  `delete_before_replace` the old delete runs first instead;
- any other changed input updates it: `update` runs if set, else `create`;
- a resource gone from the plan is deleted with its stored `delete` and connection, in reverse dependency order;
- unchanged resources run nothing.

`addPreviousOutputInEnv` (default true) hands the previous create/update's stdout and stderr to `update` and
`delete` as PULUMI_COMMAND_STDOUT / PULUMI_COMMAND_STDERR, as the provider does.

Each step is recorded in the state file as soon as it succeeds (temp file + rename, mode 600: it holds stored
inputs, secrets included). A failing step stops the run (no new step starts); the next run retries it and what
depends on it. An old resource whose replacement succeeded but whose delete did not happen yet is kept as a
*pending delete* and deleted first by the next run, as Pulumi does.

Modules: `resources` (the plan's remote resources, validated, in run order), `diff` (plan vs state: the
steps), `state` (the state file and its lock), `steps` (one step on a host), `report` and `redact` (what a run
says), `run` (`run_plan`), `__main__` (the command line).
"""

from __future__ import annotations

from .diff import Action, diff_plan, empty_state
from .redact import REDACTED, redact
from .report import RunReport, StepFailed, StepReport
from .resources import COMMAND, COPY_TO_REMOTE, REMOTE_TYPES, RemoteResource, remote_resources
from .run import run_plan
from .state import STATE_VERSION, load_state, save_state

__all__ = ["COMMAND", "COPY_TO_REMOTE", "REDACTED", "REMOTE_TYPES", "STATE_VERSION", "Action", "RemoteResource",
           "RunReport", "StepFailed", "StepReport", "diff_plan", "empty_state", "load_state", "redact",
           "remote_resources", "run_plan", "save_state"]
