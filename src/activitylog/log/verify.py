"""Re-compute an account's chain from the stored entries, check it against the signed checkpoints, and
name the first entry that does not hold."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from activitylog.db.models import ActivityEntry, ChainHead, Checkpoint
from activitylog.log.actions import summarize
from activitylog.log.chain import CHAINED_FIELDS, GENESIS, entry_hash, format_instant
from activitylog.log.checkpoints import checkpoint_to_api, public_keys, signature_ok
from activitylog.log.csv_sql import CSV_COLUMNS, csv_escapes
from activitylog.log.record import ip_key


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


def _broken(at: int, reason: str) -> Verdict:
    """Entries before ``at`` hold; ``at`` does not."""
    return Verdict(False, at - 1, first_bad_seq=at, reason=reason)


def _csv_escapes_of(entry: Any, fields: dict[str, Any]) -> int:
    cells = {**entry, "occurred_at": fields["occurred_at"]}
    return csv_escapes([cells[name] for name in CSV_COLUMNS])


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
        seq = entry["seq"]

        if seq != expected_seq:
            return _broken(expected_seq, "entry missing (a gap in seq)")
        fields = {name: entry[name] for name in CHAINED_FIELDS}
        fields["occurred_at"] = format_instant(entry["occurred_at"])
        try:
            fields["changes"] = json.loads(entry["changes"])
        except ValueError:
            return _broken(seq, "changes is not valid JSON")
        self_consistent = entry_hash(entry["prev_hash"], fields) == entry["hash"]
        if entry["prev_hash"] != prev_hash:
            if self_consistent and seq > 1:  # this entry is intact, so the one before it is not
                return _broken(seq - 1, f"replaced: seq {seq} does not link to it")
            return _broken(seq, "prev_hash does not link to the entry before")
        if not self_consistent:
            return _broken(seq, "hash does not match the entry's content")
        if entry["summary"] != summarize(entry["action"], entry["resource_name"]):
            return _broken(seq, "summary does not match the action and resource")
        if entry["ip_key"] != ip_key(entry["ip"]):
            return _broken(seq, "ip_key does not match ip (the IP filter would miss this entry)")
        if entry["csv_escapes"] is not None and entry["csv_escapes"] != _csv_escapes_of(entry, fields):
            return _broken(seq, "csv_escapes does not match the entry (its CSV export would be unsafe)")
        held = checkpoints.get(seq)
        if held is not None and held.hash != entry["hash"]:
            return _broken(seq, "hash differs from the signed checkpoint of this seq")
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
    if head is not None and checked > head.seq:
        return Verdict(
            False, head.seq, first_bad_seq=head.seq + 1, reason="entry beyond the chain head (forged)"
        )
    if head is not None and (head.seq != checked or head.hash != prev_hash):
        return Verdict(False, checked, first_bad_seq=checked + 1, reason="entries missing after the last one")
    return Verdict(True, checked, head_seq=checked or None, head_hash=prev_hash if checked else None)
