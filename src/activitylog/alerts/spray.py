"""``signin.spray``, operator-wide: one IP failing sign-ins on many accounts within a window.

Failed sign-ins are in each account's own log, and no index finds them across accounts by address, so the
detector remembers them itself: the follower checks every account, and each ``user.login_failed`` it meets
is noted here (address, time, account, seq). When the failures of one address within some window of
``minutes`` span ``accounts`` accounts, each of those accounts gets the alert. Only the failures within a
window of each address's latest are kept.

The memory is the worker's, and a restart does not lose it: before a follower checks anything it rebuilds
it from the log (:func:`rebuild_from_log`) — the ``user.login_failed`` entries, across accounts, that the
detectors had already checked (at or before each account's cursor) within the last window before where they
go on from (the earliest of now, the first entry after a cursor and the first entry of an account not
checked yet), which is every failure that a window completed by a later one can hold. So a spray in
progress when the worker restarted is alerted by its next failure, as it would have been without the
restart; the failures after a cursor are noted when the detectors meet them, as before.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, and_, func, select

from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry, AlertCursor, ChainHead

_entries = cast(Table, ActivityEntry.__table__)
_cursors = cast(Table, AlertCursor.__table__)
_heads = cast(Table, ChainHead.__table__)
FAILED_SIGN_IN = "user.login_failed"


@dataclass(frozen=True)
class Failure:
    at: datetime
    account_id: str
    seq: int


class SprayMemory:
    def __init__(self, accounts: int, minutes: int) -> None:
        self.accounts, self.window = accounts, timedelta(minutes=minutes)
        self._by_ip: dict[str, list[Failure]] = defaultdict(list)

    @property
    def enabled(self) -> bool:
        return self.accounts > 0

    def remember(self, ip: str, failure: Failure) -> bool:
        """Keep the failure (one checked before, so it completes nothing now); False if kept already."""
        kept = self._by_ip[ip]
        if any(f.account_id == failure.account_id and f.seq == failure.seq for f in kept):
            return False  # met again (a batch checked twice)
        kept.append(failure)
        latest = max(f.at for f in kept)
        kept[:] = sorted((f for f in kept if f.at > latest - 2 * self.window), key=lambda f: f.at)
        return True

    def note(self, ip: str, failure: Failure) -> dict[str, list[Failure]] | None:
        """Remember the failure; the failures per account of a window it completes (None if none)."""
        if not self.remember(ip, failure):
            return None
        kept = self._by_ip[ip]
        for start in (f.at for f in kept if failure.at - self.window <= f.at <= failure.at):
            inside = [f for f in kept if start <= f.at <= start + self.window]
            by_account: dict[str, list[Failure]] = defaultdict(list)
            for f in inside:
                by_account[f.account_id].append(f)
            if len(by_account) >= self.accounts and failure.account_id in by_account:
                return dict(by_account)
        return None


def rebuild_from_log(db: Database, memory: SprayMemory, now: datetime) -> int:
    """Fill ``memory`` from the log with the failed sign-ins the detectors checked before this process
    started, within the window before where they go on from; returns how many. Cross-account reads."""
    if not memory.enabled:
        return 0
    e, c, h = _entries.c, _cursors.c, _heads.c
    with db.system().read_connection() as conn:
        if conn.execute(select(c.account_id).limit(1)).first() is None:
            return 0  # nothing checked yet: every failure is still to meet
        # where the detectors go on from: the first entry after each cursor, the first entry of an account
        # with none (checked from seq 1), or now if nothing is waiting
        after_cursor = conn.execute(
            select(func.min(e.occurred_at)).select_from(
                _entries.join(_cursors, and_(e.account_id == c.account_id, e.seq == c.seq + 1))
            )
        ).scalar_one_or_none()
        unchecked = conn.execute(
            select(func.min(e.occurred_at))
            .select_from(
                _heads.outerjoin(_cursors, c.account_id == h.account_id).join(
                    _entries, and_(e.account_id == h.account_id, e.seq == 1)
                )
            )
            .where(c.account_id.is_(None))
        ).scalar_one_or_none()
        since = min(t for t in (now, after_cursor, unchecked) if t is not None) - memory.window
        rows = conn.execute(
            select(e.account_id, e.seq, e.occurred_at, e.ip)
            .select_from(_entries.join(_cursors, e.account_id == c.account_id))
            .where(
                e.action == FAILED_SIGN_IN,
                e.seq <= c.seq,
                e.occurred_at >= since,
                e.ip.is_not(None),
            )
            .order_by(e.occurred_at, e.account_id, e.seq)
        ).all()
    return sum(memory.remember(row.ip, Failure(row.occurred_at, row.account_id, row.seq)) for row in rows)
