"""Which values of an entry are a subscriber's personal data, and what erasing them leaves.

An entry holding any of them is written in canonical form v2 (API.md part 2, "Personal data in the chain";
the form itself: ``verify_export.committed``): each such value gets a random 16-byte salt and enters the hash
only as ``SHA-256(salt || value)``. Erasing a value deletes the value and its salt and keeps the commitment,
so the hash still verifies and the commitment reveals nothing (the salt was random).

The personal values, named by JSON Pointer into the chained fields:

- a contact's address and names (``changes`` of ``email``, ``first_name``, ``last_name``, both sides) and
  the contact entry's ``resource_name`` (the address);
- a suppressed address: an ``address`` entry's ``resource_id`` and ``resource_name``, its ``email`` change;
- every address listed under ``changes.address_ids`` (a bulk entry's affected addresses);
- what a person typed that may name a subscriber: a segment condition's ``value`` on a contact's address or
  names (``changes.conditions``), and the ``q`` and ``resource_id`` of a stream's or a saved view's activity
  filter (``changes.filter``; an address's resource id is the address).
"""

from __future__ import annotations

import secrets
from typing import Any

from activitylog.log.verify_export import SALT_HEX, commitment, locate

PERSONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "contact": ("email", "first_name", "last_name"),
    "address": ("email",),
}
ADDRESS_ID_TYPES = frozenset({"address"})  # resource types whose id is the address itself
ADDRESS_LISTS = ("address_ids",)
SIDES = ("from", "to")
CONDITION_FIELDS = frozenset(PERSONAL_FIELDS["contact"])  # a segment condition on these holds their value
FILTERED_TYPES = frozenset({"saved_view", "stream"})  # resources holding an activity filter
FILTER_KEYS = ("q", "resource_id")  # the filters whose value may name a subscriber


def pointer(*tokens: str) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def personal_paths(fields: dict[str, Any]) -> list[str]:
    """The paths of an entry's personal values (none: the entry stays v1)."""
    rtype, changes = fields["resource_type"], fields["changes"]
    paths = []
    if rtype in ADDRESS_ID_TYPES:
        paths.append("/resource_id")
    if rtype in PERSONAL_FIELDS and fields["resource_name"] is not None:
        paths.append("/resource_name")
    for key in PERSONAL_FIELDS.get(rtype, ()):
        diff = changes.get(key)
        if isinstance(diff, dict):
            paths.extend(pointer("changes", key, side) for side in SIDES if diff.get(side) is not None)
    for key in ADDRESS_LISTS:
        for side, values in _sides(changes, key):
            if isinstance(values, list):
                paths.extend(
                    pointer("changes", key, side, str(i)) for i, v in enumerate(values) if isinstance(v, str)
                )
    if rtype == "segment":
        paths.extend(_condition_paths(changes, "conditions"))
    if rtype in FILTERED_TYPES:
        paths.extend(_filter_paths(changes, "filter"))
    return paths


def _sides(changes: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    """``(side, value)`` of the diff ``changes[key]``, both sides (none when it is not a diff)."""
    diff = changes.get(key)
    return [(side, diff.get(side)) for side in SIDES] if isinstance(diff, dict) else []


def _condition_paths(changes: dict[str, Any], key: str) -> list[str]:
    """The values of the segment conditions, on either side of ``changes[key]``, that hold a contact's
    address or names."""
    return [
        pointer("changes", key, side, str(i), "value")
        for side, conditions in _sides(changes, key)
        if isinstance(conditions, list)
        for i, c in enumerate(conditions)
        if isinstance(c, dict) and c.get("field") in CONDITION_FIELDS and isinstance(c.get("value"), str)
    ]


def _filter_paths(changes: dict[str, Any], key: str) -> list[str]:
    """The filter values, on either side of ``changes[key]``, that may name a subscriber."""
    return [
        pointer("changes", key, side, f)
        for side, shown in _sides(changes, key)
        if isinstance(shown, dict)
        for f in FILTER_KEYS
        if isinstance(shown.get(f), str)
    ]


def new_salts(fields: dict[str, Any]) -> dict[str, Any] | None:
    """A fresh random salt for each personal value of the entry, or None (v1) when it holds none."""
    paths = personal_paths(fields)
    if not paths:
        return None
    randomness = secrets.token_hex(SALT_HEX // 2 * len(paths))  # one read of the system's randomness
    return {path: randomness[i * SALT_HEX : (i + 1) * SALT_HEX] for i, path in enumerate(paths)}


def value_at(fields: dict[str, Any], path: str) -> Any:
    node, key = locate(fields, path)
    return node[key]


def names(value: Any, address: str) -> bool:
    """Whether a personal value is the (normalized) ``address``: typed values (a segment's condition, a
    filter's ``q``) may differ from it in case and spaces."""
    return isinstance(value, str) and value.strip().lower() == address


def live_values(fields: dict[str, Any], salts: dict[str, Any]) -> dict[str, Any]:
    """The personal values still held (not erased), by path."""
    return {path: value_at(fields, path) for path, salt in salts.items() if isinstance(salt, str)}


def erase(
    fields: dict[str, Any], salts: dict[str, Any], paths: list[str], pseudonym: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The entry's fields and salts once the values at ``paths`` are erased: each salt becomes
    ``{"commitment": …}`` and the value null, except the resource's id, which becomes ``pseudonym`` (the same
    for every entry of the erased person, so the entries still say to which resource it was done)."""
    fields = {**fields, "changes": _copy(fields["changes"])}
    salts = dict(salts)
    for path in paths:
        salt = salts[path]
        if not isinstance(salt, str):
            continue  # erased already
        node, key = locate(fields, path)
        salts[path] = {"commitment": commitment(salt, node[key])}
        node[key] = pseudonym if path == "/resource_id" else None
    return fields, salts


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
