"""Dashboard sign-in and sign-out: an HttpOnly, SameSite=Lax cookie plus a CSRF token for unsafe requests."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response

from activitylog.db.models import User
from activitylog.errors import Unauthorized
from activitylog.services import auth
from activitylog.services.listing import one
from activitylog.web.api import ERROR_RESPONSES
from activitylog.web.deps import SESSION_COOKIE, Caller, Context, Db, get_settings, set_session_cookie
from activitylog.web.schemas import SessionOut, SignInIn, UserOut

router = APIRouter(prefix="/api/v1/session", tags=["session"], responses=ERROR_RESPONSES)


@router.post("", response_model=SessionOut)
def sign_in(body: SignInIn, request: Request, response: Response, db: Db, context: Context) -> SessionOut:
    settings = get_settings(request)
    ttl = timedelta(hours=settings.session_ttl_hours)
    result = auth.sign_in(db, body.email, body.password, context, ttl)
    set_session_cookie(response, result.token, settings)
    return SessionOut(user=UserOut.model_validate(result.user), csrf_token=result.csrf_token)


@router.get("", response_model=SessionOut)
def current(caller: Caller, request: Request, db: Db) -> SessionOut:
    if not caller.is_session:
        raise Unauthorized("not signed in")
    user = one(db, User, caller.account_id, caller.actor.id, "user")
    return SessionOut(user=UserOut.model_validate(user), csrf_token=caller.csrf_token or "")


@router.delete("", status_code=204)
def sign_out(caller: Caller, request: Request, db: Db, context: Context) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if not caller.is_session or not token:
        raise Unauthorized("not signed in")
    auth.sign_out(db, caller, token, context)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
