"""Reading an account's Merkle tree from the database: roots of any size, inclusion and consistency proofs.

Every proof is a list of leaf ranges (``log.tree``), each the fold of a few complete subtrees; the subtrees
are fetched in one round trip per kind (leaf hashes from ``activity_entries``, or from the tombstones in
``activity_purged`` for purged seqs; higher levels from ``activity_tree``), so a proof costs two indexed
queries whatever the tree's size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, Table, bindparam, select, union_all

from activitylog.db.models import ActivityEntry, ChainHead, PurgedEntry, TreeNodes
from activitylog.log import tree
from activitylog.log.tree import HASH, Node
from activitylog.log.verify_export import leaf_hash

_entries = cast(Table, ActivityEntry.__table__)
_nodes = cast(Table, TreeNodes.__table__)
_purged = cast(Table, PurgedEntry.__table__)
_heads = cast(Table, ChainHead.__table__)
CHUNK = 500  # seqs per IN list: well under SQLite's bound on parameters
UPPER = (
    256  # leaves: ranges and subtrees at least this big are kept from one batch of audit paths to the next
)

# A purged entry's leaf is its tombstone's hash (``log.purge``): the tree outlives the entries it covers.
_LEAVES = union_all(
    select(_entries.c.seq, _entries.c.hash).where(
        _entries.c.account_id == bindparam("account"), _entries.c.seq.in_(bindparam("seqs", expanding=True))
    ),
    select(_purged.c.seq, _purged.c.hash).where(
        _purged.c.account_id == bindparam("account"), _purged.c.seq.in_(bindparam("seqs", expanding=True))
    ),
)
_HIGHER = select(_nodes.c.seq, _nodes.c.hashes).where(
    _nodes.c.account_id == bindparam("account"), _nodes.c.seq.in_(bindparam("seqs", expanding=True))
)
_HEAD = select(_heads.c.seq, _heads.c.tree).where(_heads.c.account_id == bindparam("account"))


class TreeDamaged(RuntimeError):
    """A subtree the tree must hold is missing: the stored tree no longer matches the log."""


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: bytes


class TreeReader:
    """One account's tree, read through ``conn`` (a transaction scoped to that account)."""

    def __init__(self, conn: Connection, account_id: str) -> None:
        self.conn, self.account_id = conn, account_id

    def head(self) -> TreeHead:
        row = self.conn.execute(_HEAD, {"account": self.account_id}).one_or_none()
        if row is None or not row.seq:
            return TreeHead(0, tree.EMPTY_ROOT)
        return TreeHead(row.seq, tree.fold(tree.split(row.tree)))

    def subtrees(self, nodes: Iterable[Node]) -> dict[Node, bytes]:
        """The hashes of these complete subtrees."""
        wanted = set(nodes)
        by_seq: dict[int, list[Node]] = {}
        for node in wanted:
            by_seq.setdefault(tree.stored_at(node), []).append(node)
        leaves = sorted(tree.stored_at(n) for n in wanted if n[0] == 0)
        higher = sorted({tree.stored_at(n) for n in wanted if n[0] > 0})
        found: dict[Node, bytes] = {}
        for seqs in _chunks(leaves):
            for seq, entry_hash in self.conn.execute(_LEAVES, {"account": self.account_id, "seqs": seqs}):
                found[(0, seq - 1)] = leaf_hash(entry_hash)
        for seqs in _chunks(higher):
            for seq, blob in self.conn.execute(_HIGHER, {"account": self.account_id, "seqs": seqs}):
                for level, index in by_seq[seq]:
                    if level > 0:
                        found[(level, index)] = bytes(blob[(level - 1) * HASH : level * HASH])
        missing = wanted - found.keys()
        if missing:
            level, index = min(missing)
            raise TreeDamaged(
                f"the tree has no hash for leaves {index << level}..{((index + 1) << level) - 1}"
            )
        return found

    def hashes(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The hash of each leaf range (what a proof lists), in the given order."""
        known = self.subtrees(tree.nodes_of(ranges))
        return [tree.fold([known[n] for n in tree.parts(lo, hi)]) for lo, hi in ranges]

    def root(self, size: int) -> bytes:
        return self.hashes([(0, size)])[0] if size else tree.EMPTY_ROOT

    def inclusion(self, seq: int, size: int) -> list[bytes]:
        return self.hashes(tree.inclusion_ranges(seq - 1, size))

    def consistency(self, old: int, new: int) -> list[bytes]:
        return self.hashes(tree.consistency_ranges(old, new)) if old < new else []

    def audit_paths(
        self, seqs: Iterable[int], size: int, batch: int = 1000
    ) -> Iterator[tuple[int, list[bytes]]]:
        """Each seq's audit path in the tree of ``size``, in the given order, a batch at a time. Neighbouring
        leaves share most of their paths, so each distinct range is folded once per batch, and the large
        ranges a batch used (shared with the next batch's leaves) are kept for the next one."""
        folded: dict[tuple[int, int], bytes] = {}
        pending: list[int] = []

        def flush() -> Iterator[tuple[int, list[bytes]]]:
            plans = [(seq, tree.inclusion_ranges(seq - 1, size)) for seq in pending]
            todo = {r for _, ranges in plans for r in ranges} - folded.keys()
            known = self.subtrees(tree.nodes_of(todo))
            folded.update({(lo, hi): tree.fold([known[n] for n in tree.parts(lo, hi)]) for lo, hi in todo})
            for seq, ranges in plans:
                yield seq, [folded[r] for r in ranges]
            # bounded: only what this batch used, and few ranges are this large
            kept = {r: folded[r] for _, ranges in plans for r in ranges if r[1] - r[0] >= UPPER}
            folded.clear()
            folded.update(kept)
            pending.clear()

        for seq in seqs:
            pending.append(seq)
            if len(pending) >= batch:
                yield from flush()
        if pending:
            yield from flush()


def _chunks(seqs: list[int]) -> Iterator[list[int]]:
    for i in range(0, len(seqs), CHUNK):
        yield seqs[i : i + CHUNK]
