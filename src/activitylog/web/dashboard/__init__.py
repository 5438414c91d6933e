"""The dashboard: server-rendered pages over the same services (and the same choke point) as the API."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from activitylog.web.dashboard import (
    activity,
    alerts,
    downloads,
    resources,
    retention,
    saved_views,
    signin,
    streams,
    verify,
)
from activitylog.web.dashboard.catalog import KINDS, NAVIGATION
from activitylog.web.dashboard.render import STATIC_DIR, environment

environment.globals["nav"] = [
    (slug, KINDS[slug].title, KINDS[slug].read_permission) for slug in NAVIGATION
] + [("streams", "Streams", streams.PERMISSION), ("retention", "Retention", retention.PERMISSION)]


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in (
        signin,
        verify,
        saved_views,
        downloads,
        activity,
        streams,
        alerts,
        retention,
        resources,
    ):  # verify, saved views and downloads before /activity/{seq}; streams, retention before /{slug}
        app.include_router(module.router)
