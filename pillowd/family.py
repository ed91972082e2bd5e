"""Signs and checks a family's events, so that only a partner can send a partner's hug."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets

from .errors import PillowError

# Where `pillowd pair` writes the key: one more entry in the pillow's queue-sas.toml
# (the systemd credential azure-queue-sas). An underscore is not allowed in an Azure
# queue name, so the entry can never be mistaken for a queue's token.
TOKENS_ENTRY = "family_key"
_KEY_BYTES = 32
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


class FamilyKeyError(PillowError, ValueError):
    """The family key is not one `pillowd pair` wrote."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def canonical(event: dict) -> bytes:
    """The bytes a signature covers: the event without its `sig`, as compact JSON
    with sorted keys, so that key order and spacing on the way do not matter."""
    fields = {k: v for k, v in event.items() if k != "sig"}
    return json.dumps(fields, ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")


class FamilyKey:
    """The secret every pillow of one family shares (HMAC-SHA256)."""

    def __init__(self, secret: bytes):
        if len(secret) < 16:
            raise FamilyKeyError("the family key is too short (pillowd pair writes 32 bytes)")
        self._secret = secret

    @classmethod
    def generate(cls) -> "FamilyKey":
        return cls(secrets.token_bytes(_KEY_BYTES))

    @classmethod
    def from_text(cls, text: str) -> "FamilyKey":
        """The key as `text()` wrote it (base64url); errors never quote it."""
        text = text.strip()
        # Strictly: base64 decoding skips what is not in its alphabet, so a character
        # slipped in by hand would quietly make another key, and every partner's hug
        # would play as a stranger's.
        if not _BASE64URL.fullmatch(text):
            raise FamilyKeyError("the family key is not base64url text")
        try:
            secret = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except ValueError:
            raise FamilyKeyError("the family key is not base64url text") from None
        return cls(secret)

    def text(self) -> str:
        return _b64(self._secret)

    def sign(self, event: dict) -> str:
        """The `sig` for *event* (any `sig` already in it is ignored)."""
        return _b64(hmac.new(self._secret, canonical(event), hashlib.sha256).digest())

    def signed(self, event: dict) -> dict:
        """*event* with its `sig`."""
        return {**event, "sig": self.sign(event)}

    def verify(self, event: dict) -> bool:
        """True when *event* carries a `sig` this family made for exactly its fields."""
        sig = event.get("sig")
        if not isinstance(sig, str):
            return False
        try:
            expected = self.sign(event)
        except (TypeError, ValueError):  # not JSON data
            return False
        return hmac.compare_digest(sig.encode("utf-8", "surrogatepass"),
                                   expected.encode("ascii"))

    def __repr__(self) -> str:  # never the secret, not even in a traceback
        return "FamilyKey(…)"
