"""The dashboard: server-rendered pages over the same services (and the same choke point) as the API."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from activitylog.web.dashboard import (
    activity,
    alerts,
    downloads,
    resources,
    saved_views,
    signin,
    streams,
    verify,
)
from activitylog.web.dashboard.catalog import KINDS, NAVIGATION
from activitylog.web.dashboard.render import STATIC_DIR, environment

environment.globals["nav"] = [
    (slug, KINDS[slug].title, KINDS[slug].read_permission) for slug in NAVIGATION
] + [("streams", "Streams", streams.PERMISSION)]


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
        resources,
    ):  # verify, saved views and downloads before /activity/{seq}, streams before /{slug}
        app.include_router(module.router)
