"""Each account's log as an RFC 6962 Merkle tree: leaf ``i`` is the entry with ``seq = i + 1``, its leaf data
the 32 bytes of the entry's hash.

The tree is kept as the hashes of its complete subtrees, the way Go's ``sumdb/tlog`` stores it. The subtree of
``2**level`` leaves starting at leaf ``index * 2**level`` is complete once the entry with
``seq = (index + 1) << level`` is appended, so that entry's row in ``activity_tree`` holds the hashes of every
subtree it completes (levels 1 and up; level 0 is the entry's own leaf hash). Appending needs only the
*frontier* — the complete subtrees along the tree's right edge, at most one per bit of the size — which the
account's head row carries, so an append adds one short row half of the time and never reads the tree.

This module is arithmetic only; ``log.tree_store`` reads and writes the rows. Checking proofs is the auditor's
code (``log.verify_export``), kept apart on purpose.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from activitylog.log.verify_export import leaf_hash, node_hash

HASH = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Node = tuple[int, int]  # (level, index): the complete subtree of 2**level leaves from index * 2**level


def split(blob: bytes | None) -> list[bytes]:
    blob = blob or b""
    return [blob[i : i + HASH] for i in range(0, len(blob), HASH)]


def append(frontier: list[bytes], size: int, entry_hash_hex: str) -> tuple[list[bytes], bytes]:
    """Add leaf ``size`` (0-based) to a tree of ``size`` leaves. Returns the new frontier and the hashes of
    the subtrees this leaf completes, levels 1 and up (``activity_tree``'s row at ``seq = size + 1``)."""
    frontier = list(frontier)
    return frontier, extend(frontier, size, entry_hash_hex)


def extend(frontier: list[bytes], size: int, entry_hash_hex: str) -> bytes:
    """``append`` on ``frontier`` itself (no copy): for a walk that adds every leaf in turn."""
    h = leaf_hash(entry_hash_hex)
    if not size & 1:  # half of all leaves complete no subtree
        frontier.append(h)
        return b""
    completed: list[bytes] = []
    while size & 1:
        h = node_hash(frontier.pop(), h)
        completed.append(h)
        size >>= 1
    frontier.append(h)
    return b"".join(completed)


def fold(parts: list[bytes]) -> bytes:
    """The hash of a range from its complete subtrees, largest first (RFC 6962 splits at the largest power
    of two, so the rightmost pieces join first)."""
    if not parts:
        return EMPTY_ROOT
    h = parts[-1]
    for left in reversed(parts[:-1]):
        h = node_hash(left, h)
    return h


def parts(lo: int, hi: int) -> list[Node]:
    """The complete subtrees that make up leaves ``[lo, hi)``, largest first. Every range an RFC 6962 proof
    asks for starts at a multiple of its largest piece, so the pieces are aligned."""
    nodes: list[Node] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        while lo & ((1 << level) - 1):  # not aligned: a smaller piece first
            level -= 1
        nodes.append((level, lo >> level))
        lo += 1 << level
    return nodes


def _largest_power_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes form leaf ``index``'s audit path in the tree of ``size`` (RFC 9162
    2.1.3.1), bottom up."""
    path: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_below(hi - lo)
        if index < lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo += k
    return path[::-1]


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes prove the tree of ``old`` a prefix of the tree of ``new`` (RFC 9162
    2.1.4.1), in proof order."""
    path: list[tuple[int, int]] = []
    lo, hi, whole = 0, new, True
    while True:
        if old == hi:
            if not whole:
                path.append((lo, hi))
            break
        k = _largest_power_below(hi - lo)
        if old <= lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo, whole = lo + k, False
    return path[::-1]


def nodes_of(ranges: Iterable[tuple[int, int]]) -> set[Node]:
    return {node for lo, hi in ranges for node in parts(lo, hi)}


def stored_at(node: Node) -> int:
    """The seq whose entry completes this subtree (its row holds the hash, or it is the leaf itself)."""
    level, index = node
    return (index + 1) << level
