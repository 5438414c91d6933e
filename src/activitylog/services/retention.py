"""Retention and legal holds: how long an account keeps its log, what must be kept regardless, and the
purge that removes the rest while every proof still holds (``log.purge``).

An account keeps its entries ``log_retention_days`` (at least 365, PCI DSS 10.5.1's year; default 400).
A legal hold covers the entries of a window of time (``since``..``until``, either end open) until it is
released; while any active hold covers an entry, nothing purges it. Setting the retention, placing and
releasing a hold and each purge run that removed anything are entries in the log.

A purge judges ages as of an instant (default: now). An instant in the future is only a preview
(``dry_run``): a purge never removes what the retention still keeps today, and on PostgreSQL the database
function refuses it by its own clock whatever the caller says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activitylog import pacing
from activitylog.db.base import Database, sqlite_checkpoint, widen_page_cache
from activitylog.db.models import MIN_RETENTION_DAYS, Account, LegalHold
from activitylog.errors import Conflict, InvalidInput, NotFound
from activitylog.log import counts, purge
from activitylog.log.record import Actor, RequestContext, ResourceRef
from activitylog.services import crud
from activitylog.services.uow import UnitOfWork, assign

log = logging.getLogger(__name__)

MAX_RETENTION_DAYS = 36_500  # a century: beyond it, a typo rather than a policy
SYSTEM_PURGE = Actor(type="system", id="purge", name="retention purge")


def check_retention_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int):
        raise InvalidInput("log_retention_days", "must be a whole number of days")
    if days < MIN_RETENTION_DAYS:
        raise InvalidInput("log_retention_days", f"must be at least {MIN_RETENTION_DAYS} days")
    if days > MAX_RETENTION_DAYS:
        raise InvalidInput("log_retention_days", f"must be at most {MAX_RETENTION_DAYS} days")
    return days


# ---- legal holds ----
def create_hold(
    uow: UnitOfWork, *, reason: str, since: datetime | None = None, until: datetime | None = None
) -> LegalHold:
    if since is not None and until is not None and since > until:
        raise InvalidInput("until", "must not be before since")
    with uow:
        hold = crud.create(uow, LegalHold, "lh", {"reason": reason, "since": since, "until": until})
        uow.commit()
    return hold


def release_hold(uow: UnitOfWork, hold_id: str) -> LegalHold:
    with uow:
        hold = uow.get(LegalHold, hold_id, what="legal hold")
        if hold.released_at is not None:
            raise Conflict(f"legal hold {hold_id} was already released")
        assign(hold, {"released_at": uow.clock()})
        uow.record("legal_hold.release", hold)
        uow.commit()
    return hold


# ---- purging ----
@dataclass(frozen=True)
class PurgeResult:
    account_id: str
    plan: purge.Plan
    dry_run: bool
    entry_seq: int | None = None  # the run's activity_log.purge entry

    def as_api(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "dry_run": self.dry_run,
            **self.plan.changes(),
            "entry_seq": self.entry_seq,
        }


def _database_now(session: Session) -> datetime:
    """PostgreSQL's ``now()`` (the instant its purge function judges by), else this machine's clock."""
    if session.get_bind().dialect.name == "postgresql":
        now: datetime = session.execute(select(func.now())).scalar_one()
        return now.astimezone(UTC)
    return datetime.now(UTC)


def purge_account(
    db: Database,
    account_id: str,
    *,
    as_of: datetime | None = None,
    dry_run: bool = False,
    actor: Actor = SYSTEM_PURGE,
    context: RequestContext | None = None,
    progress: Callable[[int], None] | None = None,
    batch: int | None = None,
) -> PurgeResult:
    """Purge the account's entries older than its retention as of ``as_of`` that no active hold covers: the
    plan, found in a read (seconds at 2M entries, during which appends go on); the run's
    ``activity_log.purge`` entry (none when nothing is to go) with the plan; then the plan in pieces sized by
    ``pacing.for_engine`` (or of ``batch`` seqs), each a transaction of its own (on SQLite appends wait for
    one piece at most; on PostgreSQL for none). A hold placed after the plan was found keeps what it covers,
    as one placed during the pieces does: the database re-checks the holds in each piece."""
    if as_of is not None and as_of.tzinfo is None:
        raise InvalidInput("as_of", "give a time zone (e.g. 2027-01-31T00:00:00Z)")
    scoped = db.for_account(account_id)
    with scoped.reader() as session:
        days = session.execute(
            select(Account.log_retention_days).where(Account.id == account_id)
        ).scalar_one_or_none()
        if days is None:
            raise NotFound(f"account {account_id} not found")
        now = _database_now(session)
        if as_of is None:
            as_of = now
        elif as_of > now and not dry_run:
            raise InvalidInput(
                "as_of",
                "is in the future: a purge never removes what the retention still keeps today "
                "(preview it with a dry run)",
            )
        planned = purge.plan(session, account_id, as_of - timedelta(days=days), days)
    if dry_run or not planned.count:
        return PurgeResult(account_id, planned, dry_run)
    uow = UnitOfWork(db, account_id=account_id, actor=actor, context=context or RequestContext())
    with uow:
        purge_seq = purge.lock_head(uow.session, account_id)
        entry = uow.record(
            "activity_log.purge",
            ResourceRef("activity_log", account_id, "activity log"),
            changes=planned.changes(),
        )
        assert entry is not None and entry["seq"] == purge_seq, "the run's entry must take the locked seq"
        uow.commit()
    scoped = db.for_account(account_id)
    going = purge.still_purgeable(account_id, planned.older_than)
    pacer = pacing.for_database(db, batch)
    for lo, hi in purge.batches(planned.ranges, pacer):  # each piece short, so appends interleave
        asked = time.perf_counter()
        with scoped.writer() as session:
            # the transaction begins (on SQLite, with the write lock), with room for the indexes it rewrites
            widen_page_cache(session.connection())
            began = time.perf_counter()
            leaving = counts.leaving(session, account_id, lo, hi, going)  # the counts stay exact
            counted = time.perf_counter()
            n = purge.execute_range(session, planned, lo, hi, purge_seq)
            deleted = time.perf_counter()
            leaving.gone(session, n)
            committing = time.perf_counter()
            session.commit()
        took = time.perf_counter() - began
        if db.dialect == "sqlite":
            sqlite_checkpoint(db.engine)
        seconds = {
            "ms": took,  # the piece's transaction, from the write lock taken to the commit
            "lock_ms": began - asked,
            "counts_ms": counted - began + committing - deleted,
            "delete_ms": deleted - counted,
            "commit_ms": began + took - committing,
            "checkpoint_ms": time.perf_counter() - began - took,
        }
        fields = {"account_id": account_id, "from_seq": lo, "to_seq": hi, "purged": n}
        fields |= {name: round(value * 1000, 1) for name, value in seconds.items()}
        log.debug("purge piece", extra={"fields": fields})  # what an append may have waited for
        pacer.took(hi - lo + 1, took)
        if progress is not None:
            progress(n)
    return PurgeResult(account_id, planned, dry_run, entry_seq=purge_seq)


def purge_all(
    db: Database,
    *,
    as_of: datetime | None = None,
    dry_run: bool = False,
    actor: Actor = SYSTEM_PURGE,
    context: RequestContext | None = None,
) -> list[PurgeResult]:
    """Every account in turn, each in a transaction of its own (the worker's run, and the CLI's)."""
    return [
        purge_account(db, account_id, as_of=as_of, dry_run=dry_run, actor=actor, context=context)
        for account_id in account_ids(db)
    ]


def account_ids(db: Database) -> list[str]:
    with db.system().reader() as session:
        return list(session.scalars(select(Account.id).order_by(Account.id)))
