"""Saved views: the signed-in user's named activity filters (``/api/v1/saved-views``).

A view is a user's, so only a dashboard session has them: an API key is no user and gets 403 (a script
keeps its filters in its own code). Owners and admins, who may read the log, may keep views; each user sees
and changes only their own (another user's view answers 404).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from activitylog.db.models import SavedView
from activitylog.services import saved_views
from activitylog.services.auth import Principal
from activitylog.services.listing import one
from activitylog.services.uow import UnitOfWork
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit
from activitylog.web.api.streams import FilterValue
from activitylog.web.deps import Db, allowed, uow_for
from activitylog.web.schemas import Input, Page

router = APIRouter(prefix="/api/v1/saved-views", tags=["saved views"], responses=ERROR_RESPONSES)

PERMISSION = "saved_views:manage"
Owner = Annotated[Principal, Depends(allowed(PERMISSION))]
ViewsUow = Annotated[UnitOfWork, Depends(uow_for(PERMISSION))]
ViewId = Annotated[str, Path(max_length=40, description="the view's id (`sv_…`)")]

Name = Annotated[str, Field(min_length=1, max_length=saved_views.MAX_NAME, description="shown in the menu")]
ViewFilter = Annotated[
    dict[str, FilterValue],
    Field(
        max_length=20,
        description="The activity filters of `GET /api/v1/activity` as an object, e.g. "
        '`{"action": "broadcast.*", "actor_type": "api_key"}`; empty: the whole log.',
    ),
]


class SavedViewIn(Input):
    name: Name
    filter: ViewFilter = Field(default_factory=dict)


class SavedViewPatch(Input):
    name: Name


class SavedViewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    filter: dict[str, str] = Field(description="the filters as saved (strings; a comma means OR)")
    created_at: datetime


@router.get("", response_model=Page[SavedViewOut])
def list_views(caller: Owner, db: Db, limit: Limit = 50, cursor: Cursor = None) -> dict[str, object]:
    """The caller's own views, oldest first."""
    rows, next_cursor = saved_views.list_views(
        db, caller.account_id, caller.actor.id, limit=limit, cursor=cursor
    )
    return {"data": rows, "next_cursor": next_cursor}


@router.post("", response_model=SavedViewOut, status_code=201)
def create_view(body: SavedViewIn, uow: ViewsUow) -> SavedView:
    return saved_views.create_view(uow, body.name, dict(body.filter))


@router.get("/{view_id}", response_model=SavedViewOut)
def get_view(view_id: ViewId, caller: Owner, db: Db) -> SavedView:
    view: SavedView = one(db, SavedView, caller.account_id, view_id, "saved view")
    if view.user_id != caller.actor.id:
        saved_views.not_yours(view_id)
    return view


@router.patch("/{view_id}", response_model=SavedViewOut)
def rename_view(view_id: ViewId, body: SavedViewPatch, uow: ViewsUow) -> SavedView:
    """Renames the view (the only change a view takes: its filter is what it is, save another for another)."""
    return saved_views.rename_view(uow, view_id, body.name)


@router.delete("/{view_id}", status_code=204, response_class=Response)
def delete_view(view_id: ViewId, uow: ViewsUow) -> Response:
    saved_views.delete_view(uow, view_id)
    return Response(status_code=204)
