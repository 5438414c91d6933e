"""The Merkle tree's arithmetic against RFC 6962's recursive definitions, written out here the slow way, and
the auditor's proof checks against both honest and altered proofs."""

from __future__ import annotations

import hashlib
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection

from activitylog.log import tree, tree_store
from activitylog.log.tree_store import TreeReader
from activitylog.log.verify_export import consistency_holds, inclusion_root, leaf_hash, node_hash


def _entry_hashes(n: int) -> list[str]:
    return [hashlib.sha256(f"entry {i}".encode()).hexdigest() for i in range(n)]


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 2.1, literally."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


class Stored:
    """The tree as the database keeps it: each entry's completed subtrees, built by appending."""

    def __init__(self, hashes: list[str]) -> None:
        self.leaves = [leaf_hash(h) for h in hashes]
        self.rows: dict[int, bytes] = {}
        self.frontiers: list[list[bytes]] = [[]]
        frontier: list[bytes] = []
        for size, h in enumerate(hashes):
            frontier, completed = tree.append(frontier, size, h)
            if completed:
                self.rows[size + 1] = completed
            self.frontiers.append(frontier)

    def node(self, node: tree.Node) -> bytes:
        level, index = node
        if level == 0:
            return self.leaves[index]
        return self.rows[tree.stored_at(node)][(level - 1) * 32 : level * 32]

    def range_hash(self, lo: int, hi: int) -> bytes:
        return tree.fold([self.node(n) for n in tree.parts(lo, hi)])


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=300))
def test_stored_tree_matches_the_rfc(n: int) -> None:
    hashes = _entry_hashes(n)
    stored = Stored(hashes)
    leaves = stored.leaves
    for size in range(1, n + 1):
        assert tree.fold(stored.frontiers[size]) == _mth(leaves[:size]) == stored.range_hash(0, size)
    # every stored row holds exactly the subtrees its entry completes
    for seq, blob in stored.rows.items():
        level_count = (seq & -seq).bit_length() - 1
        assert len(blob) == 32 * level_count
        for level in range(1, level_count + 1):
            index = (seq >> level) - 1
            assert stored.node((level, index)) == _mth(leaves[index << level : (index + 1) << level])
    assert len(stored.rows) == n // 2


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_proofs_match_the_rfc_and_verify(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=200))
    stored = Stored(_entry_hashes(n))
    size = data.draw(st.integers(min_value=1, max_value=n))
    leaves = stored.leaves[:size]
    root = _mth(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    path = [stored.range_hash(lo, hi) for lo, hi in tree.inclusion_ranges(index, size)]
    assert path == _path(index, leaves)
    assert inclusion_root(index, size, leaves[index], path) == root
    old = data.draw(st.integers(min_value=1, max_value=size))
    proof = [stored.range_hash(lo, hi) for lo, hi in tree.consistency_ranges(old, size)] if old < size else []
    assert proof == _subproof(old, leaves, True)
    assert consistency_holds(old, size, _mth(stored.leaves[:old]), root, proof)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_altered_proofs_fail(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=2, max_value=120))
    stored = Stored(_entry_hashes(n))
    leaves, root = stored.leaves, _mth(stored.leaves)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    path = _path(index, leaves)
    other = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda i: i != index))
    assert inclusion_root(index, n, leaves[other], path) != root  # another leaf at this place
    assert inclusion_root(other, n, leaves[index], path) != root  # this leaf at another place
    if path:
        bad = list(path)
        bad[data.draw(st.integers(0, len(bad) - 1))] = hashlib.sha256(b"forged").digest()
        assert inclusion_root(index, n, leaves[index], bad) != root
        assert inclusion_root(index, n, leaves[index], path[:-1]) != root  # truncated path
    old = data.draw(st.integers(min_value=1, max_value=n - 1))
    old_root, proof = _mth(leaves[:old]), _subproof(old, leaves, True)
    assert consistency_holds(old, n, old_root, root, proof)
    forged_old = _mth([hashlib.sha256(b"rewritten").digest(), *leaves[1:old]])
    assert not consistency_holds(old, n, forged_old, root, proof)  # a rewritten history
    assert not consistency_holds(old, n, old_root, root, proof[:-1])
    assert not consistency_holds(n, old, root, old_root, proof)  # a smaller tree never extends a larger


class _TreeRows:
    """What ``TreeReader`` reads, answered from a ``Stored`` tree instead of a database."""

    def __init__(self, hashes: list[str], stored: Stored) -> None:
        self.hashes, self.stored = hashes, stored

    def execute(self, statement: object, params: dict[str, Any]) -> list[tuple[int, Any]]:
        if statement is tree_store._LEAVES:
            return [(seq, self.hashes[seq - 1]) for seq in params["seqs"]]
        assert statement is tree_store._HIGHER
        return [(seq, self.stored.rows[seq]) for seq in params["seqs"] if seq in self.stored.rows]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_audit_paths_in_batches_match_the_rfc(data: st.DataObject) -> None:
    """A slice's paths, a few per batch (so large ranges are carried from batch to batch), with gaps."""
    n = data.draw(st.integers(min_value=1, max_value=700))
    hashes = _entry_hashes(n)
    stored = Stored(hashes)
    size = data.draw(st.integers(min_value=1, max_value=n))
    lo = data.draw(st.integers(min_value=1, max_value=size))
    seqs = [s for s in range(lo, size + 1) if data.draw(st.booleans()) or s == lo]
    batch = data.draw(st.integers(min_value=1, max_value=60))
    reader = TreeReader(cast(Connection, _TreeRows(hashes, stored)), "acc_test")
    paths = list(reader.audit_paths(seqs, size, batch=batch))
    leaves = stored.leaves[:size]
    assert [seq for seq, _ in paths] == seqs
    for seq, path in paths:
        assert path == _path(seq - 1, leaves)
