"""Page cursors: the opaque ``cursor`` the API hands out and takes back, one codec for every listing.

A cursor is URL-safe base64 (unpadded) of a one-field JSON object, ``{"seq": 41}`` for the log and
``{"after": "lst_…"}`` for resource lists; anything that does not decode to the field asked for is refused
the same way, as a cursor this API did not issue.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from activitylog.errors import InvalidInput

REFUSED = "not a cursor this API issued"


def encode(field: str, value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({field: value}).encode()).decode().rstrip("=")


def decode(field: str, cursor: str) -> Any:
    """The value of ``field`` in ``cursor``, which must be exactly what :func:`encode` makes of it (no other
    field, no other spelling); its type is the caller's to check."""
    try:
        value = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))[field]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        raise InvalidInput("cursor", REFUSED) from None
    if encode(field, value) != cursor:
        raise InvalidInput("cursor", REFUSED)
    return value
