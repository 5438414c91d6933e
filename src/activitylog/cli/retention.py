"""``activitylog purge``: remove the entries past each account's retention that no legal hold covers;
``activitylog erase``: erase one subscriber's personal data."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from activitylog import logs
from activitylog.cli.common import CLI_CONTEXT, database, err, fail, require_account
from activitylog.config import Settings
from activitylog.errors import DomainError
from activitylog.services import erasure, retention
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork


def _instant(value: str) -> datetime:
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--as-of: {value!r} is not an ISO 8601 instant (e.g. 2027-01-31T00:00:00Z)")
    if instant.tzinfo is None:
        fail("--as-of: give a time zone (e.g. 2027-01-31T00:00:00Z)")
    return instant


def _ranges(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


def purge(
    account: str = typer.Option(None, help="Only this account (acc_...); default: every account."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be purged; change nothing."),
    as_of: str = typer.Option(
        None,
        "--as-of",
        metavar="INSTANT",
        help="Judge ages as of this instant (ISO 8601 with a zone; default now). A later instant than now "
        "needs --dry-run: a purge never removes what the retention still keeps today.",
    ),
) -> None:
    """Purge entries older than each account's log retention that no legal hold covers, keeping what the
    proofs need; one activity_log.purge entry per account that lost any. With ACTIVITYLOG_LOG_LEVEL=debug
    each piece is a log line with its duration (what an append may have waited for)."""
    logs.configure(Settings().log_level)
    db = database()
    if account:
        require_account(db, account)
    ids = [account] if account else retention.account_ids(db)
    instant = _instant(as_of) if as_of else None
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        accounts_task = progress.add_task("accounts", total=len(ids))
        entries_task = progress.add_task("entries purged", total=None)
        for account_id in ids:
            try:
                result = retention.purge_account(
                    db,
                    account_id,
                    as_of=instant,
                    dry_run=dry_run,
                    actor=SYSTEM_CLI,
                    context=CLI_CONTEXT,
                    progress=lambda n: progress.advance(entries_task, n),
                )
            except DomainError as exc:
                fail(exc.message)
            results.append(result)
            progress.advance(accounts_task)
    total = 0
    for result in results:
        plan = result.plan
        total += plan.count
        if not plan.count:
            print(f"{result.account_id}: nothing to purge (entries before {plan.changes()['older_than']})")
            continue
        verb = "would purge" if dry_run else "purged"
        entry = "" if dry_run else f"; entry seq {result.entry_seq}"
        print(
            f"{result.account_id}: {verb} {plan.count} entries, seq {_ranges(plan.ranges)} "
            f"(retention {plan.retention_days} days: before {plan.changes()['older_than']}){entry}"
        )
    err.print(f"{'would purge' if dry_run else 'purged'} {total} entries in {len(results)} accounts")


def erase(
    account: str = typer.Option(..., help="The account (acc_...) whose subscriber is erased."),
    email: str = typer.Option(..., help="The subscriber's address."),
) -> None:
    """Erase a subscriber: their address, names and other fields leave the account's tables and every entry
    that holds them, while every proof still verifies; one contact.erase entry."""
    db = database()
    require_account(db, account)
    uow = UnitOfWork(db, account_id=account, actor=SYSTEM_CLI, context=CLI_CONTEXT)
    try:
        done = erasure.erase_subscriber(uow, email)
    except DomainError as exc:
        fail(exc.message, code=1)
    suppression = " and the suppression" if done.suppressed else ""
    print(
        f"{account}: erased {done.entries} entries, deleted {done.contacts} contacts{suppression}; "
        f"pseudonym {done.id}; entry seq {done.entry_seq}"
    )
