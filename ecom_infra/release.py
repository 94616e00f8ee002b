"""The sha file in S3: read it, change it safely, and read its history.

`sha_number.yml` (format in `ecom_infra.shafile`) lives in a versioned bucket. Several CI
jobs may write it at the same moment (two apps finishing their specs together), so every
write is a compare-and-swap: the upload carries `If-Match: <ETag we read>` (or
`If-None-Match: *` when there was no object), and a precondition failure means somebody
else wrote in between: we re-read, re-apply our change to their version and try again,
a bounded number of times with jittered backoff. Nothing is ever written from a file
that did not parse, so a malformed file in the bucket is left for a person to fix.

Each write records who made it, which verb, and the sha each changed entry had before,
as S3 object metadata; `history` and `rollback` read those back from the object versions.

This module holds no argparse: `ecom_infra.release_cli` turns arguments into calls here.

Why over ~400 lines: the compare-and-swap write, its retries and the history reader work on the same
object versions and metadata, so the format they write and read has one home.
"""
from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import botocore.config
import botocore.exceptions
import botocore.session
import yaml

from . import defaults, shafile
from .errors import ConfigError
from .rules import ACTOR, APP_NAME, NAME, SHA, UTC_TIME

CONTENT_TYPE = "text/yaml"   # a text/* type, so the Pulumi program can read it with aws.s3.get_object
NONE = "(none)"

# Metadata keys S3 stores with each version (S3 lowercases them; values must be ASCII).
META_ACTOR = "ecom-actor"
META_VERB = "ecom-verb"
META_PREVIOUS = "ecom-previous"   # "env/app=sha-or-none,..." for every entry this write changed

# Compare-and-swap retries (why these numbers: ecom_infra.defaults).
DEFAULT_ATTEMPTS = defaults.CAS_ATTEMPTS
BACKOFF_BASE_S = defaults.BACKOFF_BASE_S
BACKOFF_CAP_S = defaults.BACKOFF_CAP_S

ShaMap = shafile.ShaMap

# S3 error codes that mean "the object changed since we read it".
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                     "TokenRefreshRequired", "InvalidClientTokenId"}


@dataclass(frozen=True)
class Location:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Snapshot:
    """What we read: the parsed file and the ETag a conditional write must match."""
    shas: ShaMap
    etag: str | None          # None: the object does not exist (write with If-None-Match: *)
    version_id: str | None


@dataclass(frozen=True)
class Change:
    """One entry as a verb leaves it; `old == new` means it was already so."""
    env: str
    app: str
    old: str | None
    new: str

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def line(self) -> str:
        text = f"{self.env}/{self.app}: {self.old or NONE} \u2192 {self.new}"
        return text if self.changed else text + " (unchanged, nothing written)"


@dataclass(frozen=True)
class HistoryRow:
    """A period during which env/app had one sha, identified by the version that set it."""
    time: datetime
    sha: str | None
    actor: str
    verb: str
    previous: str | None
    version_id: str

    def line(self) -> str:
        stamp = self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (f"{stamp}  {self.sha or NONE:<40}  {self.actor:<20}  {self.verb:<9}  "
                f"{self.previous or NONE}")


@dataclass
class _Version:
    """One stored version of the object, parsed (shas is None when it did not parse)."""
    version_id: str
    time: datetime
    shas: ShaMap | None
    metadata: dict[str, str] = field(default_factory=dict)


class _Conflict(Exception):
    """The object changed between our read and our conditional write."""


# While `one_session` runs: the session every s3_client comes from, and the clients made, by endpoint and region.
_SHARED: dict[str, Any] = {}


@contextmanager
def one_session(session: Any) -> Iterator[None]:
    """Within the block, s3_client makes one client per endpoint and region, from `session`: for a caller that
    runs several verbs in one process with one set of credentials, from one thread (`make up`; a client costs
    0.15 s to make on a session of its own). Outside, each call has its own session, as a CLI verb does."""
    _SHARED.update(session=session, clients={})
    try:
        yield
    finally:
        _SHARED.clear()


def s3_client(endpoint_url: str | None = None, region: str | None = None):
    """An S3 client on its own session (sessions are not shared between threads), or within `one_session` the
    one client of that session for this endpoint and region. botocore's own: boto3's adds only what these verbs do
    not use (resources, transfer helpers) and costs about 0.1 s more to make.

    Region and credentials come from the normal AWS environment. A custom endpoint (moto,
    LocalStack) gets path-style addressing, since it has no per-bucket DNS names.
    """
    config = botocore.config.Config(
        retries={"max_attempts": defaults.S3_MAX_ATTEMPTS, "mode": "standard"},
        connect_timeout=defaults.S3_CONNECT_TIMEOUT_S,
        read_timeout=defaults.S3_READ_TIMEOUT_S,
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    if _SHARED:
        key = (endpoint_url, region)
        if key not in _SHARED["clients"]:
            _SHARED["clients"][key] = _SHARED["session"].create_client(
                "s3", region_name=region, endpoint_url=endpoint_url or None, config=config)
        return _SHARED["clients"][key]
    return botocore.session.Session().create_client("s3", region_name=region, endpoint_url=endpoint_url or None,
                                                    config=config)


@contextmanager
def s3_errors(location: Location, endpoint_url: str | None = None) -> Iterator[None]:
    """Turn the S3 failures a person can cause into one-line ConfigErrors naming the cause."""
    try:
        yield
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigError("AWS_PROFILE", f"profile {exc.kwargs.get('profile')!r} is not in the AWS config "
                                         "files") from None
    except botocore.exceptions.PartialCredentialsError as exc:
        raise ConfigError("AWS credentials", f"partial credentials in {exc.kwargs.get('provider')}: "
                                             f"{exc.kwargs.get('cred_var')} is missing") from None
    except botocore.exceptions.NoCredentialsError:
        raise ConfigError("AWS credentials", "none found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                                             "AWS_PROFILE or use an instance role") from None
    except botocore.exceptions.EndpointConnectionError as exc:
        where = endpoint_url or getattr(exc, "kwargs", {}).get("endpoint_url", "the S3 endpoint")
        raise ConfigError("--endpoint-url", f"cannot connect to {where}") from None
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        message = str(exc.response.get("Error", {}).get("Message", "")).strip()
        if code == "NoSuchBucket":
            raise ConfigError("--bucket", f"bucket {location.bucket!r} does not exist") from None
        if code in _CREDENTIAL_CODES:
            raise ConfigError("AWS credentials", f"rejected by S3 ({code})") from None
        if code in {"AccessDenied", "403", "AllAccessDisabled"}:
            raise ConfigError("--bucket", f"access denied to {location} (check the credentials' "
                                          f"permissions and the bucket policy)") from None
        raise ConfigError(str(location), f"S3 error {code}: {message}") from None
    except botocore.exceptions.BotoCoreError as exc:   # timeouts, bad endpoint URL, region...
        raise ConfigError(str(location), f"S3 request failed: {exc}") from None


def _body_text(reply: dict, source: str) -> str:
    """The object's text, refusing an oversized object before downloading it."""
    if int(reply.get("ContentLength") or 0) > shafile.MAX_BYTES:
        reply["Body"].close()
        raise ConfigError(source, f"is larger than {shafile.MAX_BYTES // 1024} KiB: not a sha file")
    return shafile.decode(reply["Body"].read(shafile.MAX_BYTES + 1), source)


def backoff_delay(attempt: int, rand: Callable[[float, float], float] = random.uniform) -> float:
    """Full-jitter delay before retry number `attempt` (1-based)."""
    return rand(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt))


def encode_previous(changes: Sequence[Change]) -> str:
    """`env/app=sha,...` for the changed entries; `none` where there was no sha."""
    return ",".join(f"{c.env}/{c.app}={c.old or 'none'}" for c in changes if c.changed)


def decode_previous(text: str) -> dict[tuple[str, str], str | None]:
    """Inverse of encode_previous; ignores anything malformed (metadata is advisory)."""
    found: dict[tuple[str, str], str | None] = {}
    for item in text.split(","):
        match = re.fullmatch(r"([a-z][a-z0-9-]*)/([a-z][a-z0-9-]*)=([0-9a-f]{40}|none)", item.strip())
        if match:
            env, app, sha = match.groups()
            found[(env, app)] = None if sha == "none" else sha
    return found


def conditional_put(client, location: Location, text: str, etag: str | None, endpoint_url: str | None,
                    metadata: dict[str, str]) -> None:
    """Write `text` only if the object is still the one we read (`etag`; None: still absent).

    Raises _Conflict when somebody wrote in between: the caller re-reads and re-applies.
    """
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    with s3_errors(location, endpoint_url):
        try:
            client.put_object(Bucket=location.bucket, Key=location.key, Body=text.encode(),
                              ContentType=CONTENT_TYPE, Metadata=metadata, **condition)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _CONFLICT_CODES:
                raise _Conflict() from None
            raise


def compare_and_swap(location: Location, attempts: int, sleep: Callable[[float], None],
                     attempt: Callable[[], tuple[Any, Callable[[], None] | None]]) -> Any:
    """Run `attempt` until its conditional write wins, with jittered backoff between lost races.

    `attempt` reads the object, decides, and returns (result, write): `write` is None when nothing needs
    writing, else it does the conditional_put (raising _Conflict when somebody wrote in between).
    """
    for number in range(1, attempts + 1):
        result, write = attempt()
        if write is None:
            return result
        try:
            write()
        except _Conflict:
            if number < attempts:
                sleep(backoff_delay(number))
            continue
        return result
    raise ConfigError(str(location), f"kept changing under us: gave up after {attempts} "
                                     f"attempts, nothing written by this run; try again")


class ShaStore:
    """The sha file at one S3 location, with compare-and-swap updates and version history."""

    def __init__(self, client, location: Location, apps: Sequence[str], *,
                 endpoint_url: str | None = None, attempts: int = DEFAULT_ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep, environments: Sequence[str] | None = None):
        if not apps:
            raise ValueError("ShaStore needs the list of known apps")
        self.client = client
        self.location = location
        self.apps = list(apps)
        self.environments = list(environments) if environments is not None else None   # None: any
        self.endpoint_url = endpoint_url
        self.attempts = attempts
        self.sleep = sleep

    # -- reading -------------------------------------------------------------------------
    def read(self) -> Snapshot:
        """The current file; an absent object reads as empty. Malformed YAML raises ConfigError."""
        with s3_errors(self.location, self.endpoint_url):
            try:
                reply = self.client.get_object(Bucket=self.location.bucket, Key=self.location.key)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                    return Snapshot({}, None, None)
                raise
            text = _body_text(reply, str(self.location))
        shas = shafile.parse(text, self.apps, source=str(self.location), environments=self.environments)
        return Snapshot(shas, reply["ETag"], reply.get("VersionId"))

    def versions_newest_first(self, page_size: int | None = None) -> Iterator[_Version]:
        """Every stored version of the object, newest first, each fetched and parsed lazily.

        Pages are listed lazily too; `page_size` (S3's default is 1000) lets a caller that needs
        only the newest few versions stop after a short first page.

        S3 lists the versions of one key newest first, so the listing order is kept (the
        timestamps have only second precision and cannot order two quick writes). Delete
        markers are skipped: a deleted file has no entries to show.
        """
        with s3_errors(self.location, self.endpoint_url):
            pages = self.client.get_paginator("list_object_versions").paginate(
                Bucket=self.location.bucket, Prefix=self.location.key,
                PaginationConfig={"PageSize": page_size} if page_size else {})
            for page in pages:
                for item in page.get("Versions", []):
                    if item["Key"] != self.location.key:
                        continue
                    yield self._fetch_version(item["VersionId"], item["LastModified"])

    def _fetch_version(self, version_id: str, modified: datetime) -> _Version:
        reply = self.client.get_object(Bucket=self.location.bucket, Key=self.location.key,
                                       VersionId=version_id)
        try:
            text = _body_text(reply, str(self.location))
            shas: ShaMap | None = shafile.parse(text, self.apps, source=str(self.location),
                                                environments=self.environments)
        except ConfigError:
            shas = None   # a hand-edited broken version: history skips it, it never ran
        return _Version(version_id, modified, shas, dict(reply.get("Metadata") or {}))

    # -- writing -------------------------------------------------------------------------
    def update(self, mutate: Callable[[ShaMap], list[Change]], *, verb: str, actor: str) -> list[Change]:
        """Read, apply `mutate` (it edits the map in place and reports its changes), write back.

        `mutate` is re-run on the fresh file after every lost race, so it must be a pure
        function of the map it gets. It may raise ConfigError to refuse; then nothing is
        written. Returns the changes of the attempt that won (none written if none changed).
        """
        def attempt() -> tuple[list[Change], Callable[[], None] | None]:
            snapshot = self.read()
            shas = {env: dict(entries) for env, entries in snapshot.shas.items()}
            changes = mutate(shas)
            if not any(c.changed for c in changes):
                return changes, None
            return changes, lambda: self._put(shas, snapshot.etag, verb=verb, actor=actor,
                                              previous=encode_previous(changes))

        return compare_and_swap(self.location, self.attempts, self.sleep, attempt)

    def _put(self, shas: ShaMap, etag: str | None, *, verb: str, actor: str, previous: str) -> None:
        conditional_put(self.client, self.location, shafile.dump(shas), etag, self.endpoint_url,
                        {META_ACTOR: actor, META_VERB: verb, META_PREVIOUS: previous})

    def versioning_enabled(self) -> bool:
        with s3_errors(self.location, self.endpoint_url):
            reply = self.client.get_bucket_versioning(Bucket=self.location.bucket)
        return reply.get("Status") == "Enabled"


# -- the verbs' logic, as pure functions over the map plus the store ----------------------
def stage_mutation(env: str, app: str, sha: str) -> Callable[[ShaMap], list[Change]]:
    def mutate(shas: ShaMap) -> list[Change]:
        old = shas.get(env, {}).get(app)
        shas.setdefault(env, {})[app] = sha
        return [Change(env, app, old, sha)]
    return mutate


def promote_mutation(source: str, target: str, apps: Sequence[str], *,
                     explicit: bool) -> Callable[[ShaMap], list[Change]]:
    """Copy `apps` from `source` to `target`. Apps `source` has no sha for are an error when
    asked for by name, and otherwise left alone in `target` (reported by the caller)."""
    def mutate(shas: ShaMap) -> list[Change]:
        available = shas.get(source, {})
        missing = [app for app in apps if app not in available]
        if explicit and missing:
            raise ConfigError("--app", f"{source}/{missing[0]} has no sha to promote")
        if len(missing) == len(apps):
            raise ConfigError("--from", f"{source} has no sha for {', '.join(apps)}: nothing to promote")
        changes = []
        for app in apps:
            if app in available:
                old = shas.get(target, {}).get(app)
                shas.setdefault(target, {})[app] = available[app]
                changes.append(Change(target, app, old, available[app]))
        return changes
    return mutate


def rollback_mutation(env: str, app: str, expected_current: str | None,
                      sha: str) -> Callable[[ShaMap], list[Change]]:
    """Set env/app to `sha`, refusing if the entry moved since the history was read."""
    def mutate(shas: ShaMap) -> list[Change]:
        current = shas.get(env, {}).get(app)
        if current != expected_current:
            raise ConfigError("--app", f"{env}/{app} changed to {current or NONE} while rolling back; "
                                       f"check `history` and run rollback again")
        shas.setdefault(env, {})[app] = sha
        return [Change(env, app, current, sha)]
    return mutate


def history(store: ShaStore, env: str, app: str, skipped: list[str] | None = None,
            limit: int | None = None) -> Iterator[HistoryRow]:
    """The periods of env/app, newest first: when each sha was set, by whom, and what it replaced.

    Consecutive versions with the same value for env/app (other entries changed) are one
    period; it is credited to its oldest version, the one that set the value. Periods
    without the entry are not shown. `previous` is the value of the period before; for
    the oldest period we know of it falls back to what the setting write recorded in its
    metadata (older versions may have expired).
    Versions that do not parse are skipped and their ids appended to `skipped`.
    With `limit`, stops after that many rows, having listed and read only the versions they
    need (N rows need at least N + 1 versions, more when other entries changed in between).
    """
    run: _Version | None = None      # the oldest version seen so far of the current period
    run_value: str | None = None
    rows = 0
    page_size = min(1000, limit + 1) if limit else None
    for version in store.versions_newest_first(page_size):
        if version.shas is None:
            if skipped is not None:
                skipped.append(version.version_id)
            continue
        value = version.shas.get(env, {}).get(app)
        if run is not None and value != run_value:
            if run_value is not None:   # a period without the entry is not a release
                yield _row(run, run_value, previous=value)
                rows += 1
                if limit and rows >= limit:
                    return      # the rest of the listing is never requested
            run = None
        if run is None or value == run_value:
            run, run_value = version, value
    if run is not None and run_value is not None:
        recorded = decode_previous(run.metadata.get(META_PREVIOUS, ""))
        yield _row(run, run_value, previous=recorded.get((env, app)))


def _row(version: _Version, value: str | None, previous: str | None) -> HistoryRow:
    return HistoryRow(time=version.time, sha=value,
                      actor=version.metadata.get(META_ACTOR, "unknown"),
                      verb=version.metadata.get(META_VERB, "unknown"),
                      previous=previous, version_id=version.version_id)


def rollback_target(live: Sequence[LiveRecord], rows: Sequence[HistoryRow], current: str) -> str | None:
    """The release that was live before the current one.

    Only the live record knows which shas went live: the sha file's versions also hold shas
    whose deploy failed (the servers kept the old release). Walking the live records newest
    first, skip the sha file's current sha and every sha a rollback moved *away* from (from
    the sha file's history), so a second rollback goes one release further back instead of
    flip-flopping between the last two, Capistrano style. None when there is nothing earlier.
    """
    abandoned = {current} | {row.previous for row in rows if row.verb == "rollback" and row.previous}
    for record in reversed(live):
        if record.sha not in abandoned:
            return record.sha
    return None


def shas_that_ran(rows: Sequence[HistoryRow]) -> set[str]:
    """Every sha env/app was ever set to (or replaced, per the oldest write's metadata)."""
    return {sha for row in rows for sha in (row.sha, row.previous) if sha}


# -- the live record: which sha went live when --------------------------------------------
# The sha file says what should run; a deploy may fail and leave the old release serving. After
# a successful `pulumi up`, `ecom-deploy mark-live` appends what the servers now run to a second
# object beside the sha file (`<key stem>.live.yml`), with the same compare-and-swap writes.
# Rollback reads it to find the release that was live before the current one.
LIVE_KEEP = defaults.LIVE_KEEP   # records kept per env/app

LiveMap = dict[str, dict[str, list["LiveRecord"]]]


@dataclass(frozen=True)
class LiveRecord:
    sha: str
    time: str       # UTC, 2024-05-01T12:00:00Z
    actor: str

    def line(self) -> str:
        return f"{self.time}  {self.sha}  {self.actor}"


def live_location(sha_file: Location) -> Location:
    """The live record's object: beside the sha file, `sha_number.yml` -> `sha_number.live.yml`."""
    stem = sha_file.key[:-len(".yml")] if sha_file.key.endswith(".yml") else sha_file.key
    return Location(sha_file.bucket, f"{stem}.live.yml")


def parse_live(text: str, source: str) -> LiveMap:
    """`{env: {app: [{sha, time, actor}, ...oldest first]}}`; anything else is a ConfigError."""
    try:
        data = yaml.load(text, Loader=yaml.BaseLoader)   # strings only: a sha of digits stays a string
    except yaml.YAMLError:
        raise ConfigError(source, "is not valid YAML") from None
    data = {} if data in (None, "") else data
    if not isinstance(data, dict):
        raise ConfigError(source, "must map environments to apps to lists of live records")
    found: LiveMap = {}
    for env, apps in data.items():
        if not NAME.fullmatch(str(env)) or not isinstance(apps, dict):
            raise ConfigError(source, f"bad environment entry {str(env)[:40]!r}")
        for app, records in apps.items():
            if not APP_NAME.fullmatch(str(app)) or not isinstance(records, list):
                raise ConfigError(source, f"bad app entry {env}/{str(app)[:40]!r}")
            for item in records:
                if not (isinstance(item, dict) and set(item) == {"sha", "time", "actor"}
                        and SHA.fullmatch(item["sha"]) and UTC_TIME.fullmatch(item["time"])
                        and ACTOR.fullmatch(item["actor"])):
                    raise ConfigError(source, f"bad live record under {env}/{app}: {str(item)[:80]}")
                found.setdefault(env, {}).setdefault(app, []).append(
                    LiveRecord(item["sha"], item["time"], item["actor"]))
    return found


def dump_live(records: LiveMap) -> str:
    body = {env: {app: [{"sha": r.sha, "time": r.time, "actor": r.actor} for r in records[env][app]]
                  for app in sorted(records[env])} for env in sorted(records)}
    return ("# Which sha went live when, per environment and app, oldest first. Written by\n"
            "# `ecom-deploy mark-live` after a successful `pulumi up`; read by `ecom-deploy rollback`.\n"
            + yaml.safe_dump(body, sort_keys=True, default_flow_style=False))


class LiveStore:
    """The live record at one S3 location, changed by compare-and-swap like the sha file."""

    def __init__(self, client, location: Location, *, endpoint_url: str | None = None,
                 attempts: int = DEFAULT_ATTEMPTS, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.location = location
        self.endpoint_url = endpoint_url
        self.attempts = attempts
        self.sleep = sleep

    def read(self) -> tuple[LiveMap, str | None]:
        with s3_errors(self.location, self.endpoint_url):
            try:
                reply = self.client.get_object(Bucket=self.location.bucket, Key=self.location.key)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                    return {}, None
                raise
            text = _body_text(reply, str(self.location))
        return parse_live(text, str(self.location)), reply["ETag"]

    def records(self, env: str, app: str) -> list[LiveRecord]:
        return self.read()[0].get(env, {}).get(app, [])

    def mark(self, env: str, shas: dict[str, str], *, actor: str, when: str) -> list[tuple[str, str | None, str]]:
        """Append (app, sha) for each app whose newest record is another sha; returns
        (app, previous live sha, sha) per app, unchanged ones included."""
        def attempt() -> tuple[list[tuple[str, str | None, str]], Callable[[], None] | None]:
            records, etag = self.read()
            done = []
            for app, sha in sorted(shas.items()):
                rows = records.setdefault(env, {}).setdefault(app, [])
                last = rows[-1].sha if rows else None
                if last != sha:
                    rows.append(LiveRecord(sha, when, actor))
                    del rows[:-LIVE_KEEP]
                done.append((app, last, sha))
            if all(last == sha for _, last, sha in done):
                return done, None
            return done, lambda: conditional_put(self.client, self.location, dump_live(records), etag,
                                                 self.endpoint_url, {META_ACTOR: actor, META_VERB: "mark-live"})

        return compare_and_swap(self.location, self.attempts, self.sleep, attempt)
