"""Secrets: argon2 for passwords; typed, checksummed, SHA-256-hashed API keys; random session tokens.

API keys carry 178 bits of randomness, so a fast hash is safe to store and to look up by; the checksum lets
a typo or a truncated paste be rejected before any database work, and the ``alk_`` prefix lets secret
scanners recognise a leaked key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_ALPHABET = string.ascii_letters + string.digits
KEY_PREFIX = "alk_"
_BODY_LEN = 30
_CHECK_LEN = 6
_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """What an unknown user's password is checked against; made on first use, not on import (a hash costs
    as much as a sign-in, and most processes never check a password)."""
    return _hasher.hash("timing equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user exists (an unknown user checks a dummy hash)."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _base62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECK_LEN)


def new_api_key() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LEN))
    return f"{KEY_PREFIX}{body}{_checksum(body)}"


def api_key_well_formed(key: str) -> bool:
    if not key.startswith(KEY_PREFIX) or len(key) != len(KEY_PREFIX) + _BODY_LEN + _CHECK_LEN:
        return False
    body, check = key[len(KEY_PREFIX) : -_CHECK_LEN], key[-_CHECK_LEN:]
    return all(c in _ALPHABET for c in body) and hmac.compare_digest(check, _checksum(body))


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 6]


def new_token() -> str:
    return secrets.token_urlsafe(32)
