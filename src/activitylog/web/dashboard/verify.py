"""The Verify page: re-check the account's whole log against the signer's last checkpoint, with progress,
and the verdict as a page a person reads (the API's ``/activity/verify`` gives the same as JSON)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from activitylog.web.dashboard.render import FormDep, PageRoute, ViewerDep, current_viewer, page, redirect
from activitylog.web.deps import get_verify_runs

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/activity/verify")
def verify_page(request: Request, viewer: ViewerDep) -> Response:
    viewer.require("activity:read")
    run = get_verify_runs(request).latest(viewer.account_id)
    return page(request, "verify.html", viewer=viewer, run=run)


@router.post("/activity/verify")
def start_verify(request: Request, form: FormDep) -> Response:
    viewer = current_viewer(request)
    viewer.require("activity:read")
    get_verify_runs(request).start(viewer.account_id, incremental=form.get("mode") == "incremental")
    return redirect("/activity/verify")
