"""Accounts and their owners: created by the CLI (or sign-up), logged as the account's first entries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from activitylog.db.base import Database
from activitylog.db.models import Account, User
from activitylog.errors import NotFound
from activitylog.ids import new_id
from activitylog.log.record import Actor, RequestContext
from activitylog.services import credentials
from activitylog.services.retention import check_retention_days
from activitylog.services.uow import UnitOfWork, assign


@dataclass(frozen=True)
class NewAccount:
    account: Account
    owner: User


def create_account(
    db: Database,
    *,
    name: str,
    owner_email: str,
    password: str,
    actor: Actor,
    context: RequestContext,
    clock: Callable[[], datetime] | None = None,
) -> NewAccount:
    account = Account(id=new_id("acc"), name=name)
    with UnitOfWork(db, account_id=account.id, actor=actor, context=context, clock=clock) as uow:
        account.created_at = uow.clock()
        uow.add(account)
        uow.record("account.create", account)
        owner = User(
            id=new_id("usr"),
            account_id=account.id,
            email=owner_email.strip().lower(),
            password_hash=credentials.hash_password(password),
            role="owner",
        )
        uow.add(owner)
        uow.record("user.create", owner)
        uow.commit()
    return NewAccount(account=account, owner=owner)


def get_account(db: Database, account_id: str) -> Account:
    with db.reader() as session:
        account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


def update_account(uow: UnitOfWork, values: dict[str, Any] | None = None, **fields: Any) -> Account:
    """A partial update: only the fields given change (``name``, ``log_retention_days``, as a dict or as
    keywords), and the entry names them; an update to the same values is no change and writes no entry."""
    values = {**(values or {}), **fields}
    if "log_retention_days" in values:
        check_retention_days(values["log_retention_days"])
    with uow:
        account = uow.get(Account, uow.account_id, what="account")
        assign(account, values)
        uow.record("account.update", account)
        uow.commit()
    return account
