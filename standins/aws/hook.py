"""The instance lifecycle hook: how the local fleet learns that an EC2 instance was created or deleted.

If `ECOM_STANDIN_INSTANCE_HOOK` names an executable, the AWS stand-in runs it after creating an
instance in moto (event "create": the fleet boots a host with that address and user data) and before
terminating one (event "delete": the fleet stops the host). A replacement is a delete then a create
(the program replaces instances delete-before-replace). The hook reads one JSON document on stdin:

    {"event": "create"|"delete", "instanceId": "i-...", "privateIp": "10.213.0.11",
     "userData": "#cloud-config ...", "tags": {"Name": ...}, "name": "<Pulumi resource name>",
     "urn": "urn:pulumi:..."}

A non-zero exit fails the resource operation with the tail of the hook's stderr; after a failed
create the instance is terminated again, so moto and the Pulumi state stay in step.
"""
from __future__ import annotations

import json
import os
import subprocess

from ..server import ProviderError

HOOK_ENV = "ECOM_STANDIN_INSTANCE_HOOK"
TIMEOUT_ENV = "ECOM_STANDIN_INSTANCE_HOOK_TIMEOUT"
STDERR_TAIL_LINES = 20


def run(event: str, document: dict) -> None:
    path = os.environ.get(HOOK_ENV)
    if not path:
        return
    timeout = float(os.environ.get(TIMEOUT_ENV, "900"))
    payload = json.dumps({"event": event, **document}, sort_keys=True)
    try:
        done = subprocess.run([path], input=payload, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ProviderError(f"instance hook {path} ({HOOK_ENV}) does not exist") from None
    except PermissionError:
        raise ProviderError(f"instance hook {path} ({HOOK_ENV}) is not executable") from None
    except subprocess.TimeoutExpired:
        raise ProviderError(f"instance hook {path} did not finish {event} of {document.get('instanceId')} "
                            f"within {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-STDERR_TAIL_LINES:]) or "(no output on stderr)"
        raise ProviderError(f"instance hook {path} failed on {event} of {document.get('instanceId')} "
                            f"(exit {done.returncode}):\n{tail}")
