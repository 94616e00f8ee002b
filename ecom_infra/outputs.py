"""The stack outputs: one documented schema (docs/outputs.md, docs/outputs.schema.json)."""
from __future__ import annotations

from typing import Any

import pulumi

SCHEMA_VERSION = 1


def export_outputs(platform) -> None:
    """Export every top-level output of the schema from a built `Platform`."""
    s = platform.settings
    pulumi.export("schemaVersion", SCHEMA_VERSION)
    pulumi.export("environment", s.environment)
    haproxy = platform.haproxy.summary()
    pulumi.export("endpoint", haproxy.apply(lambda h: {"eip": h["eip"], "allocationId": h["allocationId"],
                                                        "url": f"http://{h['eip']}/"}))
    pulumi.export("haproxy", haproxy.apply(lambda h: {"nodes": h["nodes"], "master": h["master"]}))
    apps: dict[str, pulumi.Output[dict[str, Any]]] = {}
    for app in s.apps:
        servers = pulumi.Output.all(*[srv.host.summary() for srv in platform.app_servers[app.name]])
        def app_output(srv: list[Any], app: Any = app) -> dict[str, Any]:
            return {
                "sha": platform.shas.get(app.name),
                "branch": app.branch,
                "hostnames": list(app.hostnames),
                "healthCheckPath": app.health_check_path,
                "servers": list(srv),
            }
        apps[app.name] = servers.apply(app_output)
    pulumi.export("apps", apps)
    pulumi.export("shaBucket", {"name": s.sha_bucket.name, "key": s.sha_bucket.key, "owned": s.sha_bucket.owner})
