"""What a plan read from moto: every call the fleet's mocks (fleet/cloud.py) make goes through `RecordingClient`,
which keeps each read with its answer and notes any write. A plan that wrote nothing is a function of its
program, its config and those answers, so `make up` may reuse it while the same reads, asked again, get the same
answers (fleet/plan_cache.py). No Pulumi here: checking a kept plan must not load the SDK.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import datetime
from typing import Any

# The AWS APIs the mocks call on moto.
MOTO_SERVICES = ("ec2", "iam", "s3")
# API operations that only read (AWS names them so); any other operation the mocks call is a write.
READ_OPERATIONS = ("Describe", "Get", "List", "Head")
# The part of a read's answer the mocks use, as nested fields (a list applies its elements' spec; None keeps the
# value whole); other reads keep their whole answer. The mocks are handed only this part, so a field they start to
# use must be added here (else KeyError), and only this part is recorded: what does not reach the program cannot
# make a kept plan stale. Examples: the sha file's bytes and content type (what `provider_rules.get_object_result`
# takes) but not its version id, time or the actor in its metadata, so a rollback to the same text reads the same;
# a role's existence but not the last-use time moto stamps when the instance profile's credentials are used.
ANSWER_FIELDS: dict[tuple[str, str], dict] = {
    ("ec2", "describe_instances"): {"Reservations": {"Instances": {"InstanceId": None, "PrivateIpAddress": None}}},
    ("ec2", "describe_addresses"): {"Addresses": {"AllocationId": None, "AssociationId": None, "Tags": None}},
    ("iam", "get_role"): {},
    ("iam", "get_instance_profile"): {"InstanceProfile": {"Roles": {"RoleName": None}}},
    ("s3", "list_buckets"): {"Buckets": {"Name": None}},
    ("s3", "list_objects_v2"): {"Contents": {"Key": None}},
    ("s3", "get_object"): {"Body": None, "ContentType": None},
}


def _project(value: Any, spec: dict | None) -> Any:
    if spec is None:
        return value
    if isinstance(value, list):
        return [_project(item, spec) for item in value]
    return {key: _project(value[key], sub) for key, sub in spec.items() if key in value}


def _canonical(value: object) -> str:
    def default(item: object) -> str:
        if isinstance(item, datetime):
            return item.isoformat()
        if isinstance(item, bytes):
            return base64.b64encode(item).decode()
        raise TypeError(f"cannot record a {type(item).__name__}")
    return json.dumps(value, sort_keys=True, default=default)


class MotoReads:
    """The reads one plan made from moto, each with its answer (or error code), and whether it wrote."""

    def __init__(self) -> None:
        self.answers: dict[str, str] = {}      # canonical query -> canonical answer
        self.wrote = False
        self.moved = False                     # a query asked twice got two answers (moto changed meanwhile)
        self._lock = threading.Lock()

    def record(self, query: list, answer: object) -> None:
        key, value = _canonical(query), _canonical(answer)
        with self._lock:
            self.moved |= self.answers.get(key, value) != value
            self.answers[key] = value

    @property
    def keepable(self) -> bool:
        """Whether a plan made from these reads may be reused: it wrote nothing, and each query had one answer."""
        return not self.wrote and not self.moved

    def queries(self) -> list[list]:
        return [json.loads(query) for query in sorted(self.answers)]

    def digest(self) -> str:
        return hashlib.sha256(_canonical(sorted(self.answers.items())).encode()).hexdigest()


class RecordingClient:
    """A boto3 client whose API calls are recorded in `reads`: reads with their answer as the caller gets it
    (ResponseMetadata dropped, `ANSWER_FIELDS` applied, a body read into bytes), writes as `reads.wrote`."""

    def __init__(self, client, service: str, reads: MotoReads) -> None:
        self._client, self._service, self._reads = client, service, reads

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        api_name = self._client.meta.method_to_api_mapping.get(name)
        if api_name is None:                 # not an API operation (meta, exceptions, paginators...)
            return attr
        if not api_name.startswith(READ_OPERATIONS):
            def write(**params):
                self._reads.wrote = True
                return attr(**params)
            return write

        def read(**params):
            from botocore.exceptions import ClientError  # noqa: PLC0415

            query = [self._service, name, params]
            try:
                reply = attr(**params)
            except ClientError as exc:
                self._reads.record(query, {"error": exc.response.get("Error", {}).get("Code", "")})
                raise
            answer = {k: v for k, v in reply.items() if k != "ResponseMetadata"}
            if (self._service, name) in ANSWER_FIELDS:
                answer = _project(answer, ANSWER_FIELDS[self._service, name])
            if "Body" in answer:
                answer["Body"] = answer["Body"].read()
            self._reads.record(query, answer)
            return answer
        return read


# Reads asked again at once: each is a round trip to moto (~10 ms), and their answers are recorded by query, so
# the order they come back in changes nothing (botocore clients are thread-safe; MotoReads locks).
REPLAY_THREADS = 8


def replay(queries: list[list], clients: dict[str, RecordingClient]) -> None:
    """Ask each recorded read again through `clients` (recording clients on one fresh `MotoReads`)."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from botocore.exceptions import ClientError  # noqa: PLC0415

    def ask(query: list) -> None:
        service, name, params = query
        try:
            getattr(clients[service], name)(**params)
        except ClientError:
            pass                                  # recorded as its error code

    with ThreadPoolExecutor(max_workers=min(REPLAY_THREADS, len(queries) or 1)) as pool:
        list(pool.map(ask, queries))              # re-raises what is not a ClientError, as the loop did
