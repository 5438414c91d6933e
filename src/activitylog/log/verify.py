"""Re-compute an account's chain and Merkle tree from the stored entries, check them against the signer's
memory (which lives outside the database), and name the first entry that does not hold.

What it re-derives and compares: each entry's hash and its link to the one before; the text a reader sees
that the hash does not cover (``summary``, the canonical ``changes`` text, ``ip_key``, ``csv_escapes``, the
resources each entry changed besides its own); every stored subtree hash and the head's tree edge. The
anchor is the last checkpoint the signer signed: the tree's root at that size must be the signed one, so a
log rebuilt from scratch by someone holding only the database fails here, even with every hash recomputed.

Purged entries (``log.purge``) are walked through their tombstones: a tombstone's prev_hash must link to the
entry (or tombstone) before it and its hash is the leaf the stored tree and the signed checkpoints hold, so
the chain and the tree are checked across every gap; the verdict names the purged ranges and their policy.

Entries in canonical form v2 (``salts`` set) are hashed with their personal values committed; an erased
value is checked through the commitment its salts keep (``verify_export.committed``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from activitylog.db.models import ActivityEntry, AffectedResource, ChainHead, PurgedEntry, TreeNodes
from activitylog.log import counts, purge, tree
from activitylog.log.actions import summarize
from activitylog.log.affected import affected
from activitylog.log.chain import CHAINED_FIELDS, GENESIS, canonical_json, entry_hash, format_instant
from activitylog.log.csv_sql import CSV_COLUMNS, csv_escapes
from activitylog.log.record import ip_key
from activitylog.log.tree_store import TreeDamaged, TreeReader
from activitylog.log.verify_export import Checkpoint, inclusion_root, leaf_hash


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    head_seq: int | None = None
    head_hash: str | None = None
    first_bad_seq: int | None = None
    reason: str | None = None
    purged: tuple[purge.PurgedRange, ...] = ()
    """The purged seqs the walk crossed through their tombstones, per run and policy."""

    def as_api(self) -> dict[str, Any]:
        if self.ok:
            head = {"seq": self.head_seq, "hash": self.head_hash} if self.head_seq else None
            return {"ok": True, "checked": self.checked, "head": head, **purge.summary(list(self.purged))}
        return {"ok": False, "first_bad_seq": self.first_bad_seq, "reason": self.reason}


def _broken(at: int, reason: str) -> Verdict:
    """Entries before ``at`` hold; ``at`` does not."""
    return Verdict(False, at - 1, first_bad_seq=at, reason=reason)


def _csv_escapes_of(entry: Any, fields: dict[str, Any]) -> int:
    cells = {**entry, "occurred_at": fields["occurred_at"]}
    return csv_escapes([cells[name] for name in CSV_COLUMNS])


# Cells that never need escaping once an entry's other checks held: seq is the expected int, occurred_at
# the contract's timestamp text, hash a sha256 hex digest, and prev_hash the previous entry's hash (so
# only the first entry of a walk has its prev_hash cell checked, by ``_csv_escapes_of``).
_PLAIN_CELLS = frozenset({"seq", "occurred_at", "hash", "prev_hash"})
_OTHER_CELLS = tuple((2 * i, name) for i, name in enumerate(CSV_COLUMNS) if name not in _PLAIN_CELLS)
_MEMO_SIZE = 50_000


class _Derived:
    """``csv_escapes`` and ``ip_key`` recomputed with the product's own functions, once per distinct value
    in a walk: most cells repeat (an account's actors, addresses, actions, resource types), and a cell's
    two escape bits depend on its text alone. Bounded memos, so a walk stays in constant memory."""

    def __init__(self, columns: list[str]) -> None:
        self.cells: dict[Any, int] = {}
        self.ips: dict[str | None, str | None] = {}
        self.positions = [(shift, columns.index(name)) for shift, name in _OTHER_CELLS]

    def csv_escapes(self, row: Any) -> int:
        cells, escapes = self.cells, 0
        for shift, position in self.positions:
            value = row[position]
            bits = cells.get(value)
            if bits is None:
                if len(cells) >= _MEMO_SIZE:
                    cells.clear()
                bits = cells[value] = csv_escapes([value])
            escapes |= bits << shift
        return escapes

    def ip_key(self, ip: str | None) -> str | None:
        ips = self.ips
        if ip in ips:
            return ips[ip]
        if len(ips) >= _MEMO_SIZE:
            ips.clear()
        key = ips[ip] = ip_key(ip)
        return key


# The canonical JSON of an entry with a stand-in for its changes, whose text ``"changes":0,`` occurs nowhere
# else: keys are unique, every quote inside a JSON string is escaped, and "changes" is never the last key.
_CHANGES_STAND_IN = '"changes":0,'


def _entry_hash_given(prev_hash: str, fields: dict[str, Any], changes_text: str) -> str:
    """``entry_hash(prev_hash, fields)``, given ``changes_text = canonical_json(fields["changes"])`` (which
    the walk encodes anyway, to check the stored text): the changes are not encoded a second time."""
    canonical = canonical_json({**fields, "changes": 0}).replace(
        _CHANGES_STAND_IN, f'"changes":{changes_text},', 1
    )
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def _v2_hash(prev_hash: str, fields: dict[str, Any], salts_text: str) -> str | None:
    """A v2 entry's hash (its personal values committed, ``verify_export.committed``), or None when its
    salts are not canonical JSON or do not fit it."""
    try:
        salts = json.loads(salts_text)
        if canonical_json(salts) != salts_text:
            return None
        return entry_hash(prev_hash, fields, salts)
    except (ValueError, TypeError, AttributeError):
        return None


def _ordered(session: Session, statement: Any, batch: int) -> Iterator[Any]:
    return iter(session.execute(statement.execution_options(yield_per=batch)))


def _search_rows(session: Session, account_id: str, after: int, batch: int) -> Iterator[Any] | None:
    """SQLite's text-search index keeps its own copy of each entry's searchable text; PostgreSQL indexes the
    entries' own columns, so there is nothing apart from them to check."""
    if session.get_bind().dialect.name != "sqlite":
        return None
    statement = text(
        "SELECT seq, summary, resource_name, actor_name FROM activity_search "
        "WHERE account_id = :a AND seq > :after ORDER BY seq"
    ).bindparams(a=account_id, after=after)
    return _ordered(session, statement, batch)


@dataclass(frozen=True)
class _Start:
    """Where a walk begins: seq 1 from nothing, or right after a signed checkpoint."""

    seq: int = 1
    prev_hash: str = GENESIS
    frontier: tuple[bytes, ...] = ()


def _start_after(session: Session, account_id: str, anchor: Checkpoint) -> _Start | Verdict:
    """The tree's edge at the signed size, read from the stored tree and checked against the signed root,
    and the last signed entry's hash, checked by its inclusion in that root."""
    reader = TreeReader(session.connection(), account_id)
    size = anchor.size
    try:
        edge = tree.parts(0, size)
        known = reader.subtrees(edge)
        frontier = [known[node] for node in edge]
        path = reader.inclusion(size, size)
    except TreeDamaged as exc:
        return _broken(1, f"the stored tree is damaged: {exc}")
    if tree.fold(frontier) != anchor.root:
        return _broken(1, f"the stored tree of {size} entries is not the one the signer signed")
    last = None
    for table in (ActivityEntry, PurgedEntry):  # a purged entry's hash is its tombstone's
        found = select(table.hash).where(table.account_id == account_id, table.seq == size)
        last = last or session.execute(found).scalar_one_or_none()
    if last is None or inclusion_root(size - 1, size, leaf_hash(last), path) != anchor.root:
        return _broken(size, "the last signed entry is not the one the signer signed")
    return _Start(size + 1, last, tuple(frontier))


def verify_account(
    session: Session,
    account_id: str,
    anchor: Checkpoint | None = None,
    *,
    incremental: bool = False,
    progress: Callable[[int], None] | None = None,
    batch: int = 5000,
) -> Verdict:
    """Walk the chain and the tree from seq 1 (or, ``incremental``, from the anchor on); check the tree
    against ``anchor`` (the signer's last checkpoint, read from outside the database); name the first bad
    seq. An incremental walk trusts the stored tree below the anchor, which is checked against the signed
    root, so it cannot see an old entry's body edited under its kept hash: only a full walk re-hashes it.

    On PostgreSQL a walk that begins the session's transaction reads one snapshot (REPEATABLE READ): under
    READ COMMITTED each statement sees the entries committed by then, so an append during the walk made the
    head read at its end disagree with the entries walked ("entries missing after the last one")."""
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    start = _Start()
    if incremental and anchor is not None:
        begun = _start_after(session, account_id, anchor)
        if isinstance(begun, Verdict):
            return begun
        start, anchor = begun, None
    table = ActivityEntry.__table__
    nodes = TreeNodes.__table__
    expected_seq, prev_hash, frontier = start.seq, start.prev_hash, list(start.frontier)
    stored = _ordered(
        session,
        select(nodes.c.seq, nodes.c.hashes)
        .where(nodes.c.account_id == account_id, nodes.c.seq >= start.seq)
        .order_by(nodes.c.seq),
        batch,
    )
    next_stored = next(stored, None)
    tombstones = purge.tombstones(session, account_id, start.seq, batch)
    next_tombstone = next(tombstones, None)

    def cross_purged(before: int) -> Verdict | None:
        """Walk the tombstones of the purged seqs from ``expected_seq`` up to ``before``: each links to the
        one before it, and its hash is the leaf the stored tree (and any signed root) holds."""
        nonlocal expected_seq, prev_hash, frontier, next_stored, next_tombstone
        while next_tombstone is not None and next_tombstone.seq < before:
            seq = next_tombstone.seq
            if seq != expected_seq:
                return _broken(expected_seq, "entry missing (a gap in seq, and no tombstone of a purge)")
            if next_tombstone.prev_hash != prev_hash:
                return _broken(seq, "the tombstone of this purged entry does not link to the entry before")
            frontier, completed = tree.append(frontier, seq - 1, next_tombstone.hash)
            if completed or (next_stored is not None and next_stored.seq == seq):
                if next_stored is None or next_stored.seq != seq or bytes(next_stored.hashes) != completed:
                    return _broken(seq, "the Merkle tree's stored hashes do not match this purged entry's")
                next_stored = next(stored, None)
            if anchor is not None and seq == anchor.size and tree.fold(frontier) != anchor.root:
                return _broken(1, f"the tree of the first {seq} entries is not the one the signer signed")
            prev_hash = next_tombstone.hash
            expected_seq += 1
            next_tombstone = next(tombstones, None)
        return None

    search = _search_rows(session, account_id, start.seq - 1, batch)
    next_search = next(search, None) if search is not None else None
    touched = AffectedResource.__table__
    indexed = _ordered(
        session,
        select(touched.c.seq, touched.c.resource_type, touched.c.resource_id)
        .where(touched.c.account_id == account_id, touched.c.seq >= start.seq)
        .order_by(touched.c.seq, touched.c.resource_type, touched.c.resource_id),
        batch,
    )
    next_indexed = next(indexed, None)
    rows = _ordered(
        session,
        select(table).where(table.c.account_id == account_id, table.c.seq >= start.seq).order_by(table.c.seq),
        batch,
    )
    derived = _Derived(list(table.c.keys()))  # the columns of each row, in order
    for row in rows:
        entry = row._mapping
        seq = entry["seq"]

        if next_tombstone is not None and next_tombstone.seq <= seq:
            crossed = cross_purged(seq)
            if crossed is not None:
                return crossed
            if next_tombstone is not None and next_tombstone.seq == seq:
                return _broken(seq, "purged (it has a tombstone), yet still present")
        if seq != expected_seq:
            return _broken(expected_seq, "entry missing (a gap in seq)")
        fields = {name: entry[name] for name in CHAINED_FIELDS}
        fields["occurred_at"] = format_instant(entry["occurred_at"])
        try:
            fields["changes"] = json.loads(entry["changes"])
        except ValueError:
            return _broken(seq, "changes is not valid JSON")
        changes_text = canonical_json(fields["changes"])
        if entry["salts"] is None:  # canonical form v1
            self_consistent = _entry_hash_given(entry["prev_hash"], fields, changes_text) == entry["hash"]
        else:
            v2 = _v2_hash(entry["prev_hash"], fields, entry["salts"])
            if v2 is None:
                return _broken(
                    seq, "salts are not the canonical JSON of salts and commitments that fit the entry"
                )
            self_consistent = v2 == entry["hash"]
        if entry["prev_hash"] != prev_hash:
            if self_consistent and seq > start.seq:  # this entry is intact, so the one before it is not
                return _broken(seq - 1, f"replaced: seq {seq} does not link to it")
            return _broken(seq, "prev_hash does not link to the entry before")
        if not self_consistent:
            return _broken(seq, "hash does not match the entry's content")
        if changes_text != entry["changes"]:
            return _broken(seq, "changes is not the canonical JSON text of what the hash covers")
        if entry["summary"] != summarize(entry["action"], entry["resource_name"]):
            return _broken(seq, "summary does not match the action and resource")
        if entry["ip_key"] != derived.ip_key(entry["ip"]):
            return _broken(seq, "ip_key does not match ip (the IP filter would miss this entry)")
        if entry["csv_escapes"] is not None and entry["csv_escapes"] != (
            derived.csv_escapes(row) if seq > start.seq else _csv_escapes_of(entry, fields)
        ):
            return _broken(seq, "csv_escapes does not match the entry (its CSV export would be unsafe)")
        frontier, completed = tree.append(frontier, seq - 1, entry["hash"])
        if completed or (next_stored is not None and next_stored.seq == seq):
            if next_stored is None or next_stored.seq != seq or bytes(next_stored.hashes) != completed:
                return _broken(seq, "the Merkle tree's stored hashes for this entry do not match it")
            next_stored = next(stored, None)
        if search is not None:
            searchable = (entry["summary"], entry["resource_name"], entry["actor_name"])
            if next_search is None or next_search.seq != seq or tuple(next_search[1:]) != searchable:
                return _broken(
                    seq, "the text-search index does not hold this entry as it is (q would miss it)"
                )
            next_search = next(search, None)
        held: list[tuple[str, str]] = []
        while next_indexed is not None and next_indexed.seq == seq:
            held.append((next_indexed.resource_type, next_indexed.resource_id))
            next_indexed = next(indexed, None)
        own = (entry["resource_type"], entry["resource_id"])
        if held != (affected(fields["changes"], own) if '_ids"' in entry["changes"] else []) or (
            next_indexed is not None and next_indexed.seq < seq
        ):
            return _broken(
                seq, "the index of the resources this entry changed does not match its changes (resource_id)"
            )
        if anchor is not None and seq == anchor.size and tree.fold(frontier) != anchor.root:
            return _broken(
                1, f"the tree of the first {seq} entries is not the one the signer signed (history rewritten)"
            )
        prev_hash = entry["hash"]
        expected_seq += 1
        if progress is not None and seq % batch == 0:
            progress(seq)
    crossed = cross_purged(2**63)
    if crossed is not None:
        return crossed
    checked = expected_seq - 1
    if anchor is not None and anchor.size > checked:
        return Verdict(
            False,
            checked,
            first_bad_seq=checked + 1,
            reason=f"entries missing: the signer signed a tree of {anchor.size} entries",
        )
    if next_stored is not None:
        return Verdict(
            False, checked, first_bad_seq=checked + 1, reason="tree hashes for entries that are missing"
        )
    if next_search is not None:
        return Verdict(
            False,
            checked,
            first_bad_seq=checked + 1,
            reason="the text-search index holds entries that are missing",
        )
    if next_indexed is not None:
        return Verdict(
            False,
            checked,
            first_bad_seq=checked + 1,
            reason="the index of changed resources holds entries that are missing",
        )
    head = session.get(ChainHead, account_id)
    if head is not None and checked > head.seq:
        return Verdict(
            False, head.seq, first_bad_seq=head.seq + 1, reason="entry beyond the chain head (forged)"
        )
    if head is not None and (head.seq != checked or head.hash != prev_hash):
        return Verdict(False, checked, first_bad_seq=checked + 1, reason="entries missing after the last one")
    if head is not None and checked and tree.split(head.tree) != frontier:
        return Verdict(
            False, checked, first_bad_seq=checked, reason="the head's tree edge does not match the entries"
        )
    if not incremental and (miscounted := counts.mismatch(session, account_id)) is not None:
        return _broken(*miscounted)  # the timeline's derived counts (log/counts.py)
    if progress is not None:
        progress(checked)
    return Verdict(
        True,
        checked,
        head_seq=checked or None,
        head_hash=prev_hash if checked else None,
        purged=tuple(purge.purged_ranges(session, account_id)),
    )
