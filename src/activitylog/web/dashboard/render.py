"""Rendering pages: the template environment, the signed-in viewer, and HTML answers for errors.

Dashboard routes use :class:`PageRoute`, so a domain error becomes an error page with the same status the
API would answer, and a missing session becomes a redirect to the sign-in page, never a JSON body.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

import jinja2
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from activitylog.errors import DomainError, Forbidden, InvalidInput, Unauthorized
from activitylog.log.chain import format_instant
from activitylog.services.auth import Principal, Refused, authenticate_session
from activitylog.services.uow import UnitOfWork
from activitylog.web.deps import SESSION_COOKIE, get_context, get_db
from activitylog.web.errors import validation_error
from activitylog.web.refusals import log_refused

WEB_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = WEB_DIR / "static"
CSRF_FIELD = "csrf_token"

environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(WEB_DIR / "templates"),
    autoescape=True,  # every page shows names and user agents that anyone could have typed
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def instant(value: datetime | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else format_instant(value)


def utc_text(value: datetime | str) -> str:
    """An instant as every page shows it before ``app.js`` puts it in the viewer's zone: the same shape,
    with the zone named (``2026-03-14 09:26:53 UTC``)."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Link:
    """A cell that links elsewhere, e.g. a broadcast's list by its name, between unlinked words."""

    text: str
    href: str
    before: str = ""
    after: str = ""


def _short(value: Any, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def changed_fields(changes: dict[str, Any], shown: int = 3) -> list[str]:
    """What an entry changed, in a few words beside its summary (``status → sent``, ``delivered → 2``), so
    that "Updated broadcast" says what the update was; the entry's page has the whole diff."""
    items = sorted(changes.items(), key=lambda kv: (kv[0] != "status", kv[0]))
    diffs = [(k, v) for k, v in items if isinstance(v, dict) and set(v) <= {"from", "to"}]
    if diffs and all(v.get("to") is None for _, v in diffs):
        return []  # a delete: its summary says it all
    words = [f"{k} → {_short(v['to'])}" if v.get("to") is not None else f"{k} cleared" for k, v in diffs]
    words += [k for k, v in items if (k, v) not in diffs]
    return words[:shown] + ([f"+{len(words) - shown} more"] if len(words) > shown else [])


environment.filters["instant"] = instant
environment.filters["changed"] = changed_fields
environment.filters["utc_text"] = utc_text
environment.tests["link"] = lambda v: isinstance(v, Link)
environment.filters["pretty"] = lambda v: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
environment.tests["datetime"] = lambda v: isinstance(v, datetime)


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to the sign-in form."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in user looking at a page."""

    principal: Principal

    @property
    def account_id(self) -> str:
        return self.principal.account_id

    @property
    def email(self) -> str:
        return self.principal.actor.name or ""

    @property
    def csrf_token(self) -> str:
        return self.principal.csrf_token or ""

    def can(self, permission: str) -> bool:
        return self.principal.can(permission)

    def require(self, permission: str) -> None:
        self.principal.require(permission)

    def uow(self, request: Request) -> UnitOfWork:
        """A unit of work acting as this session: dashboard edits are logged with the session as actor."""
        return UnitOfWork(
            get_db(request),
            account_id=self.account_id,
            actor=self.principal.actor,
            context=get_context(request),
            auth_session=self.principal.session,
        )


def current_viewer(request: Request) -> Viewer:
    """The session's user; like the API's caller, it also scopes this request's store to its account."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None and cached.is_session:
        return Viewer(cached)
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    try:
        principal = authenticate_session(get_db(request), token)
    except Unauthorized:
        raise SignInRequired from None
    request.state.principal = principal
    return Viewer(principal)


async def posted_form(request: Request) -> dict[str, Any]:
    """The submitted form as a dict (repeated names become lists), once its CSRF token has been checked."""
    viewer = current_viewer(request)
    form: FormData = await request.form()
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not hmac.compare_digest(sent, viewer.csrf_token):
        raise Forbidden("this form has expired or did not come from this site; reload the page and retry")
    values: dict[str, Any] = {}
    for name in form:
        if name == CSRF_FIELD:
            continue
        items = [v for v in form.getlist(name) if isinstance(v, str)]
        values[name] = items if len(items) > 1 else (items[0] if items else "")
    return values


ViewerDep = Annotated[Viewer, Depends(current_viewer)]
FormDep = Annotated[dict[str, Any], Depends(posted_form)]


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    viewer: Viewer | None = context.pop("viewer", None)
    html = environment.get_template(template).render(request=request, viewer=viewer, **context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def as_invalid(exc: ValidationError) -> InvalidInput:
    """A form's first validation problem, named by its field, like the API's 422 messages."""
    field, message = validation_error(exc.errors()[0])
    return InvalidInput(field or "form", message.removeprefix(f"{field}: ") if field else message)


def typed_filter(form: dict[str, Any]) -> dict[str, str]:
    """The ``filter`` field of a stream's or a saved view's form: the activity page's query string, as
    given. A filter named twice is refused, as the API refuses a parameter given twice (a comma is OR)."""
    text = str(form.get("filter") or "").strip().lstrip("?")
    try:
        pairs = parse_qsl(text, keep_blank_values=False, strict_parsing=bool(text))
    except ValueError:
        raise InvalidInput(
            "filter", "write it as the activity page's query, e.g. action=broadcast.*"
        ) from None
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            raise InvalidInput("filter", f"{name} given more than once; separate its values with commas")
        values[name] = value
    return values


def whole_number(text: str, field: str, message: str) -> int:
    """A form field's whole number: ASCII digits, at most a BIGINT's 19 (``int`` would take other scripts'
    digits, and refuse thousands of them with its own error), else InvalidInput naming the field."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise InvalidInput(field, message)
    return int(text)


def error_page(request: Request, exc: DomainError) -> HTMLResponse:
    viewer = None
    with contextlib.suppress(SignInRequired):
        viewer = current_viewer(request)
    return page(request, "error.html", status_code=exc.status, viewer=viewer, error=exc)


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def refuse_nul_in_form(request: Request) -> None:
    """Every dashboard form, sign-in included, refuses NUL in its text fields, as the API's JSON bodies
    and every query string do (``web/guards.py``): no lookup or store is asked to handle one. The parsed
    form is kept by the request, so the route reads it again for free."""
    if request.method != "POST" or not request.headers.get("content-type", "").startswith(FORM_TYPES):
        return
    try:
        form = await request.form()
    except MultiPartException as exc:  # as the framework answers a form it cannot parse
        raise HTTPException(400, "There was an error parsing the body") from exc
    for name, value in form.multi_items():
        if "\x00" in name:
            raise InvalidInput("form", "field names must not contain NUL characters")
        if isinstance(value, str) and "\x00" in value:
            raise InvalidInput(name, "must not contain NUL characters")


class PageRoute(APIRoute):
    """An HTML route: errors render as pages; an absent or expired session redirects to sign-in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                await refuse_nul_in_form(request)
                return await handler(request)
            except SignInRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return redirect(f"/sign-in?next={quote(target, safe='')}")
            except DomainError as exc:
                if isinstance(exc, Refused):
                    await log_refused(request, exc)
                return error_page(request, exc)
            except RequestValidationError as exc:
                errors = list(exc.errors())
                field, message = validation_error(errors[0]) if errors else (None, "invalid request")
                return error_page(request, InvalidInput(field or "query", message))

        return handle
