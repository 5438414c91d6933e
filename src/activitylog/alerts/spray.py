"""``signin.spray``, operator-wide: one IP failing sign-ins on many accounts within a window.

Failed sign-ins are in each account's own log, and no index finds them across accounts by address, so the
detector remembers them itself: the follower checks every account, and each ``user.login_failed`` it meets
is noted here (address, time, account, seq). When the failures of one address within some window of
``minutes`` span ``accounts`` accounts, each of those accounts gets the alert. Only the failures within a
window of each address's latest are kept. The memory is the worker's; after a restart it fills again from
what the detectors meet next (a spray in progress is seen once it goes on).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta


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

    def note(self, ip: str, failure: Failure) -> dict[str, list[Failure]] | None:
        """Remember the failure; the failures per account of a window it completes (None if none)."""
        kept = self._by_ip[ip]
        if any(f.account_id == failure.account_id and f.seq == failure.seq for f in kept):
            return None  # met again (a batch checked twice)
        kept.append(failure)
        latest = max(f.at for f in kept)
        kept[:] = sorted((f for f in kept if f.at > latest - 2 * self.window), key=lambda f: f.at)
        for start in (f.at for f in kept if failure.at - self.window <= f.at <= failure.at):
            inside = [f for f in kept if start <= f.at <= start + self.window]
            by_account: dict[str, list[Failure]] = defaultdict(list)
            for f in inside:
                by_account[f.account_id].append(f)
            if len(by_account) >= self.accounts and failure.account_id in by_account:
                return dict(by_account)
        return None
