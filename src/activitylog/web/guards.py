"""Edge guards applied to every request before any route: body size, NUL bytes, security headers."""

from __future__ import annotations

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activitylog.web.errors import MAX_BODY_BYTES, BodyTooLarge, error_body, too_large_body

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# Dashboard pages: only this origin's own script, styles and forms; no framing, no plugins, no <base>.
PAGE_CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
)
DOCS_PATHS = ("/docs", "/redoc")  # the OpenAPI viewers start from an inline script
MAX_QUERY_BYTES = 16 * 1024
"""The longest query string taken: every filter at its longest fits, and longer is refused with a 414 that
says so (the dashboard's inputs carry the filters' lengths as maxlength, so its form cannot get there)."""
MAX_REQUEST_HEAD_BYTES = 256 * 1024
"""What the server reads of a request's line and headers (uvicorn's h11 option): beyond the query limit, so
an over-long query string reaches the 414 above instead of the bare "Invalid HTTP request received."."""
TOO_LONG = f"query: too long (at most {MAX_QUERY_BYTES // 1024} KiB); use fewer or shorter filters"


class EdgeGuards:
    """Refuses oversized bodies (413) and NUL in paths or queries (422); adds security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise BodyTooLarge  # answered 413 by the handler in web/errors.py
            return message

        path = scope["path"]
        csp = API_CSP if path.startswith("/api/") else None if path.startswith(DOCS_PATHS) else PAGE_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers.extend(SECURITY_HEADERS)
                if csp is not None:
                    headers.append(csp)
            await send(message)

        await self.app(scope, counted_receive, send_with_headers)

    @staticmethod
    def _refusal(scope: Scope) -> Response | None:
        if len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
            if scope["path"].startswith("/api/"):
                return JSONResponse(error_body("uri_too_long", TOO_LONG, "query"), 414)
            page = (
                "<!doctype html><html lang=en><meta charset=utf-8><title>Address too long</title>"
                f"<h1>That address is too long</h1><p role=alert>{TOO_LONG}.</p>"
                '<p><a href="/activity">Back to the activity log</a></p></html>'
            )
            return HTMLResponse(page, 414)
        if "\x00" in scope["path"]:
            return JSONResponse(error_body("invalid", "path: must not contain NUL characters", "path"), 422)
        query = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            return JSONResponse(error_body("invalid", "query: must not contain NUL characters", "query"), 422)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                return too_large_body()
        return None
