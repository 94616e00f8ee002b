"""The TLS stand-in over gRPC: keys the program can use, private parts secret, any key setting replaces."""
from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from pulumi.runtime import proto

from .plugin import Plugin

KEY = "tls:index/privateKey:PrivateKey"
SECRET = {"privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh"}


@pytest.fixture(scope="module")
def tls():
    plugin = Plugin("tls")
    yield plugin
    plugin.close()


@pytest.mark.parametrize("inputs,openssh_type", [({"algorithm": "ED25519"}, "ssh-ed25519"),
                                                 ({"algorithm": "RSA", "rsaBits": 2048}, "ssh-rsa"),
                                                 ({"algorithm": "ECDSA", "ecdsaCurve": "P256"}, "ecdsa-sha2-nistp256")])
def test_keys_are_real_consistent_and_their_private_parts_secret(tls, inputs, openssh_type):
    checked, failures = tls.check(KEY, "host-key", inputs)
    assert not failures
    rid, outputs, secret = tls.create(KEY, "host-key", checked)
    assert secret == SECRET
    assert outputs["publicKeyOpenssh"].startswith(openssh_type + " ") and outputs["publicKeyOpenssh"].endswith("\n")
    private = serialization.load_ssh_private_key(outputs["privateKeyOpenssh"].encode(), None)
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert public.decode() == outputs["publicKeyOpenssh"].strip()
    pem = serialization.load_pem_private_key(outputs["privateKeyPem"].encode(), None)
    assert pem.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH) == public
    blob = base64.b64decode(public.split()[1])
    assert outputs["publicKeyFingerprintSha256"] == "SHA256:" + base64.b64encode(
        hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert rid == hashlib.sha1(outputs["publicKeyPem"].encode()).hexdigest()
    assert tls.read(KEY, "host-key", rid, outputs, checked)[0] == rid        # lives in the state only
    preview_id, planned, _ = tls.create(KEY, "host-key", checked, preview=True)
    assert preview_id == "" and planned["publicKeyOpenssh"].__class__.__name__ == "_Unknown"


def test_defaults_and_validation(tls):
    checked, _ = tls.check(KEY, "k", {"algorithm": "RSA"})
    assert checked["rsaBits"] == 2048 and checked["ecdsaCurve"] == "P224"
    assert tls.check(KEY, "k", {"algorithm": "DSA"})[1] == [
        ("", 'Attribute algorithm value must be one of: ["RSA" "ECDSA" "ED25519"], got: "DSA". '
             "Examine values at 'k.algorithm'.")]
    assert "The argument \"algorithm\" is required" in tls.check(KEY, "k", {})[1][0][1]


@pytest.mark.parametrize("prop,old,new", [("algorithm", "ED25519", "RSA"), ("rsaBits", 2048, 4096),
                                          ("ecdsaCurve", "P224", "P256")])
def test_any_key_setting_replaces(tls, prop, old, new):
    olds = {"algorithm": "RSA", "rsaBits": 2048, "ecdsaCurve": "P224", prop: old}
    diff = tls.diff(KEY, "k", olds, {**olds, prop: new})
    assert diff.changes == proto.DiffResponse.DIFF_SOME and list(diff.replaces) == [prop]
