"""Identifiers: a type prefix plus a ULID, so ids sort by creation time and say what they name."""

from __future__ import annotations

import base64
import os
import time

# base32's alphabet, letter for letter, to Crockford's (no I, L, O, U: nothing to misread)
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def ulid_text(millis: int, random80: int) -> str:
    """The 26 Crockford base32 characters of the ULID with these 48 bits of milliseconds and 80 random
    bits: the 128 bits padded to 160, base32-encoded, the padding's six leading characters cut."""
    value = (millis << 80) | random80
    return base64.b32encode(value.to_bytes(20, "big"))[6:].translate(_TO_CROCKFORD).decode("ascii")


def ulid() -> str:
    """A 26-character ULID: 48 bits of milliseconds, 80 random bits, Crockford base32."""
    return ulid_text(int(time.time() * 1000), int.from_bytes(os.urandom(10), "big"))


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"
