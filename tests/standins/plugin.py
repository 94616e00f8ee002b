"""Drive a stand-in plugin the way the engine does: start `standins/bin/pulumi-resource-<name>`, read the
port it prints, and call its gRPC methods with plain dicts."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import grpc
from pulumi.provider.experimental.property_value import PropertyValue
from pulumi.runtime import proto
from pulumi.runtime.proto import provider_pb2_grpc

from standins.server import UNKNOWN, marshal_map, plain_map

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "standins" / "bin"


def struct(values: dict | None, secret=()):
    return marshal_map(values or {}, secret)


def plain(message) -> dict:
    return plain_map(PropertyValue.unmarshal_map(message))[0]


def secret_keys(message) -> set[str]:
    return plain_map(PropertyValue.unmarshal_map(message))[1]


class Plugin:
    def __init__(self, package: str, env: dict[str, str] | None = None):
        self.package = package
        self.proc = subprocess.Popen([str(BIN / f"pulumi-resource-{package}"), "127.0.0.1:1"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        port = self.proc.stdout.readline().strip()
        if not port:
            raise RuntimeError(f"plugin did not start: {self.proc.stderr.read()}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)

    @staticmethod
    def urn(typ: str, name: str) -> str:
        return f"urn:pulumi:test::standins::{typ}::{name}"

    def info(self):
        return self.stub.GetPluginInfo(__import__("google.protobuf.empty_pb2", fromlist=["Empty"]).Empty())

    def configure(self, args: dict) -> None:
        self.stub.Configure(proto.ConfigureRequest(args=struct(args), acceptSecrets=True))

    def check(self, typ, name, news, olds=None, seed=b"seed-0123456789abcdef0123456789ab"):
        reply = self.stub.Check(proto.CheckRequest(urn=self.urn(typ, name), olds=struct(olds), news=struct(news),
                                                   randomSeed=seed))
        return plain(reply.inputs), [(f.property, f.reason) for f in reply.failures]

    def diff(self, typ, name, olds, news, old_inputs=None, ignore=()):
        return self.stub.Diff(proto.DiffRequest(urn=self.urn(typ, name), id="x", olds=struct(olds),
                                                old_inputs=struct(old_inputs if old_inputs is not None else olds),
                                                news=struct(news), ignoreChanges=list(ignore)))

    def create(self, typ, name, inputs, preview=False):
        reply = self.stub.Create(proto.CreateRequest(urn=self.urn(typ, name), properties=struct(inputs),
                                                     preview=preview))
        return reply.id, plain(reply.properties), secret_keys(reply.properties)

    def read(self, typ, name, rid, state=None, inputs=None):
        reply = self.stub.Read(proto.ReadRequest(urn=self.urn(typ, name), id=rid, properties=struct(state),
                                                 inputs=struct(inputs)))
        return reply.id, plain(reply.properties), plain(reply.inputs)

    def update(self, typ, name, rid, olds, news, old_inputs=None):
        reply = self.stub.Update(proto.UpdateRequest(urn=self.urn(typ, name), id=rid, olds=struct(olds),
                                                     news=struct(news), old_inputs=struct(old_inputs or olds)))
        return plain(reply.properties)

    def delete(self, typ, name, rid, state):
        self.stub.Delete(proto.DeleteRequest(urn=self.urn(typ, name), id=rid, properties=struct(state)))

    def invoke(self, tok, args):
        reply = self.stub.Invoke(proto.InvokeRequest(tok=tok, args=struct(args)))
        return plain(getattr(reply, "return")), [(f.property, f.reason) for f in reply.failures]

    def up(self, typ, name, inputs):
        """Check then create, as `pulumi up` does for a new resource: (id, outputs, checked inputs)."""
        checked, failures = self.check(typ, name, inputs)
        assert not failures, failures
        rid, outputs, _ = self.create(typ, name, checked)
        return rid, outputs, checked


__all__ = ["Plugin", "UNKNOWN"]
