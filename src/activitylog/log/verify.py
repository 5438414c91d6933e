"""Re-compute an account's chain from the stored entries, check it against the signed checkpoints, and
name the first entry that does not hold."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from activitylog.db.models import ActivityEntry, ChainHead, Checkpoint
from activitylog.log.chain import CHAINED_FIELDS, GENESIS, entry_hash, format_instant
from activitylog.log.checkpoints import checkpoint_to_api, public_keys, signature_ok


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    head_seq: int | None = None
    head_hash: str | None = None
    first_bad_seq: int | None = None
    reason: str | None = None

    def as_api(self) -> dict[str, Any]:
        if self.ok:
            head = {"seq": self.head_seq, "hash": self.head_hash} if self.head_seq else None
            return {"ok": True, "checked": self.checked, "head": head}
        return {"ok": False, "first_bad_seq": self.first_bad_seq, "reason": self.reason}


def _checkpoint_problem(session: Session, account_id: str) -> tuple[dict[int, Checkpoint], Verdict | None]:
    """The account's checkpoints, after checking their signatures and their own chain of signatures."""
    rows = list(
        session.scalars(
            select(Checkpoint).where(Checkpoint.account_id == account_id).order_by(Checkpoint.seq)
        )
    )
    keys = public_keys(session)
    previous: str | None = None
    for row in rows:
        fields = checkpoint_to_api(row)
        if not signature_ok(fields, keys):
            return {}, Verdict(False, 0, first_bad_seq=row.seq, reason="checkpoint signature does not verify")
        if row.previous_signature != previous:
            return {}, Verdict(
                False, 0, first_bad_seq=row.seq, reason="checkpoint does not link to the one before"
            )
        previous = row.signature
    return {row.seq: row for row in rows}, None


def verify_account(session: Session, account_id: str, batch: int = 5000) -> Verdict:
    """Walk the chain from seq 1; check every signed checkpoint against it; name the first bad seq."""
    checkpoints, problem = _checkpoint_problem(session, account_id)
    if problem is not None:
        return problem
    table = ActivityEntry.__table__
    expected_seq, prev_hash = 1, GENESIS
    rows = session.execute(
        select(table)
        .where(table.c.account_id == account_id)
        .order_by(table.c.seq)
        .execution_options(yield_per=batch)
    )
    for row in rows:
        entry = row._mapping
        if entry["seq"] != expected_seq:
            return Verdict(False, expected_seq - 1, first_bad_seq=expected_seq, reason="entry missing (gap)")
        if entry["prev_hash"] != prev_hash:
            return Verdict(
                False, expected_seq - 1, first_bad_seq=entry["seq"], reason="prev_hash does not link"
            )
        fields = {name: entry[name] for name in CHAINED_FIELDS}
        fields["occurred_at"] = format_instant(entry["occurred_at"])
        fields["changes"] = json.loads(entry["changes"])
        if entry_hash(prev_hash, fields) != entry["hash"]:
            return Verdict(
                False, expected_seq - 1, first_bad_seq=entry["seq"], reason="hash does not match content"
            )
        prev_hash = entry["hash"]
        expected_seq += 1
    checked = expected_seq - 1
    beyond = [seq for seq in checkpoints if seq > checked]
    if beyond:
        return Verdict(
            False,
            checked,
            first_bad_seq=checked + 1,
            reason=f"entries missing: a signed checkpoint vouches for seq {max(beyond)}",
        )
    head = session.get(ChainHead, account_id)
    if head is not None and (head.seq != checked or head.hash != prev_hash):
        return Verdict(False, checked, first_bad_seq=checked + 1, reason="entries missing after the last one")
    return Verdict(True, checked, head_seq=checked or None, head_hash=prev_hash if checked else None)
