"""Edge guards applied to every request before any route: body size, NUL bytes, security headers."""

from __future__ import annotations

from starlette.responses import JSONResponse
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
    def _refusal(scope: Scope) -> JSONResponse | None:
        if "\x00" in scope["path"]:
            return JSONResponse(error_body("invalid", "path: must not contain NUL characters", "path"), 422)
        query = scope.get("query_string", b"")
        if b"%00" in query or b"\x00" in query:
            return JSONResponse(error_body("invalid", "query: must not contain NUL characters", "query"), 422)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                return too_large_body()
        return None
