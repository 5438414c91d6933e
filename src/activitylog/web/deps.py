"""Request dependencies: the store, the caller (session or API key, with CSRF), and a unit of work for them.

Routes declare what they need with the ``Annotated`` aliases at the bottom; a route that writes can only
get a :class:`UnitOfWork` bound to the caller's account and actor, so attribution is never the route's job.
The store a route gets is limited to the caller's account (PostgreSQL row-level security), and to no
account at all before the caller is known.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.errors import Forbidden, Unauthorized
from activitylog.log.checkpoints import CheckpointSigner
from activitylog.log.record import RequestContext
from activitylog.log.signing import load_signer
from activitylog.services.auth import Principal, authenticate_api_key, authenticate_session
from activitylog.services.uow import UnitOfWork
from activitylog.services.verification import VerifyRuns
from activitylog.web.context import request_context

SESSION_COOKIE = "activitylog_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_db(request: Request) -> Database:
    """The store, limited to the account of the caller this request authenticated as (resolved when each
    transaction begins, since routes may receive the store before their caller is resolved)."""
    db: Database = request.app.state.db
    return db.for_account(lambda: caller_account(request))


async def request_db(request: Request) -> Database:
    """:func:`get_db` as a dependency: it does no I/O, so it runs on the event loop instead of costing a
    round trip through the worker threads (as every plain ``def`` dependency does)."""
    return get_db(request)


def caller_account(request: Request) -> str | None:
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal.account_id if principal is not None else None


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    """The session cookie, the same for the API's sign-in and the dashboard's: HttpOnly, SameSite=Lax."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_ttl_hours * 3600,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )


def get_signer(request: Request) -> CheckpointSigner:
    """The checkpoint signer, loaded (and on first run created) when first needed."""
    signer: CheckpointSigner | None = getattr(request.app.state, "signer", None)
    if signer is None:
        settings = get_settings(request)
        signer = request.app.state.signer = CheckpointSigner(settings, load_signer(settings))
    return signer


def get_verify_runs(request: Request) -> VerifyRuns:
    """The process's verify runs: one per account and mode at a time."""
    runs: VerifyRuns | None = getattr(request.app.state, "verify_runs", None)
    if runs is None:
        runs = request.app.state.verify_runs = VerifyRuns(request.app.state.db, get_signer(request))
    return runs


def get_context(request: Request) -> RequestContext:
    return request_context(request, get_settings(request).trusted_proxy_networks)


_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key: `Authorization: Bearer alk_…` (shown once, when the key is created or rotated).",
)
_COOKIE = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="session",
    description="The dashboard session from `POST /api/v1/session`; unsafe methods also need the "
    "`X-CSRF-Token` header from that response.",
)


async def declared_credentials(
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    _cookie: Annotated[str | None, Depends(_COOKIE)],
) -> None:
    """Says in the OpenAPI schema how a caller authenticates (either scheme), so the docs offer an
    Authorize button; the checks themselves are :func:`get_principal`'s."""


Credentials = Annotated[None, Depends(declared_credentials)]


def get_principal(request: Request, _credentials: Credentials = None) -> Principal:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    db = get_db(request)
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("use 'Authorization: Bearer <API key>'")
        principal = authenticate_api_key(db, token.strip(), get_context(request).ip)
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise Unauthorized("sign in or send an API key")
        principal = authenticate_session(db, cookie)
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not principal.csrf_token or not hmac.compare_digest(sent, principal.csrf_token):
                raise Forbidden("missing or wrong X-CSRF-Token header")
    request.state.principal = principal
    return principal


def allowed(permission: str) -> Callable[[Request], Principal]:
    def dependency(request: Request, _credentials: Credentials = None) -> Principal:
        principal = get_principal(request)
        principal.require(permission)
        return principal

    return dependency


def uow_for(permission: str) -> Callable[[Request], UnitOfWork]:
    def dependency(request: Request, _credentials: Credentials = None) -> UnitOfWork:
        principal = allowed(permission)(request)
        return UnitOfWork(
            get_db(request),
            account_id=principal.account_id,
            actor=principal.actor,
            context=get_context(request),
            auth_session=principal.session,
        )

    return dependency


Db = Annotated[Database, Depends(request_db)]
Context = Annotated[RequestContext, Depends(get_context)]
Caller = Annotated[Principal, Depends(get_principal)]
Reader = Annotated[Principal, Depends(allowed("resources:read"))]
Writer = Annotated[Principal, Depends(allowed("resources:write"))]
LogReader = Annotated[Principal, Depends(allowed("activity:read"))]
ProofReader = Annotated[Principal, Depends(allowed("checkpoint:read"))]
WriteUow = Annotated[UnitOfWork, Depends(uow_for("resources:write"))]
KeysUow = Annotated[UnitOfWork, Depends(uow_for("api_keys:manage"))]
KeysReader = Annotated[Principal, Depends(allowed("api_keys:manage"))]
UsersUow = Annotated[UnitOfWork, Depends(uow_for("users:manage"))]
AccountUow = Annotated[UnitOfWork, Depends(uow_for("account:manage"))]
