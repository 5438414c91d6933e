"""Streams: the log delivered to a webhook or NATS JetStream (owners, admins and keys with scope ``full``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, StrictInt

from activitylog.db.base import Database
from activitylog.db.models import Stream
from activitylog.relay.senders import Senders, send_test
from activitylog.services import stream_metrics, streams
from activitylog.services.auth import Principal
from activitylog.services.listing import page
from activitylog.services.uow import UnitOfWork
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit
from activitylog.web.deps import Db, allowed, get_settings, uow_for
from activitylog.web.schemas import Input, Name, Page

router = APIRouter(prefix="/api/v1/streams", tags=["streams"], responses=ERROR_RESPONSES)

Manager = Annotated[Principal, Depends(allowed("streams:manage"))]
StreamsUow = Annotated[UnitOfWork, Depends(uow_for("streams:manage"))]
FilterValue = (
    Annotated[str, Field(max_length=4000)]
    | Annotated[list[Annotated[str, Field(max_length=4000)]], Field(max_length=100)]
)
StreamFilter = Annotated[
    dict[str, FilterValue],
    Field(
        max_length=20,
        description="The activity filters of `GET /api/v1/activity` as an object, e.g. "
        '`{"action": "broadcast.*", "actor_type": "api_key"}`; empty: every entry (and checkpoints).',
    ),
]
Seq = Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]


class StreamIn(Input):
    name: Name
    type: Literal["webhook", "nats"]
    url: Annotated[str | None, Field(max_length=2000, description="webhook streams: http(s) URL")] = None
    subject: Annotated[str | None, Field(max_length=200, description="nats streams: subject prefix")] = None
    format: Literal["json", "ocsf"] = "json"
    filter: StreamFilter | None = None
    signing: Literal["hmac", "ed25519"] | None = Field(
        default=None, description="webhook streams: `hmac` (default) or `ed25519`"
    )
    from_seq: Seq | None = Field(
        default=None, description="the first entry to deliver (default: the entry that creates the stream)"
    )


class StreamPatch(Input):
    name: Name | None = None
    url: Annotated[str | None, Field(max_length=2000)] = None
    subject: Annotated[str | None, Field(max_length=200)] = None
    format: Literal["json", "ocsf"] | None = None
    filter: StreamFilter | None = None


class ReplayIn(Input):
    from_seq: Seq


class StreamOut(BaseModel):
    id: str
    name: str
    type: str
    url: str | None
    subject: str | None
    format: str
    filter: dict[str, str]
    signing: str | None
    public_key: str | None = Field(description="ed25519 streams: the `whpk_…` key to verify signatures with")
    state: Literal["active", "paused", "failing", "disabled"]
    created_at: datetime
    delivered_seq: int | None = Field(
        description="the last seq the stream has handled (delivered or filtered out)"
    )
    lag_seconds: float | None = Field(description="how long the oldest entry not yet handled has waited")
    last_error: str | None
    next_attempt_at: datetime | None = Field(description="when a failed event is retried")
    delivered_at: datetime | None


class StreamCreated(StreamOut):
    secret: str | None = Field(description="hmac streams: the `whsec_…` secret. Shown only in this response.")


class DeliveryOut(BaseModel):
    event_id: str = Field(description="the event's webhook-id / Nats-Msg-Id")
    seq: int | None
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int
    at: datetime
    skipped: list[int] | None = Field(
        None, description="[from, to]: a purged range the stream stepped over (an activity.skipped event)"
    )
    reason: str | None = Field(None, description='why it was skipped: "purged"')


class DeliveriesOut(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None = None


class TestOut(BaseModel):
    delivered: bool
    event_id: str
    status_code: int | None
    error: str | None
    duration_ms: int


@router.get("", response_model=Page[StreamOut])
def list_streams(caller: Manager, db: Db, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    rows, next_cursor = page(db, Stream, caller.account_id, limit=limit, cursor=cursor)
    return {"data": streams.views(db, rows), "next_cursor": next_cursor}


@router.get("/{stream_id}", response_model=StreamOut)
def get_stream(stream_id: str, caller: Manager, db: Db) -> dict[str, Any]:
    return streams.view(db, streams.get_stream(db, caller.account_id, stream_id))


@router.post("", response_model=StreamCreated, status_code=201)
def create_stream(body: StreamIn, uow: StreamsUow, db: Db, request: Request) -> dict[str, Any]:
    created = streams.create_stream(uow, body.model_dump(mode="python"), get_settings(request))
    return {**streams.view(db, created.stream), "secret": created.secret}


@router.patch("/{stream_id}", response_model=StreamOut)
def patch_stream(
    stream_id: str, body: StreamPatch, uow: StreamsUow, db: Db, request: Request
) -> dict[str, Any]:
    return streams.view(db, streams.update_stream(uow, stream_id, body.changes(), get_settings(request)))


@router.delete("/{stream_id}", status_code=204)
def delete_stream(stream_id: str, uow: StreamsUow) -> Response:
    streams.delete_stream(uow, stream_id)
    return Response(status_code=204)


@router.post("/{stream_id}/pause", response_model=StreamOut)
def pause_stream(stream_id: str, uow: StreamsUow, db: Db) -> dict[str, Any]:
    return streams.view(db, streams.pause_stream(uow, stream_id))


@router.post("/{stream_id}/resume", response_model=StreamOut)
def resume_stream(stream_id: str, uow: StreamsUow, db: Db) -> dict[str, Any]:
    return streams.view(db, streams.resume_stream(uow, stream_id))


@router.post("/{stream_id}/replay", response_model=StreamOut)
def replay_stream(stream_id: str, body: ReplayIn, uow: StreamsUow, db: Db) -> dict[str, Any]:
    return streams.view(db, streams.replay_stream(uow, stream_id, body.from_seq))


@router.post("/{stream_id}/test", response_model=TestOut)
def test_stream(stream_id: str, caller: Manager, db: Db, request: Request) -> dict[str, Any]:
    """Send one `activity.test` event now (not an entry: it changes nothing) and say how it went."""
    stream = streams.get_stream(db, caller.account_id, stream_id)
    return send_test(db, _senders(request), stream)


def install_metrics(db: Database) -> None:
    """Every stream's lag, state and retries on ``GET /metrics``, read from ``db`` at scrape time."""
    stream_metrics.install(db)


def _senders(request: Request) -> Senders:
    senders: Senders | None = getattr(request.app.state, "stream_senders", None)
    if senders is None:
        senders = request.app.state.stream_senders = Senders(get_settings(request))
    return senders


@router.get("/{stream_id}/deliveries", response_model=DeliveriesOut)
def list_deliveries(stream_id: str, caller: Manager, db: Db) -> dict[str, Any]:
    """The stream's most recent delivery attempts (up to 100), newest first."""
    return {"data": streams.recent_deliveries(db, caller.account_id, stream_id), "next_cursor": None}
