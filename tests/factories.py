"""What tests build their data with, through the services (so it is logged like any other change) and with
no server: an account with its owner, an API key, and units of work by the CLI's system actor."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from activitylog.db.base import Database
from activitylog.log.record import RequestContext
from activitylog.services import accounts, api_keys
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork

PASSWORD = "correct horse battery"


def cli_uow(db: Database, account_id: str, *, clock: Callable[[], datetime] | None = None) -> UnitOfWork:
    """A unit of work as ``activitylog`` on the command line opens one (``system:cli``, no request)."""
    return UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext(), clock=clock)


def new_account(
    db: Database,
    name: str = "Tenant",
    *,
    email: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> accounts.NewAccount:
    """An account and its owner (a fresh address unless ``email`` is given), created by the CLI."""
    return accounts.create_account(
        db,
        name=name,
        owner_email=email or f"owner-{uuid.uuid4().hex[:10]}@example.com",
        password=PASSWORD,
        actor=SYSTEM_CLI,
        context=RequestContext(),
        clock=clock,
    )


def new_key(
    db: Database, account_id: str, name: str = "Test key", scopes: tuple[str, ...] = ("full",)
) -> api_keys.IssuedKey:
    """An API key of the account, issued by the CLI, with its one-time ``secret``."""
    return api_keys.create_api_key(cli_uow(db, account_id), name=name, scopes=list(scopes))
