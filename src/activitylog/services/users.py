"""Users of an account (owner only): invite, change role or password, remove."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select

from activitylog.db.models import Account, AuthSession, SavedView, User
from activitylog.errors import Conflict
from activitylog.ids import new_id
from activitylog.services import credentials
from activitylog.services.uow import UnitOfWork, assign


def create_user(uow: UnitOfWork, *, email: str, password: str, role: str) -> User:
    with uow:
        email = email.strip().lower()
        if uow.session.execute(select(User.id).where(User.email == email)).first():
            raise Conflict("a user with this email already exists")
        user = User(
            id=new_id("usr"),
            account_id=uow.account_id,
            email=email,
            password_hash=credentials.hash_password(password),
            role=role,
        )
        uow.add(user)
        uow.record("user.create", user)
        uow.commit()
    return user


def update_user(uow: UnitOfWork, user_id: str, values: dict[str, Any]) -> User:
    """Change a user's email, role or password. A new password ends every other session of the user (all
    of them when someone else sets it), in the same transaction, and the entry counts them."""
    with uow:
        user = uow.get(User, user_id, what="user")
        extra = None
        if "password" in values:
            values = {**values, "password_hash": credentials.hash_password(values.pop("password"))}
            ended = _end_sessions(uow, user, sparing=uow.auth_session)
            extra = {"sessions_ended": {"from": None, "to": ended}} if ended else None
        if "email" in values:
            values["email"] = values["email"].strip().lower()
        if values.get("role", "owner") != "owner" and user.role == "owner":
            _keep_an_owner(uow, user)
        assign(user, values)
        uow.record("user.update", user, extra=extra)
        uow.commit()
    return user


def _end_sessions(uow: UnitOfWork, user: User, *, sparing: str | None) -> int:
    """Delete the user's dashboard sessions but ``sparing`` (a token hash); returns how many ended."""
    statement = delete(AuthSession).where(
        AuthSession.account_id == uow.account_id, AuthSession.user_id == user.id
    )
    if sparing is not None:
        statement = statement.where(AuthSession.token_hash != sparing)
    result = uow.session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


def delete_user(uow: UnitOfWork, user_id: str) -> None:
    with uow:
        user = uow.get(User, user_id, what="user")
        if user.id == uow.actor.id:
            raise Conflict("you cannot delete yourself")
        if user.role == "owner":
            _keep_an_owner(uow, user)
        views = uow.session.scalars(
            select(SavedView).where(SavedView.account_id == uow.account_id, SavedView.user_id == user.id)
        ).all()
        for view in views:  # audited rows: they go in the user's entry (saved_view_ids), not by a cascade
            uow.delete(view)
        uow.delete(user)
        uow.record("user.delete", user)
        uow.commit()


def _keep_an_owner(uow: UnitOfWork, user: User) -> None:
    """Refuse to demote or remove the last owner. The count is taken under the account row's lock, so two
    owners demoting each other at once are serialised: the second one counts after the first committed
    (each statement reads the latest commit on PostgreSQL; SQLite writers already run one at a time).
    Locking the owners' rows instead would deadlock two such requests, each holding the user it edits."""
    uow.get(Account, uow.account_id, what="account")
    owners = uow.session.execute(
        select(func.count()).where(User.account_id == uow.account_id, User.role == "owner")
    ).scalar_one()
    if owners <= 1:
        raise Conflict("an account must keep at least one owner")
