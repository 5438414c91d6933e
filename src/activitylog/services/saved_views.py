"""Saved views: a user's named activity filters, listed beside the activity page's filters.

A view belongs to the user who saved it: only that user lists, renames or deletes it (another user of the
same account gets 404, as for another account's row). Its filter is validated by the log's own parser
(``log/filters.py``), so a view can only hold a filter the activity page and the API would take. Each
change is one entry (``saved_view.create``, ``.rename``, ``.delete``) in the same transaction.
"""

from __future__ import annotations

from typing import Any, NoReturn

from sqlalchemy import func, select

from activitylog.db.base import Database
from activitylog.db.models import SavedView
from activitylog.errors import Conflict, InvalidInput, NotFound
from activitylog.log.filters import parse_filter_object
from activitylog.services import crud
from activitylog.services.listing import page
from activitylog.services.uow import UnitOfWork, assign

MAX_NAME = 200
MAX_VIEWS = 100  # per user: a menu beside the filters, not a store


def clean_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("name", "required: a name for the view")
    name = value.strip()
    if len(name) > MAX_NAME:
        raise InvalidInput("name", f"too long (at most {MAX_NAME} characters)")
    if not name.isprintable():
        raise InvalidInput("name", "must be printable text")
    return name


def list_views(
    db: Database, account_id: str, user_id: str, *, limit: int = MAX_VIEWS, cursor: str | None = None
) -> tuple[list[SavedView], str | None]:
    """The user's views, oldest first."""
    return page(db, SavedView, account_id, limit=limit, cursor=cursor, where=[SavedView.user_id == user_id])


def not_yours(view_id: str) -> NoReturn:
    """Another user's view is not there for this one: the same 404 as a view that does not exist."""
    raise NotFound(f"saved view {view_id} not found")


def _mine(uow: UnitOfWork, view_id: str) -> SavedView:
    view = uow.get(SavedView, view_id, what="saved view")
    if view.user_id != uow.actor.id:
        not_yours(view_id)
    return view


def _taken(uow: UnitOfWork, name: str, but: str | None = None) -> None:
    found = uow.session.execute(
        select(SavedView.id).where(
            SavedView.account_id == uow.account_id, SavedView.user_id == uow.actor.id, SavedView.name == name
        )
    ).scalar_one_or_none()
    if found is not None and found != but:
        raise Conflict(f"you already have a saved view named {name!r}")


def create_view(uow: UnitOfWork, name: Any, raw_filter: Any) -> SavedView:
    name = clean_name(name)
    if raw_filter is not None and not isinstance(raw_filter, dict):
        raise InvalidInput("filter", 'an object of activity filters, e.g. {"action": "broadcast.*"}')
    values, _ = parse_filter_object(raw_filter)
    with uow:
        count = uow.session.execute(
            select(func.count()).where(
                SavedView.account_id == uow.account_id, SavedView.user_id == uow.actor.id
            )
        ).scalar_one()
        if count >= MAX_VIEWS:
            raise Conflict(f"you have {MAX_VIEWS} saved views, the most one user may keep; delete one first")
        _taken(uow, name)
        view = crud.create(
            uow,
            SavedView,
            "sv",
            {"user_id": uow.actor.id, "name": name, "filter": dict(sorted(values.items()))},
        )
        uow.commit()
    return view


def rename_view(uow: UnitOfWork, view_id: str, name: Any) -> SavedView:
    name = clean_name(name)
    with uow:
        view = _mine(uow, view_id)
        if view.name != name:  # the same name is no change, and no entry
            _taken(uow, name, but=view.id)
            assign(view, {"name": name})
            uow.record("saved_view.rename", view)
        uow.commit()
    return view


def delete_view(uow: UnitOfWork, view_id: str) -> None:
    with uow:
        crud.delete(uow, _mine(uow, view_id))
        uow.commit()
