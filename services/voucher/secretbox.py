"""Secrets the service must read back (webhook signing secrets, and the stored answers that
show them) are kept sealed: AES-256-GCM under `VOUCHER_SECRETS_KEY`, bound to what they are
for (the endpoint, the Idempotency-Key), so a copy of the database — a backup, a replica, a
dump handed to a support engineer — does not let anyone sign a delivery.

A sealed value is text: `sealed:1:<key id>:<nonce, ciphertext and tag, base64url>`. The key
id (8 hex characters of a hash of the key, never the key) names the key that sealed it, so a
change of key keeps the old one listed in `VOUCHER_SECRETS_RETIRED_KEYS` until `voucher
secrets reseal` has sealed everything again under the new one. A value without the prefix was
stored before sealing existed: it is read as it is, and `voucher secrets reseal` seals it.

Development and tests seal with a published key (a copy of their database proves nothing);
production refuses to start without a key of its own (settings)."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.voucher.settings import Settings

PREFIX = "sealed:1:"
#: Published on purpose: what it seals is as readable as plain text. Production refuses it.
DEVELOPMENT_KEY = hashlib.sha256(b"voucher-service development secrets key (insecure)").digest()
_NONCE = 12
_STANDARD = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_URLSAFE = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_BODY = re.compile(r"[A-Za-z0-9_-]+")  # as `seal` writes it: base64url, unpadded


class CannotOpen(Exception):
    """A sealed value that no configured key opens: sealed under a key that is not (or no
    longer) configured, sealed for something else, or altered."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"voucher secrets key id\x00" + key).hexdigest()[:8]


def decode_key(text: str, setting: str) -> bytes:
    """A key as the settings take it: 32 bytes, base64 (standard or URL-safe alphabet)."""
    cleaned = text.strip()
    try:
        raw = _strict_b64(cleaned)
    except ValueError as exc:
        raise ValueError(f"{setting} must be base64") from exc
    if len(raw) != 32:
        raise ValueError(f"{setting} must be a 32-byte key, base64-encoded (`voucher secrets keygen`)")
    return raw


def _strict_b64(text: str) -> bytes:
    """Base64 in either alphabet, padded or not; any other character is refused, never skipped."""
    if _STANDARD.fullmatch(text):
        altchars = None
    elif _URLSAFE.fullmatch(text):
        altchars = b"-_"
    else:
        raise ValueError("not base64")
    bare = text.rstrip("=")
    try:
        return base64.b64decode(bare + "=" * (-len(bare) % 4), altchars=altchars, validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc


def new_key() -> str:
    """A fresh key for VOUCHER_SECRETS_KEY."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def is_sealed(value: str | bytes) -> bool:
    return (value.decode("ascii", "replace") if isinstance(value, bytes) else value).startswith(PREFIX)


@dataclass(frozen=True)
class Keyring:
    current: bytes = field(repr=False)
    retired: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    @property
    def is_development(self) -> bool:
        return self.current == DEVELOPMENT_KEY

    def _keys(self) -> dict[str, bytes]:
        return {**{key_id(k): k for k in self.retired}, key_id(self.current): self.current}

    def seal(self, plaintext: str, purpose: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self.current).encrypt(nonce, plaintext.encode("utf-8"), purpose.encode("utf-8"))
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")
        return f"{PREFIX}{self.current_id}:{body}"

    def open(self, value: str, purpose: str) -> str:
        """The plain text of a sealed value; a value stored before sealing, as it is."""
        if not value.startswith(PREFIX):
            return value
        kid, _, body = value.removeprefix(PREFIX).partition(":")
        key = self._keys().get(kid)
        if key is None:
            raise CannotOpen(f"sealed under key {kid}, which is neither VOUCHER_SECRETS_KEY nor one of "
                                    "VOUCHER_SECRETS_RETIRED_KEYS")
        try:
            if not _BODY.fullmatch(body):
                raise ValueError("not base64url")
            raw = _strict_b64(body)
            return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], purpose.encode("utf-8")).decode("utf-8")
        except (InvalidTag, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise CannotOpen(f"a value sealed under key {kid} does not open: altered, or sealed for "
                                    "something else") from exc

    def seal_bytes(self, plaintext: bytes, purpose: str) -> bytes:
        return self.seal(base64.b64encode(plaintext).decode("ascii"), purpose).encode("ascii")

    def open_bytes(self, value: bytes, purpose: str) -> bytes:
        if not is_sealed(value):
            return value
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError as exc:
            raise CannotOpen("a sealed value that is not text: altered") from exc
        try:
            return _strict_b64(self.open(text, purpose))
        except ValueError as exc:
            raise CannotOpen("a sealed value that does not hold what was sealed: altered") from exc

    def current_for(self, value: str | bytes) -> bool:
        """Whether `value` is sealed under the current key (nothing for `reseal` to do)."""
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        return text.startswith(f"{PREFIX}{self.current_id}:")


@functools.lru_cache(maxsize=8)
def _keyring(current: str | None, retired: tuple[str, ...]) -> Keyring:
    return Keyring(DEVELOPMENT_KEY if current is None else decode_key(current, "VOUCHER_SECRETS_KEY"),
                   tuple(decode_key(k, "VOUCHER_SECRETS_RETIRED_KEYS") for k in retired))


def keyring(settings: Settings) -> Keyring:
    """The keys `settings` configure (the development key when none is)."""
    current = settings.secrets_key.get_secret_value() if settings.secrets_key is not None else None
    return _keyring(current, tuple(k.get_secret_value() for k in settings.secrets_retired_keys))


def webhook_secret_purpose(endpoint_id: object) -> str:
    """What a webhook endpoint's secrets are sealed for: that endpoint, and only it."""
    return f"webhook_endpoint.secret:{endpoint_id}"


def stored_answer_purpose(principal_id: object, key: str) -> str:
    """What a stored answer is sealed for: its principal's Idempotency-Key."""
    return f"idempotency_record.response_body:{principal_id}:{key}"
