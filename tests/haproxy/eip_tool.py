"""Talks to the moto server from inside the failover test's namespace (the test process itself
cannot reach the namespace's addresses).

    eip_tool.py setup ENDPOINT           -> one JSON line: the MotoWorld (EIP on instance B)
    eip_tool.py watch ENDPOINT ALLOC_ID  -> "<monotonic seconds> <instance id|None>" on start
                                            and on every change of the EIP's holder

CLOCK_MONOTONIC is shared by all processes of the machine, so the test can compare these
times with its own time.monotonic().
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time

from tests.haproxy.helpers import ec2_client, eip_holder, make_moto_world

POLL_S = 0.1


def setup(endpoint: str) -> None:
    world = make_moto_world(endpoint)
    # Start with the EIP on B, so A's notify_master has to move it when A becomes master.
    ec2_client(endpoint).associate_address(AllocationId=world.allocation_id,
                                           InstanceId=world.instance_b, AllowReassociation=True)
    print(json.dumps(dataclasses.asdict(world)), flush=True)


def watch(endpoint: str, allocation_id: str) -> None:
    last = object()
    while True:
        holder = eip_holder(endpoint, allocation_id)
        if holder != last:
            print(f"{time.monotonic():.3f} {holder}", flush=True)
            last = holder
        time.sleep(POLL_S)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"setup": setup, "watch": watch}[command](*args)
