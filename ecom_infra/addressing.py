"""Static private addresses: every host's subnet and IP, decided by the program.

Why static: an app server replaced by a new instance keeps its address, so HAProxy's
backends and keepalived's peers do not change with it; and the plan (offline or on the
local fleet) knows every address without asking AWS.

Layout inside each subnet (offsets from the network address; AWS reserves .0-.3):
  10, 11            the HAProxy nodes (a in the first subnet, b in the second when there is one)
  20 + 50*k + j     server j (counted within the subnet) of the k-th app in `apps`
So adding servers or appending apps never moves an existing host; reordering apps does.
"""
from __future__ import annotations

from .errors import ConfigError
from .host_names import HAPROXY_NODES, server_ids
from .settings import Settings, Subnet

HAPROXY_OFFSET = 10
APP_BASE = 20
APP_BLOCK = 50


def _address(subnet: Subnet, offset: int, key: str) -> str:
    if offset >= subnet.cidr.num_addresses - 1:
        raise ConfigError(key, f"subnet {subnet.id} ({subnet.cidr}) has no room for host offset {offset}; "
                               "use a larger subnet or more subnets", "cidr: 10.0.1.0/24")
    return str(subnet.cidr.network_address + offset)


def host_addresses(settings: Settings) -> dict[str, tuple[Subnet, str]]:
    """{host name: (subnet, private ip)} for the two HAProxy nodes and every app server."""
    subnets = settings.network.subnets
    key = "ecom-infra:network.subnets"
    result = {
        HAPROXY_NODES[0]: (subnets[0], _address(subnets[0], HAPROXY_OFFSET, key)),
        HAPROXY_NODES[1]: (subnets[1 % len(subnets)],
                           _address(subnets[1 % len(subnets)], HAPROXY_OFFSET + (1 if len(subnets) == 1 else 0), key)),
    }
    for k, app in enumerate(settings.apps):
        for i, server in enumerate(server_ids(app.name, app.servers)):
            subnet = subnets[i % len(subnets)]
            slot = i // len(subnets)
            if slot >= APP_BLOCK:
                raise ConfigError(f"ecom-infra:apps[{app.name}].servers",
                                  f"more than {APP_BLOCK} servers in one subnet; add subnets", "2")
            result[server.name] = (subnet, _address(subnet, APP_BASE + APP_BLOCK * k + slot, key))
    return result
