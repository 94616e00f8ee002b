"""The provider protocol for the stand-ins: a gRPC `ResourceProvider` on the Pulumi Python SDK.

Built on the SDK's plumbing (`pulumi.provider.experimental`: `PropertyValue` to (un)marshal,
`_GRPC_CHANNEL_OPTIONS`, the `port on stdout` handshake of `pulumi.provider.experimental.server.main`),
with its own servicer because the SDK's drops `old_inputs` from Diff/Update and appends a Python
traceback to every error the engine prints. A stand-in is a `Provider` holding one `Resource` handler
per type token and one function per invoke token; handlers see plain Python values (secrets
unwrapped, numbers as int where integral, `UNKNOWN` for values not known during preview).

What the engine expects, and where it comes from (pulumi/pulumi proto/pulumi/provider.proto):
- Check returns the inputs to use (autonames filled in) or failures; it runs in preview too.
- Diff says which properties change and which of those replace; `deleteBeforeReplace` is the
  provider's own request (the bridge asks for it when a replaced resource keeps a user-given name).
- Create/Update with `preview` return the planned outputs: unknown where the provider computes them.
- Read returning an empty id means the resource is gone: `pulumi refresh` drops it from the state.

Why over ~400 lines: one servicer method per RPC of provider.proto plus the value conversions they share;
splitting them would scatter one protocol.
"""
from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from google.protobuf import empty_pb2, struct_pb2
from pulumi.provider.experimental.property_value import Computed, PropertyValue
from pulumi.runtime import proto, rpc
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import provider_pb2_grpc
from pulumi.runtime.rpc import UNKNOWN as UNKNOWN_STRING

from ecom_infra import provider_rules


class _Unknown:
    """A value the engine does not know yet (preview): an input from an unknown output, or a computed output."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()
DEFAULTS_KEY = "__defaults"        # pulumi-terraform-bridge: the inputs Check filled in (autonames, defaults)


class ProviderError(Exception):
    """A failed operation, worded for the person running `pulumi` (no traceback)."""


@dataclass
class CheckFailed(Exception):
    failures: list[tuple[str, str]]


# ----------------------------------------------------------------------------- values

def to_plain(value: PropertyValue) -> Any:
    inner = value.value
    if isinstance(inner, Computed) or inner == UNKNOWN_STRING:
        return UNKNOWN
    if isinstance(inner, float):
        return int(inner) if inner.is_integer() else inner
    if isinstance(inner, tuple):
        return [to_plain(item) for item in inner]
    if isinstance(inner, Mapping):
        return {key: to_plain(item) for key, item in inner.items()}
    return inner


def plain_map(props: dict[str, PropertyValue]) -> tuple[dict[str, Any], set[str]]:
    """Plain values and the names of top-level properties that were (or held) secrets."""
    return ({key: to_plain(value) for key, value in props.items()},
            {key for key, value in props.items() if value.contains_secret()})


def _marshal(value: Any, secret: bool = False) -> struct_pb2.Value:
    """A plain value as the engine's protobuf value; UNKNOWN as the SDKs send it (the SDK's
    PropertyValue cannot marshal a computed value)."""
    if value is UNKNOWN:
        result = struct_pb2.Value(string_value=UNKNOWN_STRING)
    elif value is None:
        result = struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    elif isinstance(value, bool):
        result = struct_pb2.Value(bool_value=value)
    elif isinstance(value, (int, float)):
        result = struct_pb2.Value(number_value=float(value))
    elif isinstance(value, str):
        result = struct_pb2.Value(string_value=value)
    elif isinstance(value, dict):
        result = struct_pb2.Value(struct_value=marshal_map({str(k): v for k, v in value.items()}))
    elif isinstance(value, (list, tuple)):
        result = struct_pb2.Value(list_value=struct_pb2.ListValue(values=[_marshal(v) for v in value]))
    else:
        raise TypeError(f"cannot send {type(value).__name__} to the engine")
    if secret:
        wrapper = struct_pb2.Struct()
        wrapper.fields[rpc._special_sig_key].string_value = rpc._special_secret_sig
        wrapper.fields["value"].CopyFrom(result)
        result = struct_pb2.Value(struct_value=wrapper)
    return result


def marshal_map(values: dict[str, Any], secret: Iterable[str] = ()) -> struct_pb2.Struct:
    secret = set(secret)
    result = struct_pb2.Struct()
    for key, value in values.items():
        result.fields[key].CopyFrom(_marshal(value, key in secret))
    return result


def is_set(value: Any) -> bool:
    """Terraform treats a missing value, null and an empty list or map alike."""
    return value is not None and value != [] and value != {}


def changed_paths(olds: dict[str, Any], news: dict[str, Any], prefix: str = "") -> list[str]:
    """Leaf property paths ("a", "a.b") whose value differs; an unknown new value counts as a change."""
    paths = []
    for key in sorted(set(olds) | set(news)):
        if key.startswith("__"):
            continue
        old, new = olds.get(key), news.get(key)
        path = f"{prefix}{key}"
        if new is UNKNOWN:
            paths.append(path)
        elif isinstance(old, dict) and isinstance(new, dict):
            paths.extend(changed_paths(old, new, f"{path}."))
        elif is_set(old) or is_set(new):
            if old != new:
                paths.append(path)
    return paths


def _get_path(values: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(values, dict):
            return None
        values = values.get(part)
    return values


def _set_path(values: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        values = values.setdefault(part, {})
        if not isinstance(values, dict):
            return
    if value is None:
        values.pop(last, None)
    else:
        values[last] = value


# ----------------------------------------------------------------------------- handlers

@dataclass
class Context:
    """What a handler gets with each call: the stand-in (its clients and config) and the resource's URN."""
    provider: Provider
    urn: str = ""

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


class Resource:
    """One resource type. Subclasses implement create/read/update/delete on plain values."""

    token: str = ""
    computed: tuple[str, ...] = ()        # outputs the provider fills in: unknown in preview unless an input
    secret_outputs: tuple[str, ...] = ()  # outputs the provider itself marks secret (Sensitive in its schema)

    def check(self, ctx: Context, olds: dict, news: dict, seed: bytes) -> dict:
        """Autoname (keeping the name already chosen, as the bridge does), then the table's rules."""
        name = ctx.name
        auto = provider_rules.AUTONAMES.get(self.token)
        checked = dict(news)
        filled = [d for d in (olds.get(DEFAULTS_KEY) or []) if d in olds]
        if auto and not is_set(news.get(auto.prop)) and not (auto.prefix_prop and news.get(auto.prefix_prop)):
            if auto.prop in filled:
                checked[auto.prop] = olds[auto.prop]
            else:
                checked = provider_rules.with_autoname(self.token, name, news, seed=f"{seed.hex()}/{self.token}/{name}")
            checked[DEFAULTS_KEY] = [auto.prop]
        elif DEFAULTS_KEY in checked:
            checked[DEFAULTS_KEY] = []
        # An unknown value (preview) is present for the required check and skipped by the pattern rules.
        failures = provider_rules.problems(self.token, checked)
        if failures:
            raise CheckFailed(failures)
        return checked

    def planned(self, ctx: Context, inputs: dict) -> dict:
        """The outputs a preview shows: the inputs, and unknown for what the provider computes."""
        return {**{k: UNKNOWN for k in self.computed if k not in inputs}, **inputs}

    def create(self, ctx: Context, inputs: dict) -> tuple[str, dict]:
        raise NotImplementedError

    def read(self, ctx: Context, rid: str, state: dict, inputs: dict) -> tuple[dict, dict] | None:
        """(outputs, inputs) as they are now, or None when the resource no longer exists."""
        return state, inputs

    def update(self, ctx: Context, rid: str, state: dict, old_inputs: dict, news: dict) -> dict:
        raise NotImplementedError

    def delete(self, ctx: Context, rid: str, state: dict) -> None:
        raise NotImplementedError

    def delete_before_replace(self, news: dict) -> bool:
        # pulumi-terraform-bridge (provider.go, Diff): a replaced resource whose name the user set
        # (not an autoname, no prefix) must go first, or the new one would collide with it.
        auto = provider_rules.AUTONAMES.get(self.token)
        return bool(auto and is_set(news.get(auto.prop)) and auto.prop not in (news.get(DEFAULTS_KEY) or [])
                    and not (auto.prefix_prop and news.get(auto.prefix_prop)))


@dataclass
class Provider:
    package: str
    version: str
    resources: Mapping[str, Resource] = field(default_factory=dict)
    functions: Mapping[str, Callable[[Provider, dict], dict]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def resource(self, token: str) -> Resource:
        try:
            return self.resources[token]
        except KeyError:
            raise ProviderError(f"the {self.package} stand-in does not serve {token} "
                                f"(it serves {', '.join(sorted(self.resources))})") from None


# ----------------------------------------------------------------------------- the gRPC servicer

def _type_of(urn: str) -> str:
    return urn.split("::")[-2].split("$")[-1]


async def _in_thread(fn, *args):
    # boto3 and the instance hook block: run them off the event loop so the engine's parallel steps overlap.
    return await asyncio.to_thread(fn, *args)


class Servicer(provider_pb2_grpc.ResourceProviderServicer):
    def __init__(self, provider: Provider):
        self.provider = provider

    async def _fail(self, context, exc: BaseException) -> None:
        if isinstance(exc, (ProviderError, CheckFailed)):
            message = str(exc)
        else:   # a bug in the stand-in: keep the traceback for whoever fixes it
            message = f"{type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc)[-6:])}"
        await context.abort(grpc.StatusCode.UNKNOWN, message)

    async def GetPluginInfo(self, request, context):  # noqa: N802 - gRPC method names
        return proto.PluginInfo(version=self.provider.version)

    async def GetSchema(self, request, context):  # noqa: N802
        # Only what identifies the package: the engine needs no schema to run a Python program.
        return proto.GetSchemaResponse(schema=json.dumps({"name": self.provider.package,
                                                          "version": self.provider.version}))

    async def Cancel(self, request, context):  # noqa: N802
        return empty_pb2.Empty()

    async def CheckConfig(self, request, context):  # noqa: N802
        return proto.CheckResponse(inputs=request.news)

    async def DiffConfig(self, request, context):  # noqa: N802
        # Provider settings (endpoints, tags) are updated in place; resources are never replaced for them.
        olds, _ = plain_map(PropertyValue.unmarshal_map(request.olds))
        news, _ = plain_map(PropertyValue.unmarshal_map(request.news))
        paths = changed_paths(olds, news)
        return proto.DiffResponse(changes=proto.DiffResponse.DIFF_SOME if paths else proto.DiffResponse.DIFF_NONE,
                                  diffs=sorted({p.split(".")[0] for p in paths}))

    async def Configure(self, request, context):  # noqa: N802
        try:
            args, _ = plain_map(PropertyValue.unmarshal_map(request.args))
            config = {k: _decode_config(v) for k, v in args.items()}
            for key, value in request.variables.items():     # "aws:config:region" style, when args lack it
                config.setdefault(key.rsplit(":", 1)[-1], _decode_config(value))
            self.provider.configure(config)
        except Exception as exc:  # noqa: BLE001 - reported to the engine
            await self._fail(context, exc)
        return proto.ConfigureResponse(acceptSecrets=True, supportsPreview=True, acceptResources=False,
                                       acceptOutputs=False)

    async def Check(self, request, context):  # noqa: N802
        typ = _type_of(request.urn)
        try:
            handler = self.provider.resource(typ)
            olds, _ = plain_map(PropertyValue.unmarshal_map(request.olds))
            news_pv = PropertyValue.unmarshal_map(request.news)
            news, secret = plain_map(news_pv)
            checked = handler.check(Context(self.provider, request.urn), olds, news, bytes(request.randomSeed))
        except CheckFailed as failed:
            # pulumi-terraform-bridge words failures with no property and the path in the reason, so the
            # engine prints "<type> resource '<name>' has a problem: <why>. Examine values at '<name>.<prop>'."
            name = request.urn.rsplit("::", 1)[-1]
            return proto.CheckResponse(failures=[
                proto.CheckFailure(property="", reason=f"{reason}. Examine values at '{name}.{prop}'.")
                for prop, reason in failed.failures])
        except Exception as exc:  # noqa: BLE001
            await self._fail(context, exc)
        # Keep the engine's own values (secrets, dependencies) for what Check did not change.
        out = marshal_map(checked, secret)
        for key, value in checked.items():
            if key in news_pv and news.get(key) is value:
                out.fields[key].CopyFrom(request.news.fields[key])
        return proto.CheckResponse(inputs=out)

    async def Diff(self, request, context):  # noqa: N802
        typ = _type_of(request.urn)
        try:
            handler = self.provider.resource(typ)
            state, _ = plain_map(PropertyValue.unmarshal_map(request.olds))
            old_inputs, _ = plain_map(PropertyValue.unmarshal_map(request.old_inputs))
            if not old_inputs:       # an engine that sends no old inputs: the state holds them too
                old_inputs = state
            news, _ = plain_map(PropertyValue.unmarshal_map(request.news))
            # The engine applies ignoreChanges before calling Diff; applying it again here is harmless.
            for path in request.ignoreChanges:
                _set_path(news, path, _get_path(old_inputs, path))
            paths = changed_paths(old_inputs, news)
            replaces = provider_rules.replaces(typ, paths, news)
            detailed = {}
            for path in paths:
                old, new = _get_path(old_inputs, path), _get_path(news, path)
                kind = ("ADD" if not is_set(old) else "DELETE" if not is_set(new) and new is not UNKNOWN
                        else "UPDATE")
                if path in replaces or path.split(".")[0] in replaces or any(path.startswith(r + ".")
                                                                                 for r in replaces):
                    kind += "_REPLACE"
                detailed[path] = proto.PropertyDiff(kind=getattr(proto.PropertyDiff, kind), inputDiff=True)
        except Exception as exc:  # noqa: BLE001
            await self._fail(context, exc)
        return proto.DiffResponse(
            changes=proto.DiffResponse.DIFF_SOME if paths else proto.DiffResponse.DIFF_NONE,
            replaces=sorted({p.split(".")[0] for p in replaces}),
            diffs=sorted({p.split(".")[0] for p in paths}),
            deleteBeforeReplace=bool(replaces) and handler.delete_before_replace(news),
            detailedDiff=detailed, hasDetailedDiff=True)

    async def Create(self, request, context):  # noqa: N802
        typ = _type_of(request.urn)
        try:
            handler = self.provider.resource(typ)
            inputs, secret = plain_map(PropertyValue.unmarshal_map(request.properties))
            inputs.pop(DEFAULTS_KEY, None)
            ctx = Context(self.provider, request.urn)
            if request.preview:
                rid, outputs = "", handler.planned(ctx, inputs)
            else:
                rid, outputs = await _in_thread(handler.create, ctx, inputs)
        except Exception as exc:  # noqa: BLE001
            await self._fail(context, exc)
        return proto.CreateResponse(id=rid, properties=self._outputs(handler, outputs, secret))

    async def Read(self, request, context):  # noqa: N802
        typ = _type_of(request.urn)
        try:
            handler = self.provider.resource(typ)
            state, secret = plain_map(PropertyValue.unmarshal_map(request.properties))
            # `__defaults` stays in the inputs: the next Check keeps an autoname only when it is listed there.
            inputs, in_secret = plain_map(PropertyValue.unmarshal_map(request.inputs))
            found = await _in_thread(handler.read, Context(self.provider, request.urn), request.id, state, inputs)
        except Exception as exc:  # noqa: BLE001
            await self._fail(context, exc)
        if found is None:
            return proto.ReadResponse(id="")
        outputs, new_inputs = found
        return proto.ReadResponse(id=request.id, properties=self._outputs(handler, outputs, secret),
                                  inputs=marshal_map(new_inputs, secret | in_secret))

    async def Update(self, request, context):  # noqa: N802
        typ = _type_of(request.urn)
        try:
            handler = self.provider.resource(typ)
            state, _ = plain_map(PropertyValue.unmarshal_map(request.olds))
            old_inputs, _ = plain_map(PropertyValue.unmarshal_map(request.old_inputs))
            news, secret = plain_map(PropertyValue.unmarshal_map(request.news))
            news.pop(DEFAULTS_KEY, None)
            ctx = Context(self.provider, request.urn)
            if request.preview:
                outputs = {**state, **news}
            else:
                outputs = await _in_thread(handler.update, ctx, request.id, state, old_inputs or state, news)
        except Exception as exc:  # noqa: BLE001
            await self._fail(context, exc)
        return proto.UpdateResponse(properties=self._outputs(handler, outputs, secret))

    async def Delete(self, request, context):  # noqa: N802
        typ = _type_of(request.urn)
        try:
            handler = self.provider.resource(typ)
            state, _ = plain_map(PropertyValue.unmarshal_map(request.properties))
            await _in_thread(handler.delete, Context(self.provider, request.urn), request.id, state)
        except Exception as exc:  # noqa: BLE001
            await self._fail(context, exc)
        return empty_pb2.Empty()

    async def Invoke(self, request, context):  # noqa: N802
        try:
            fn = self.provider.functions.get(request.tok)
            if fn is None:
                raise ProviderError(f"the {self.provider.package} stand-in does not serve the function {request.tok}")
            args, _ = plain_map(PropertyValue.unmarshal_map(request.args))
            result = await _in_thread(fn, self.provider, args)
        except Exception as exc:  # noqa: BLE001
            await self._fail(context, exc)
        return proto.InvokeResponse(**{"return": marshal_map(result)})

    @staticmethod
    def _outputs(handler: Resource, outputs: dict, secret_inputs: set[str]):
        outputs = {k: v for k, v in outputs.items() if not k.startswith("__")}
        # A secret input stays secret in the outputs (the engine does the same for providers that
        # accept secrets); Sensitive attributes are secret whatever the inputs were.
        return marshal_map(outputs, secret_inputs | set(handler.secret_outputs))


def _decode_config(value: Any) -> Any:
    """Provider inputs arrive JSON-encoded when not strings (the generated SDKs' Provider classes do that)."""
    if isinstance(value, str) and value[:1] in ("[", "{") or value in ("true", "false"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def serve(provider: Provider, argv: list[str] | None = None) -> None:
    """Listen on a loopback port and print it: the plugin handshake the engine expects."""
    del argv   # the engine passes its address (and logging flags); these stand-ins need neither

    async def run() -> None:
        server = grpc.aio.server(options=_GRPC_CHANNEL_OPTIONS)
        provider_pb2_grpc.add_ResourceProviderServicer_to_server(Servicer(provider), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        await server.wait_for_termination()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
