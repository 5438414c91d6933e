"""The Alerts pages: the open-alert badge on every page, the list, one alert with links to the entries
that tripped it and an acknowledge button, and the alert-policy settings. Changes go through the same
services as the API, in the viewer's unit of work, so they are logged with the session as actor."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, Response

from activitylog.alerts import policy, store
from activitylog.alerts.policy import ALL_KINDS, KINDS, Policy
from activitylog.errors import DomainError, InvalidInput
from activitylog.web.dashboard.links import actor_link
from activitylog.web.dashboard.render import (
    FormDep,
    PageRoute,
    Viewer,
    ViewerDep,
    current_viewer,
    environment,
    page,
    redirect,
    whole_number,
)
from activitylog.web.deps import get_db

router = APIRouter(route_class=PageRoute, include_in_schema=False)
READ, MANAGE, POLICY = "alerts:read", "alerts:manage", "alert_policy:manage"
AlertId = Annotated[str, Path(max_length=40)]
SHOWN = 100


def open_alerts(request: Request, viewer: Viewer) -> int:
    """The badge's number: the viewer's account's open alerts (0 for those who may not read them)."""
    if not viewer.can(READ):
        return 0
    return store.open_count(get_db(request), viewer.account_id)


environment.globals["open_alerts"] = open_alerts


@router.get("/alerts")
def list_alerts(
    request: Request,
    viewer: ViewerDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    kind: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    viewer.require(READ)
    rows, _ = store.page(
        get_db(request), viewer.account_id, status=status or None, kind=kind or None, limit=SHOWN
    )
    return page(
        request,
        "alerts.html",
        viewer=viewer,
        alerts=[store.as_api(a) for a in rows],
        status=status or "",
        kind=kind or "",
        kinds=ALL_KINDS,
    )


def detail_page(
    request: Request, viewer: Viewer, alert_id: str, error: DomainError | None = None
) -> Response:
    alert = store.as_api(store.get(get_db(request), viewer.account_id, alert_id))
    actor = alert["actor"]
    return page(
        request,
        "alert.html",
        status_code=error.status if error else 200,
        viewer=viewer,
        a=alert,
        actor_href=actor_link(actor["type"], actor["id"]) if actor else None,
        error=error,
    )


@router.get("/alerts/{alert_id}")
def show_alert(alert_id: AlertId, request: Request, viewer: ViewerDep) -> Response:
    viewer.require(READ)
    return detail_page(request, viewer, alert_id)


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge(alert_id: AlertId, request: Request, _form: FormDep) -> Response:
    viewer = current_viewer(request)
    viewer.require(MANAGE)
    try:
        store.acknowledge(viewer.uow(request), alert_id)
    except DomainError as exc:
        return detail_page(request, viewer, alert_id, error=exc)
    return redirect(f"/alerts/{quote(alert_id, safe='')}")


def policy_page(
    request: Request, viewer: Viewer, error: DomainError | None = None, saved: bool = False
) -> Response:
    current = policy.of_account(get_db(request), viewer.account_id).as_api()
    return page(
        request,
        "alert_policy.html",
        status_code=error.status if error else 200,
        viewer=viewer,
        current=current,
        kinds=KINDS,
        error=error,
        saved=saved,
        can_change=viewer.can(POLICY),
    )


@router.get("/alert-policy")
def show_policy(
    request: Request, viewer: ViewerDep, saved: Annotated[str | None, Query(max_length=10)] = None
) -> Response:
    viewer.require(READ)
    return policy_page(request, viewer, saved=bool(saved))


def _patch(form: dict[str, Any]) -> dict[str, Any]:
    """The form's fields (``burst.delete.count``, a checkbox per ``….enabled``) as a policy patch, typed
    as the API takes them; a number that is not one (in ASCII digits: ``int`` and ``float`` also take other
    scripts' digits, underscores, ``nan``) or a checkbox that is neither ticked nor left out is refused,
    naming its field."""
    defaults = Policy().as_api()
    patch: dict[str, Any] = {"email": _ticked(form, "email")}
    for kind in KINDS:
        settings: dict[str, Any] = {"enabled": _ticked(form, f"{kind}.enabled")}
        for name, default in defaults[kind].items():
            if name == "enabled":
                continue
            field = f"{kind}.{name}"
            text = str(form.get(field) or "").strip()
            if not _NUMBER.fullmatch(text) or (not isinstance(default, float) and "." in text):
                raise InvalidInput(field, "must be a number" if isinstance(default, float) else A_COUNT)
            settings[name] = float(text) if isinstance(default, float) else whole_number(text, field, A_COUNT)
        patch[kind] = settings
    return patch


_NUMBER = re.compile(r"[0-9]{1,19}(\.[0-9]{1,19})?", re.ASCII)
A_COUNT = "must be a whole number"


def _ticked(form: dict[str, Any], field: str) -> bool:
    """A checkbox: a browser sends ``on`` when it is ticked and nothing when it is not."""
    value = form.get(field) or ""
    if value not in ("", "on"):
        raise InvalidInput(field, "a checkbox: ticked (on) or left out")
    return value == "on"


@router.post("/alert-policy")
def change_policy(request: Request, form: FormDep) -> Response:
    viewer = current_viewer(request)
    viewer.require(POLICY)
    try:
        policy.update(viewer.uow(request), _patch(form))
    except DomainError as exc:
        return policy_page(request, viewer, error=exc)
    return redirect("/alert-policy?saved=1")
