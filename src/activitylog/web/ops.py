"""For the operator's tooling: liveness, readiness and the Prometheus metrics, all unauthenticated.

``/healthz`` answers from the process alone (a load balancer restarts what does not answer it), ``/readyz``
asks what a request needs: the database takes a new connection and answers, its schema is the migrations'
head, and the checkpoint signing key loads. It opens its own connection each time, without the pool: a pool
that still holds live connections would say "ready" while the database refuses every new one. It says why in
one word per check and never the error's text (which may name hosts and users); the reason goes to the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.pool import NullPool
from starlette.responses import JSONResponse, Response

from activitylog import __version__, metrics, worker_metrics
from activitylog.config import Settings
from activitylog.db.base import Database, normalize_url
from activitylog.db.migrate import alembic_config
from activitylog.errors import NotFound
from activitylog.log.signing import SigningKeyError, load_signer

log = logging.getLogger("activitylog.readiness")
router = APIRouter(include_in_schema=False)
PROBE_TIMEOUT_SECONDS = 2


def probe_engine(url: str) -> Engine:
    """An engine that connects afresh for every check, and gives up within a couple of seconds."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url[len("sqlite:///") :]
        if not path or path == ":memory:":
            raise ValueError("an in-memory database has no readiness of its own")
        # read-only and never created: a database file that went away is "unreachable", not a new empty file
        return create_engine(
            f"sqlite:///file:{path}?mode=ro&uri=true",
            poolclass=NullPool,
            connect_args={"timeout": PROBE_TIMEOUT_SECONDS},
        )
    return create_engine(
        url,
        poolclass=NullPool,
        connect_args={
            "connect_timeout": PROBE_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={PROBE_TIMEOUT_SECONDS * 1000}",
            "prepare_threshold": None,
        },
    )


@dataclass
class Readiness:
    settings: Settings
    db: Database
    engine: Engine | None = None
    heads: frozenset[str] = field(default_factory=frozenset)
    signing_key_loaded: bool = False

    @classmethod
    def for_app(cls, settings: Settings, db: Database) -> Readiness:
        heads = frozenset(ScriptDirectory.from_config(alembic_config(db)).get_heads())
        try:
            engine: Engine | None = probe_engine(db.url)
        except ValueError:
            engine = None
        return cls(settings, db, engine, heads)

    def check(self) -> tuple[bool, dict[str, str]]:
        checks = {"database": "ok", "migrations": "ok", "signing_key": "ok"}
        try:
            versions = self._versions()
        except Exception as exc:
            log.warning("readiness: database unreachable: %s", str(exc).splitlines()[0] if str(exc) else exc)
            checks["database"] = "unreachable"
            checks["migrations"] = "unknown"
        else:
            if versions != self.heads:
                log.warning(
                    "readiness: schema at %s, the code expects %s", sorted(versions), sorted(self.heads)
                )
                checks["migrations"] = "pending" if versions else "none applied"
        if not self.signing_key_loaded:
            try:
                load_signer(self.settings)  # once it loads it stays loaded: the key does not go away
                self.signing_key_loaded = True
            except SigningKeyError as exc:
                log.warning("readiness: signing key: %s", exc)
                checks["signing_key"] = "unusable"
        return all(v == "ok" for v in checks.values()), checks

    def _versions(self) -> frozenset[str]:
        query = text("SELECT version_num FROM alembic_version")
        if self.engine is None:
            with self.db.read_connection() as connection:
                return frozenset(connection.execute(query).scalars())
        with self.engine.connect() as connection:
            try:
                return frozenset(connection.execute(query).scalars())
            except Exception:
                if self._has_no_version_table(connection):
                    return frozenset()
                raise

    @staticmethod
    def _has_no_version_table(connection: Connection) -> bool:
        try:
            connection.rollback()
            return not inspect(connection).has_table("alembic_version")
        except Exception:
            return False


def _readiness(request: Request) -> Readiness:
    readiness: Readiness | None = getattr(request.app.state, "readiness", None)
    if readiness is None:
        readiness = request.app.state.readiness = Readiness.for_app(
            request.app.state.settings, request.app.state.db
        )
    return readiness


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up and answering; asks nothing of the database."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    ready, checks = _readiness(request).check()
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})


@router.get("/metrics")
def metrics_text(request: Request) -> Response:
    """The Prometheus text format, when ``ACTIVITYLOG_METRICS=true``; else 404 like any unknown path."""
    settings: Settings = request.app.state.settings
    if not settings.metrics:
        raise NotFound("not found")
    if settings.worker_metrics_dir:  # the worker processes' metrics too
        merged = worker_metrics.Merged(metrics.REGISTRY, settings.worker_metrics_dir)
        return Response(generate_latest(merged), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
