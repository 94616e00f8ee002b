"""`pulumi-resource-tls` stand-in: `tls:index/privateKey:PrivateKey` made with `cryptography`.

Outputs and their encodings follow terraform-provider-tls internal/provider/resource_private_key.go
and common_key.go: PEM (PKCS#1 for RSA, SEC1 for ECDSA, PKCS#8 for ED25519), the same key in PKCS#8,
OpenSSH private and public keys (public one newline-terminated), and the public key's MD5 and SHA-256
fingerprints. The private key outputs are Sensitive there, so they are secret here.
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..server import CheckFailed, Provider, Resource

VERSION = "5.6.2"        # pulumi_tls in requirements.txt
CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {"P224": ec.SECP224R1, "P256": ec.SECP256R1,
                                                     "P384": ec.SECP384R1, "P521": ec.SECP521R1}
ALGORITHMS = ("RSA", "ECDSA", "ED25519")


def generate(algorithm: str, rsa_bits: int, curve: str):
    if algorithm == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if algorithm == "ECDSA":
        return ec.generate_private_key(CURVES[curve]())
    return ed25519.Ed25519PrivateKey.generate()


def key_outputs(key, algorithm: str) -> dict[str, str]:
    none = serialization.NoEncryption()
    pem_format = {"RSA": serialization.PrivateFormat.TraditionalOpenSSL,
                  "ECDSA": serialization.PrivateFormat.TraditionalOpenSSL}.get(algorithm,
                                                                               serialization.PrivateFormat.PKCS8)
    public = key.public_key()
    # OpenSSH has no P224 format: terraform-provider-tls leaves the OpenSSH outputs empty for it.
    has_openssh = not (algorithm == "ECDSA" and isinstance(key.curve, ec.SECP224R1))
    openssh_public = (public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
                      if has_openssh else b"")
    blob = base64.b64decode(openssh_public.split()[1]) if has_openssh else b""
    md5 = hashlib.md5(blob).hexdigest()  # noqa: S324 - the fingerprint format, not a security use
    return {
        "privateKeyPem": key.private_bytes(serialization.Encoding.PEM, pem_format, none).decode(),
        "privateKeyPemPkcs8": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                none).decode(),
        "privateKeyOpenssh": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                               none).decode() if has_openssh else "",
        "publicKeyPem": public.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "publicKeyOpenssh": openssh_public.decode() + "\n" if has_openssh else "",
        "publicKeyFingerprintMd5": ":".join(md5[i:i + 2] for i in range(0, 32, 2)) if has_openssh else "",
        "publicKeyFingerprintSha256": ("SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
                                       if has_openssh else ""),
    }


class PrivateKey(Resource):
    token = "tls:index/privateKey:PrivateKey"
    computed = ("id", "privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh", "publicKeyPem", "publicKeyOpenssh",
                "publicKeyFingerprintMd5", "publicKeyFingerprintSha256")
    secret_outputs = ("privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh")

    def check(self, ctx, olds, news, seed):
        checked = super().check(ctx, olds, news, seed)
        # resource_private_key.go: rsa_bits defaults to 2048, ecdsa_curve to P224; algorithm is one of three.
        checked.setdefault("rsaBits", 2048)
        checked.setdefault("ecdsaCurve", "P224")
        failures = []
        if isinstance(checked.get("algorithm"), str) and checked["algorithm"] not in ALGORITHMS:
            failures.append(("algorithm", f'Attribute algorithm value must be one of: ["RSA" "ECDSA" "ED25519"], '
                                          f'got: "{checked["algorithm"]}"'))
        if isinstance(checked.get("ecdsaCurve"), str) and checked["ecdsaCurve"] not in CURVES:
            failures.append(("ecdsaCurve", 'Attribute ecdsa_curve value must be one of: ["P224" "P256" "P384" '
                                           f'"P521"], got: "{checked["ecdsaCurve"]}"'))
        if failures:
            raise CheckFailed(failures)
        return checked

    def create(self, ctx, inputs):
        algorithm = inputs["algorithm"]
        key = generate(algorithm, int(inputs.get("rsaBits") or 2048), inputs.get("ecdsaCurve") or "P224")
        outputs = key_outputs(key, algorithm)
        # common_key.go: the id is the SHA-1 of the public key PEM.
        rid = hashlib.sha1(outputs["publicKeyPem"].encode()).hexdigest()  # noqa: S324 - an id, as upstream
        return rid, {**inputs, **outputs, "id": rid}

    def update(self, ctx, rid, state, old_inputs, news):
        return {**state, **news}      # every input replaces; nothing to change in place

    def delete(self, ctx, rid, state):
        return None                   # the key lives only in the state


def make_provider() -> Provider:
    return Provider(package="tls", version=VERSION, resources={PrivateKey.token: PrivateKey()})
