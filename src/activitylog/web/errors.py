"""Every error as ``{"error": {"code", "message"}}``; bad input names its field and is never a 500."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from activitylog.errors import DomainError
from activitylog.services.auth import Refused, RevokedApiKey, log_revoked_key_use
from activitylog.web.deps import get_context, get_db
from activitylog.web.observe import route_template
from activitylog.web.refusals import log_refused

log = logging.getLogger("activitylog")
_LEADING_FIELD = re.compile(r"^([a-z_][a-z0-9_.]*): ")
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
}


MAX_BODY_BYTES = 6 * 1024 * 1024  # a 10,000-row contact import is well under this


class BodyTooLarge(Exception):
    """The request body grew past MAX_BODY_BYTES while it was being read."""


def too_large_body() -> JSONResponse:
    message = f"body: larger than {MAX_BODY_BYTES // (1024 * 1024)} MB"
    return JSONResponse(error_body("too_large", message, "body"), status_code=413)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


_UNION_MEMBER = re.compile(r"^(str|int|float|bool|constrained-\w+|\w+\[.*\])$")  # which branch of a union
_UNION_TAGS = {"condition": ("event", "rate")}  # a discriminated union's tag is no part of the field name


def _field_path(loc: tuple[Any, ...]) -> list[str]:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    parts = [p for p in parts if not p.startswith("function-") and not _UNION_MEMBER.match(p)]
    for i in range(len(parts) - 2, -1, -1):
        if parts[i + 1] in _UNION_TAGS.get(parts[i], ()) and i + 2 < len(parts):
            del parts[i + 1]
    return parts


def validation_error(err: Any) -> tuple[str | None, str]:
    """The field a pydantic error is about, and a message that starts with it."""
    loc = _field_path(tuple(err.get("loc", ())))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if m := _LEADING_FIELD.match(msg):  # a model-level check that names its own field
        named = ".".join([*loc, m.group(1)])
        return named, f"{named}: {msg[m.end() :]}"
    field = ".".join(loc) or None
    if field is None and err.get("loc", ("body",))[:1] == ("body",):
        field = "body"  # the body as a whole: absent, or not the JSON object the endpoint takes
    return field, f"{field}: {msg}" if field else msg


def _allowed_methods(request: Request) -> str:
    """Every method the API serves at this path (from its OpenAPI paths): the router's own 405 names only
    the methods of the first route whose path matched."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in operations}
    return ", ".join(sorted(methods))


def _unreadable_body(cause: BaseException) -> JSONResponse:
    """Say why a body could not be read, instead of the framework's generic 400."""
    if isinstance(cause, BodyTooLarge):  # raised while the framework was reading a streamed body
        return too_large_body()
    if isinstance(cause, UnicodeDecodeError):
        message = "body: not valid UTF-8"
    elif isinstance(cause, RecursionError):
        message = "body: JSON nested too deeply"
    else:
        message = "body: could not be read as JSON"
    return JSONResponse(error_body("bad_request", message, "body"), status_code=400)


def install(app: FastAPI) -> None:
    @app.exception_handler(BodyTooLarge)
    async def _too_large(_request: Request, _exc: BodyTooLarge) -> JSONResponse:
        return too_large_body()

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.field), status_code=exc.status)

    @app.exception_handler(RevokedApiKey)
    async def _revoked(request: Request, exc: RevokedApiKey) -> JSONResponse:
        """Logged here, where the request's IP and user agent are known; still the same 401."""
        await run_in_threadpool(log_revoked_key_use, get_db(request), exc, get_context(request))
        return JSONResponse(error_body(exc.code, exc.message, exc.field), status_code=exc.status)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSONResponse:
        """Logged as the attempt it was (``<resource_type>.denied``); still the same 403."""
        await log_refused(request, exc)
        return JSONResponse(error_body(exc.code, exc.message, exc.field), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        field, message = validation_error(errors[0]) if errors else (None, "invalid request")
        if errors and errors[0].get("type") == "json_invalid":
            field, message = "body", "body: not valid JSON"
        return JSONResponse(error_body("invalid", message, field), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:  # the framework could not read the body
            return _unreadable_body(exc.__cause__)
        code = _STATUS_CODES.get(exc.status_code, "error")
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if not exc.connection_invalidated:
            return await _unexpected(request, exc)
        # The database went away (a restart, a failover); the pool has dropped its connections and the
        # next request connects afresh, so the caller may simply retry.
        route = route_template(request.scope)
        log.warning("database connection lost on %s %s: %s", request.method, route, exc.orig)
        body = error_body("unavailable", "the database connection was lost; retry the request")
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The route's template, never the path: a path can hold an address (``/suppressions/{email}``).
        log.exception("unhandled error on %s %s", request.method, route_template(request.scope))
        return JSONResponse(error_body("internal", "internal error; it has been logged"), status_code=500)
