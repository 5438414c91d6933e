"""The ASGI application: the REST API and the dashboard over one store."""

from __future__ import annotations

import gc

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activitylog import __version__, logs, worker_metrics
from activitylog.config import Settings
from activitylog.db.base import Database, connect
from activitylog.web import dashboard, errors, openapi, ops
from activitylog.web.api import (
    account,
    activity,
    alerts,
    api_keys,
    broadcasts,
    delivery_events,
    erasures,
    legal_holds,
    lists,
    proofs,
    reputation_rules,
    saved_views,
    segments,
    sending_domains,
    session,
    streams,
    suppressions,
    timeline,
)
from activitylog.web.context import request_id
from activitylog.web.guards import EdgeGuards
from activitylog.web.observe import ObservedRequests
from activitylog.web.params import check_route_query


class RequestIdMiddleware:
    """Give every request an id (the caller's ``X-Request-ID`` if sane) and echo it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(Request(scope))
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


def from_environment() -> FastAPI:
    """The app as each process of ``serve --processes N`` builds it for itself: its settings from the
    environment, a database pool of its own, the JSON log lines."""
    settings = Settings()
    logs.configure(settings.log_level)
    if settings.metrics and settings.worker_metrics_dir:  # a scrape of any process counts them all
        worker_metrics.WebShare(settings.worker_metrics_dir).start()
    app = create_app(settings)
    # Start-up's objects (modules, routes, schemas: about 180,000) are never garbage. Frozen, a full pass
    # of the collector walks only what requests made since, instead of pausing a request ~75 ms (a page's
    # p95 at 20 requests).
    gc.freeze()
    return app


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPIOffline(  # /docs and /redoc with their assets served from here, not from a CDN
        title="activitylog",
        version=__version__,
        description="An email-marketing account whose every mutation is recorded in a tamper-evident log.",
        static_url=openapi.DOCS_ASSETS,
    )
    openapi.install(app)
    app.state.settings = settings
    app.state.db = db or connect(settings.database_url)
    errors.install(app)
    for module in (
        session,
        account,
        api_keys,
        lists,
        segments,
        broadcasts,
        suppressions,
        sending_domains,
        reputation_rules,
        delivery_events,
        proofs,
        timeline,  # before activity: its /{seq} would take /histogram
        activity,
        streams,
        legal_holds,
        erasures,
        saved_views,
        alerts,
    ):
        # A query parameter the endpoint does not declare, given twice or empty is a 422 naming it, never
        # silently dropped (web/params.py).
        app.include_router(module.router, dependencies=[Depends(check_route_query)])
    app.include_router(ops.router)
    streams.install_metrics(app.state.db)  # stream lag and failures on /metrics
    dashboard.install(app)
    app.add_middleware(EdgeGuards)
    app.add_middleware(ObservedRequests)  # inside the request id, outside everything that answers
    app.add_middleware(RequestIdMiddleware)
    return app
