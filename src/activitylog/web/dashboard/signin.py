"""Sign-in and sign-out pages: the same sessions, cookie and logging as ``/api/v1/session``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from activitylog.errors import DomainError, Unauthorized
from activitylog.services import auth
from activitylog.web.dashboard.render import (
    FormDep,
    PageRoute,
    SignInRequired,
    current_viewer,
    page,
    redirect,
)
from activitylog.web.deps import SESSION_COOKIE, get_context, get_db, get_settings, set_session_cookie

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def local_path(target: str | None, default: str = "/activity") -> str:
    """Only a path on this site may be a post-sign-in destination (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


@router.get("/")
def home(request: Request) -> Response:
    try:
        current_viewer(request)
    except SignInRequired:
        return redirect("/sign-in")
    return redirect("/activity")


@router.get("/sign-in")
def sign_in_form(request: Request, next: str | None = None) -> Response:
    return page(request, "sign_in.html", next=local_path(next), email="", error=None)


@router.post("/sign-in")
def sign_in(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/activity",
) -> Response:
    settings = get_settings(request)
    ttl = timedelta(hours=settings.session_ttl_hours)
    try:
        if not email.strip() or not password:
            raise Unauthorized("enter your email and password")
        result = auth.sign_in(get_db(request), email, password, get_context(request), ttl)
    except DomainError as exc:
        return page(
            request, "sign_in.html", status_code=exc.status, next=local_path(next), email=email, error=exc
        )
    response = redirect(local_path(next))
    set_session_cookie(response, result.token, settings)
    return response


@router.post("/sign-out")
def sign_out(request: Request, form: FormDep) -> Response:
    viewer = current_viewer(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    auth.sign_out(get_db(request), viewer.principal, token, get_context(request))
    response = redirect("/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
