"""What an operator sees of each request: its latency in the metrics, by route template
(``/api/v1/lists/{list_id}``, never the raw path, so the series stay few), and one JSON log line with its
``request_id``.

The log line names the route template and not the path or query string: paths hold resource ids and
email addresses (``/api/v1/suppressions/{email}``) and queries may hold filters; neither belongs in a log file
that an erasure cannot reach.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activitylog import metrics

log = logging.getLogger("activitylog.request")
UNMATCHED = "unmatched"  # no route took the request (a 404 for an unknown path): one series for all


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class ObservedRequests:
    """Times every HTTP request from its start to its last body byte (a streamed export included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app fails before it starts a response

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    @staticmethod
    def _observe(scope: Scope, status: int, seconds: float) -> None:
        method, route = scope["method"], route_template(scope)
        metrics.HTTP_DURATION.labels(method, route).observe(seconds)
        metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
        client = scope.get("client")
        fields = {
            "request_id": scope.get("state", {}).get("request_id"),
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "client": client[0] if client else None,
        }
        log.info("%s %s %d", method, route, status, extra={"fields": fields})
