"""What every command shares: the store, error exits, and the ``system:cli`` actor it acts as."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console

from activitylog.config import Settings
from activitylog.db.base import Database, connect
from activitylog.db.models import Account
from activitylog.log.record import RequestContext
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork

err = Console(stderr=True)
CLI_CONTEXT = RequestContext(ip=None, user_agent=f"activitylog-cli ({sys.platform})", request_id=None)


def database() -> Database:
    """The operator's tool reads across accounts; its writes still run in units of work narrowed to one."""
    return connect(Settings().database_url).system()


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def require_account(db: Database, account_id: str) -> None:
    with db.reader() as session:
        if session.get(Account, account_id) is None:
            fail(f"--account: no account {account_id}")


def cli_uow(db: Database, account_id: str) -> UnitOfWork:
    return UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=CLI_CONTEXT)
