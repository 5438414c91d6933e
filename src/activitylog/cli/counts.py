"""``activitylog counts``: bring the activity page's derived counts up with the log, or build them again."""

from __future__ import annotations

import typer

from activitylog.cli.common import database, err, require_account
from activitylog.log import counts as derived
from activitylog.services.retention import account_ids


def counts(
    account: str = typer.Option(None, help="Only this account (acc_...); default: every account."),
    rebuild: bool = typer.Option(
        False,
        "--rebuild",
        help="Drop the counts and count the whole log again (after verify found them wrong).",
    ),
) -> None:
    """Count what the worker's counts follower has not reached yet (the worker does this on its own)."""
    db = database()
    if account:
        require_account(db, account)
    everyone = account_ids(db) if rebuild else derived.accounts_behind(db)
    accounts = [account] if account else everyone
    for account_id in accounts:
        moved = derived.rebuild(db, account_id) if rebuild else derived.catch_up(db, account_id)
        err.print(f"{account_id}: counted {moved:,} entries")
