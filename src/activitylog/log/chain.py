"""The hash chain, exactly as the contract defines it; standard library only, so anyone can re-check it.

``hash = sha256_hex(prev_hash + "\\n" + canonical)`` where ``canonical`` is the compact, key-sorted JSON of
the entry's fields (``CHAINED_FIELDS``); the first entry's ``prev_hash`` is 64 zeros.

Entries holding a subscriber's personal data use canonical form v2 (``salts`` given): each such value enters
the canonical object only as ``SHA-256(salt || value)``. The form is declared once, in the stdlib verifier
(``verify_export.committed``), which every writer and checker here uses.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from activitylog.log.verify_export import canonical_text, committed

GENESIS = "0" * 64

CHAINED_FIELDS = (
    "account_id",
    "seq",
    "occurred_at",
    "actor_type",
    "actor_id",
    "actor_name",
    "on_behalf_of",
    "ip",
    "user_agent",
    "action",
    "resource_type",
    "resource_id",
    "resource_name",
    "changes",
    "request_id",
)


canonical_json = canonical_text  # the one canonical JSON text: the stdlib verifier's


def format_instant(instant: datetime) -> str:
    """UTC, microseconds, ``Z``: the one string form of ``occurred_at``. From year 1000 on, ``isoformat``
    writes the same characters as the ``strftime`` below in half its time (a page of the log formats 50)."""
    if instant.tzinfo is not UTC:
        instant = instant.astimezone(UTC)
    if instant.year < 1000:
        return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return instant.isoformat(timespec="microseconds")[:-6] + "Z"


def entry_hash(prev_hash: str, fields: dict[str, Any], salts: dict[str, Any] | None = None) -> str:
    """Hash of one entry given its chained fields (``changes`` as an object, not text); v2 with ``salts``."""
    obj = {name: fields[name] for name in CHAINED_FIELDS}
    if salts is not None:
        obj = committed(obj, salts)
    payload = prev_hash + "\n" + canonical_json(obj)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
