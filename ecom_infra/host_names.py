"""The names of a stack's hosts, built in one place.

An app server is `<app>-<n>`, n counting from 1 in the order of `apps[].servers`; the HAProxy nodes are
`haproxy-a` (the intended first master) and `haproxy-b`. A host's name is its Pulumi resource name (and the
prefix of its steps' names), its server name in HAProxy's backend, its key in the static addresses and what
`rollHosts` and the stack outputs call it, so it is never split back apart: code that needs the app or the
number keeps the `ServerId`.
"""
from __future__ import annotations

from dataclasses import dataclass

HAPROXY_NODES = ("haproxy-a", "haproxy-b")   # haproxy-a is the intended (initial) master


@dataclass(frozen=True, order=True)
class ServerId:
    """One app server: its app and its number (from 1); ordered by app, then number."""
    app: str
    number: int

    @property
    def name(self) -> str:
        return f"{self.app}-{self.number}"

    @property
    def first(self) -> bool:
        """The app's first server, which stays when the app scales (it runs the app's `once` hooks)."""
        return self.number == 1


def server_ids(app: str, count: int) -> list[ServerId]:
    """The servers of `app`, in order."""
    return [ServerId(app, i + 1) for i in range(count)]
