"""Saved views on the activity page: the viewer's named filters beside the form, "Save this view", rename
and delete. Each change goes through ``services.saved_views`` in the viewer's unit of work (CSRF-checked
forms), so it is logged with the session as its actor, exactly like the API's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request, Response

from activitylog.services import saved_views
from activitylog.web.dashboard.activity import PAGE_EXTRAS
from activitylog.web.dashboard.render import (
    FormDep,
    PageRoute,
    Viewer,
    current_viewer,
    redirect,
    typed_filter,
)
from activitylog.web.deps import get_db

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PERMISSION = "saved_views:manage"
ViewId = Annotated[str, Path(max_length=40)]


@dataclass(frozen=True)
class Shown:
    """A saved view as the page lists it: its name, the page it opens, and whether it is the one applied."""

    id: str
    name: str
    href: str
    current: bool


def activity_url(values: dict[str, str]) -> str:
    return "/activity" + (f"?{urlencode(sorted(values.items()))}" if values else "")


def listed(request: Request, viewer: Viewer, applied: dict[str, str]) -> list[Shown]:
    """The viewer's views (none for a user who may not keep them), the applied one marked."""
    if not viewer.can(PERMISSION):
        return []
    views, _ = saved_views.list_views(get_db(request), viewer.account_id, viewer.principal.actor.id)
    return [Shown(v.id, v.name, activity_url(v.filter), v.filter == applied) for v in views]


@router.post("/activity/saved-views")
def save_view(request: Request, form: FormDep) -> Response:
    viewer = current_viewer(request)
    viewer.require(PERMISSION)
    view = saved_views.create_view(viewer.uow(request), form.get("name"), typed_filter(form))
    return redirect(activity_url(view.filter))


@router.post("/activity/saved-views/{view_id}/rename")
def rename_view(view_id: ViewId, request: Request, form: FormDep) -> Response:
    viewer = current_viewer(request)
    viewer.require(PERMISSION)
    view = saved_views.rename_view(viewer.uow(request), view_id, form.get("name"))
    return redirect(activity_url(view.filter))


@router.post("/activity/saved-views/{view_id}/delete")
def delete_view(view_id: ViewId, request: Request, _form: FormDep) -> Response:
    viewer = current_viewer(request)
    viewer.require(PERMISSION)
    saved_views.delete_view(viewer.uow(request), view_id)
    return redirect("/activity")


def page_context(request: Request, viewer: Viewer, params: dict[str, str] | None, _f: Any) -> dict[str, Any]:
    """The activity page's saved views, and the applied filter the "Save this view" form would save."""
    applied = params or {}
    return {
        "saved_views": listed(request, viewer, applied),
        "can_save_view": viewer.can(PERMISSION) and params is not None,
        "save_query": urlencode(sorted(applied.items())),
    }


PAGE_EXTRAS.append(page_context)
