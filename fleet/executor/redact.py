"""Secrets never reach a log line or an error: which values are secret, and hiding them in text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

REDACTED = "[secret]"
SECRET_KEY_WORDS = ("secret", "password", "privatekey")


def _secrets(*inputs: Mapping | None) -> list[str]:
    """Values that must never be printed: stdin, the private key and anything under a secret-sounding key."""
    found: list[str] = []

    def walk(value: object, secret: bool) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, secret or any(word in str(key).lower() for word in SECRET_KEY_WORDS))
        elif isinstance(value, list):
            for item in value:
                walk(item, secret)
        elif secret and isinstance(value, str):
            found.append(value)

    for item in inputs:
        if item:
            walk(item.get("stdin"), True)
            walk(item, False)
    return found


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (and every longer line of a multi-line one, such as a key) with [secret].
    Very short values are left alone: hiding "y" would hide every y in the output and protect nothing."""
    pieces = set()
    for secret in secrets:
        if len(secret.strip()) >= 4:
            pieces.add(secret.strip())
        pieces |= {line.strip() for line in secret.splitlines() if len(line.strip()) >= 8}
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, REDACTED)
    return text
