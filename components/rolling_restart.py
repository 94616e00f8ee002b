"""The rolling restart: each app's servers switch to their new release in batches.

Every server of an app builds its release first (and runs its afterBuild hooks: db:migrate) and boots it in puma's
idle slot, beside the live one; then the servers publish (switch nginx to that slot) in batches of
`apps[].restartBatch` (default all but one), each batch after the one before:

    builds and boots of all servers -> publish(batch 1) -> publish(batch 2) -> ...

A build or boot that fails stops the deploy before any server switches; a publish that fails stops it before the
next batch. A publish never closes the socket nginx uses, so by default (`apps[].drainRestarts: false`) it is not
drained; it holds for HAProxy's checks only when they can have seen the server DOWN (no puma served there before,
or requests waited longer than the checks' timeout). `drainRestarts: true` drains every publish.

The drain is not a step on the HAProxy nodes (the engine starts no step after a failure, so a `ready` step after a
failed publish would never run): each app server runs an agent HAProxy asks at every check, and the publish holds
the lock that makes it answer "drain" (`renderers.haproxy.agent.drained`). However the publish ends, the lock dies
with it and the server is ready again.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import pulumi

from ecom_infra.settings import App
from renderers.haproxy.agent import agent_step, drained
from renderers.haproxy.spec import HealthCheck

from .app_server import AppServer


def rolling_restart(apps: Sequence[App], servers: Sequence[AppServer], *, after: Sequence[pulumi.Resource],
                    health: HealthCheck) -> None:
    """Declare the agents and the drained publishes of `servers`, app by app, in batches.

    `after`: what must be done before the first publish (the HAProxy nodes' configuration, which asks the
    agents); `health`: HAProxy's checks of app servers (a held publish waits until they can see it UP).
    """
    for app in apps:
        built = [(server, server.built) for server in servers if server.built.server.app == app.name]
        agents = {handle.server: server.run_after_build([agent_step()]) for server, handle in built}
        # Every build of the app before the first restart: a release that cannot build anywhere restarts
        # nowhere, and the old release keeps serving everywhere.
        waits: list[pulumi.Resource] = [*after, *(handle.step for _, handle in built)]
        restarting = [server for server, handle in built if handle.publishes]
        for first in range(0, len(restarting), app.restart_batch):
            batch = restarting[first:first + app.restart_batch]
            published = [server.publish(depends_on=[*agents[server.server], *waits],
                                        wrap=partial(drained, health=health, drain_always=app.drain_restarts))
                         for server in batch]
            waits = [p for p in published if p is not None]
