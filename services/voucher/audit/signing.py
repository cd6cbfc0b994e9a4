"""Ed25519 keys for checkpoints, from settings. Development and tests sign with a published
seed (anyone can forge those checkpoints); production must configure its own."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.voucher.settings import Settings

#: Published on purpose: checkpoints signed with it prove nothing. Production refuses to start
#: without VOUCHER_AUDIT_SIGNING_KEY.
DEVELOPMENT_SEED = hashlib.sha256(b"voucher-service development checkpoint key (insecure)").digest()
DEVELOPMENT_PUBLIC_KEY = Ed25519PrivateKey.from_private_bytes(DEVELOPMENT_SEED).public_key().public_bytes(
    Encoding.Raw, PublicFormat.Raw)


def key_id_of(public_bytes: bytes) -> str:
    """The first 16 bytes of a public key's SHA-256, hex: names the key in checkpoints."""
    return hashlib.sha256(public_bytes).hexdigest()[:32]


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey
    is_development: bool
    #: Public keys that signed checkpoints before this one (VOUCHER_AUDIT_RETIRED_PUBLIC_KEYS).
    retired: tuple[bytes, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer:
        # Production settings never hold the published seed, as the key or among the retired
        # ones (settings.py refuses both as it reads them).
        retired = tuple(base64.b64decode(key) for key in settings.audit_retired_public_keys)
        if settings.audit_signing_key is None:
            return cls(Ed25519PrivateKey.from_private_bytes(DEVELOPMENT_SEED), True, retired)
        seed = base64.b64decode(settings.audit_signing_key.get_secret_value())
        return cls(Ed25519PrivateKey.from_private_bytes(seed), seed == DEVELOPMENT_SEED, retired)

    @property
    def verifying_keys(self) -> dict[str, bytes]:
        """Every public key a stored checkpoint may be checked with, by key id: this one's and
        the retired ones'."""
        return {**{key_id_of(key): key for key in self.retired}, self.key_id: self.public_bytes}

    @property
    def public_bytes(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_bytes)

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.private.sign(message)).decode()


def verify(public_key: bytes, message: bytes, signature_b64: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(base64.b64decode(signature_b64), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def new_seed() -> str:
    """A fresh signing key for VOUCHER_AUDIT_SIGNING_KEY (base64 of a 32-byte seed)."""
    import os

    return base64.b64encode(os.urandom(32)).decode()
