"""Secrets at rest: AES-GCM under GATE_SECRET_KEY, a deployment secret kept outside the database.

Bridge HMAC keys and pass-signing private keys are sealed with it, each with the
record it belongs to as associated data (a sealed value copied onto another record
does not open). Rotating the secret: scripts/reseal_keys.py, docs/passes.md §4.
"""

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class KeyBox:
    def __init__(self, secret: str):
        self.aead = AESGCM(hashlib.sha256(b"xiaoqu-bridge-keys/1" + secret.encode()).digest())

    def seal(self, key: bytes, owner: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self.aead.encrypt(nonce, key, owner.encode())

    def open(self, sealed: bytes, owner: str) -> bytes:
        return self.aead.decrypt(sealed[:12], sealed[12:], owner.encode())

    def reseal(self, sealed: bytes, owner: str, old: "KeyBox") -> bytes | None:
        """`sealed` under `old` -> the same key sealed here; None when it already is (so a
        re-run after an interruption is harmless)."""
        try:
            return self.seal(old.open(sealed, owner), owner)
        except InvalidTag:
            self.open(sealed, owner)  # raises unless sealed under this box already
            return None
