"""The resources an entry changed besides its own, so ``resource_id`` finds every entry that touched one.

A bulk entry is one entry for many rows (a list's import creates its contacts, its delete takes them along);
the contract has it record counts **and affected ids**. The ids are in the entry's own ``changes``, under
``<resource_type>_ids`` (``{"contact_ids": {"from": null, "to": ["con_…", …]}}``), so the hash covers
them, an export carries them, and the index of them (``activity_affected``: account, resource id, seq) is
derived data that anyone can re-derive from the entry alone: ``record()`` writes it in the entry's
transaction and ``verify`` re-derives it.

``record()`` also makes sure the ids are there: every audited row an entry covers other than its resource
is listed under its type's key (``from`` the rows that existed before, ``to`` those that exist after), so a
new bulk path cannot leave a contact that only a count remembers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from activitylog.log.actions import RESOURCE_TYPES

SUFFIX = "_ids"
_KEYS = {f"{rtype}{SUFFIX}": rtype for rtype in RESOURCE_TYPES}


def ids_key(resource_type: str) -> str:
    return f"{resource_type}{SUFFIX}"


def affected(changes: dict[str, Any], own: tuple[str, str]) -> list[tuple[str, str]]:
    """The ``(resource_type, resource_id)`` pairs the entry's ``changes`` list besides ``own``, each once,
    sorted: what ``activity_affected`` holds for the entry."""
    found: set[tuple[str, str]] = set()
    for key, rtype in _KEYS.items():
        diff = changes.get(key)
        if not isinstance(diff, dict):
            continue
        for side in ("from", "to"):
            ids = diff.get(side)
            if isinstance(ids, list):
                found.update((rtype, i) for i in ids if isinstance(i, str) and i)
    found.discard(own)
    return sorted(found)


def listed(changes: dict[str, Any], rtype: str) -> set[str]:
    diff = changes.get(ids_key(rtype))
    if not isinstance(diff, dict):
        return set()
    return {i for side in ("from", "to") if isinstance(diff.get(side), list) for i in diff[side]}


def cover(changes: dict[str, Any], rows: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """``changes`` with every other row the entry covers listed under its type's key, unless the caller
    already listed it there. ``rows`` are ``(type, id, kind)`` in the order they happened, kind create,
    update or delete: ``from`` lists the rows that existed before the entry, ``to`` those that exist after."""
    seen: dict[tuple[str, str], tuple[bool, bool]] = {}
    for rtype, rid, kind in rows:
        existed = seen[(rtype, rid)][0] if (rtype, rid) in seen else kind != "create"
        seen[(rtype, rid)] = (existed, kind != "delete")
    before: dict[str, list[str]] = {}
    after: dict[str, list[str]] = {}
    for (rtype, rid), (existed, exists) in seen.items():
        if rid in listed(changes, rtype):
            continue
        if existed:
            before.setdefault(rtype, []).append(rid)
        if exists:
            after.setdefault(rtype, []).append(rid)
    added: dict[str, Any] = {}
    for rtype in sorted({*before, *after}):
        key = ids_key(rtype)
        if key in changes:
            raise ValueError(f"{key} in this entry's changes does not list every {rtype} it changes")
        added[key] = {"from": before.get(rtype), "to": after.get(rtype)}
    return {**changes, **added} if added else changes
