"""The console's session: the signed-in API key, kept in the browser only encrypted.

The cookie holds AES-256-GCM(key, nonce, {"k": api key, "s": session id, "iat": issued at}),
with the cookie's name as associated data, under a key derived from VOUCHER_CONSOLE_SECRET.
Nothing in it can be read or changed without the secret; it is HttpOnly (no page script sees
it), SameSite=Strict (no other site's page sends it) and Secure over https. A session ends
`console_session_hours` after sign-in (the cookie's Max-Age says the same to the browser), or
at once when its key stops working: every page asks the API who the key is. Sign-out records
the session as ended (console/ended.py), so a copy of the cookie stops working with it.

CSRF: every form carries `csrf_token` = HMAC(secret, "csrf" + session id), checked on every
POST. The sign-in form, before any session, carries HMAC(secret, "signin" + a random value in
a cookie of its own), so another site cannot sign a browser in with a key of its choosing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_COOKIE = "voucher_console"
#: How far ahead of a process's clock a session may have been sealed by another's.
CLOCK_SKEW = timedelta(seconds=60)
SIGN_IN_COOKIE = "voucher_console_sign_in"
LANGUAGE_COOKIE = "voucher_console_language"


@dataclass(frozen=True)
class Session:
    api_key: str
    session_id: str
    issued_at: datetime
    #: Its end as sealed at sign-in (a cookie sealed before that: its sign-in and today's
    #: lifetime): a longer `console_session_hours` set later does not lengthen it, and the
    #: record of its sign-out is kept until then. `open` also ends it by today's lifetime.
    expires_at: datetime


class Sessions:
    """Seals and opens session cookies, and makes and checks CSRF tokens, with one secret."""

    def __init__(self, secret: bytes, lifetime: timedelta) -> None:
        self._aead = AESGCM(hashlib.sha256(b"voucher console session|" + secret).digest())
        self._mac_key = hashlib.sha256(b"voucher console csrf|" + secret).digest()
        self.lifetime = lifetime

    @classmethod
    def random(cls, lifetime: timedelta) -> Sessions:
        return cls(secrets.token_bytes(32), lifetime)

    def seal(self, api_key: str, now: datetime) -> str:
        issued = int(now.timestamp())
        payload = json.dumps({"k": api_key, "s": secrets.token_urlsafe(16), "iat": issued,
                              "exp": issued + int(self.lifetime.total_seconds())})
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, payload.encode(), SESSION_COOKIE.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, cookie: str | None, now: datetime) -> Session | None:
        """The session in `cookie`, or None when there is none, it was not sealed with this
        secret, was changed, or has expired."""
        if not cookie or len(cookie) > 4096:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            payload = json.loads(self._aead.decrypt(raw[:12], raw[12:], SESSION_COOKIE.encode()))
            issued = datetime.fromtimestamp(int(payload["iat"]), tz=now.tzinfo)
            # A cookie sealed before "exp" (December 2026) ends by today's lifetime.
            sealed = (datetime.fromtimestamp(int(payload["exp"]), tz=now.tzinfo) if "exp" in payload
                      else issued + self.lifetime)
            session = Session(str(payload["k"]), str(payload["s"]), issued, sealed)
        except (ValueError, InvalidTag, KeyError, TypeError, OverflowError, OSError):
            return None
        # Signed in "in the future" by up to a minute: another process's clock a little ahead
        # (its time is rounded down to the second, too). A fresh session had been refused, and
        # its cookie deleted, on the next page served by a process a moment behind (an
        # independent review, December 2026).
        if not issued - CLOCK_SKEW <= now < min(sealed, issued + self.lifetime):
            return None
        return session

    def csrf_token(self, session_id: str) -> str:
        return self._mac("csrf|" + session_id)

    def sign_in_token(self, nonce: str) -> str:
        return self._mac("signin|" + nonce)

    def _mac(self, text: str) -> str:
        return hmac.new(self._mac_key, text.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def same(given: object, expected: str) -> bool:
        return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())
