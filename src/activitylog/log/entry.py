"""The API shape of an activity entry, from a stored row."""

from __future__ import annotations

import json
from typing import Any

import pydantic_core
from sqlalchemy import Row

from activitylog.log.chain import format_instant
from activitylog.log.verify_export import CHAIN_VERSION, is_erased


def entry_to_api(row: Any) -> dict[str, Any]:
    """Turn an ``activity_entries`` row (ORM object or Core row) into the contract's entry object; a v2
    entry (personal data committed) adds ``chain_version``, ``salts`` and ``erased``."""
    if isinstance(row, Row):
        row = row._mapping
        get = row.__getitem__
    else:
        get = row.__getattribute__
    entry = {
        "account_id": get("account_id"),
        "seq": get("seq"),
        "occurred_at": format_instant(get("occurred_at")),
        "actor": {"type": get("actor_type"), "id": get("actor_id"), "name": get("actor_name")},
        "on_behalf_of": get("on_behalf_of"),
        "ip": get("ip"),
        "user_agent": get("user_agent"),
        "action": get("action"),
        "resource": {"type": get("resource_type"), "id": get("resource_id"), "name": get("resource_name")},
        "summary": get("summary"),
        "changes": _parsed(get("changes")),
        "request_id": get("request_id"),
        "prev_hash": get("prev_hash"),
        "hash": get("hash"),
    }
    salts = get("salts")
    if salts is None:  # canonical form v1: the contract's part 1 shape, unchanged
        return entry
    parsed = _parsed(salts)
    entry.update(chain_version=CHAIN_VERSION, salts=parsed, erased=is_erased(parsed))
    return entry


def _parsed(text: str) -> Any:
    """``json.loads`` of a stored JSON column, by pydantic's parser (a third of the time); the stdlib's
    for the text that parser refuses and ``json.loads`` takes (an escaped lone surrogate)."""
    try:
        return pydantic_core.from_json(text)
    except ValueError:
        return json.loads(text)
