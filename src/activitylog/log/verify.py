"""Re-compute an account's chain from the stored entries and name the first entry that does not hold."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from activitylog.db.models import ActivityEntry, ChainHead
from activitylog.log.chain import CHAINED_FIELDS, GENESIS, entry_hash, format_instant


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


def verify_account(session: Session, account_id: str, batch: int = 5000) -> Verdict:
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
    head = session.get(ChainHead, account_id)
    if head is not None and (head.seq != checked or head.hash != prev_hash):
        return Verdict(False, checked, first_bad_seq=checked + 1, reason="entries missing after the last one")
    return Verdict(True, checked, head_seq=checked or None, head_hash=prev_hash if checked else None)
