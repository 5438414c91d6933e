"""Broadcasts and their lifecycle actions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from activitylog.db.models import Broadcast
from activitylog.services import broadcasts
from activitylog.services.listing import one, page
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit
from activitylog.web.deps import Db, Reader, WriteUow
from activitylog.web.schemas import BroadcastIn, BroadcastOut, BroadcastPatch, Page, ScheduleIn

router = APIRouter(prefix="/api/v1/broadcasts", tags=["broadcasts"], responses=ERROR_RESPONSES)


@router.get("", response_model=Page[BroadcastOut])
def list_broadcasts(caller: Reader, db: Db, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    rows, next_cursor = page(db, Broadcast, caller.account_id, limit=limit, cursor=cursor)
    return {"data": rows, "next_cursor": next_cursor}


@router.get("/{broadcast_id}", response_model=BroadcastOut)
def get_broadcast(broadcast_id: str, caller: Reader, db: Db) -> Any:
    return one(db, Broadcast, caller.account_id, broadcast_id, "broadcast")


@router.post("", response_model=BroadcastOut, status_code=201)
def create_broadcast(body: BroadcastIn, uow: WriteUow) -> Broadcast:
    return broadcasts.create_broadcast(uow, body.model_dump(mode="python"))


@router.patch("/{broadcast_id}", response_model=BroadcastOut)
def patch_broadcast(broadcast_id: str, body: BroadcastPatch, uow: WriteUow) -> Broadcast:
    return broadcasts.update_broadcast(uow, broadcast_id, body.changes())


@router.delete("/{broadcast_id}", status_code=204)
def delete_broadcast(broadcast_id: str, uow: WriteUow) -> Response:
    broadcasts.delete_broadcast(uow, broadcast_id)
    return Response(status_code=204)


@router.post("/{broadcast_id}/schedule", response_model=BroadcastOut)
def schedule_broadcast(broadcast_id: str, body: ScheduleIn, uow: WriteUow) -> Broadcast:
    return broadcasts.schedule(uow, broadcast_id, body.send_at)


@router.post("/{broadcast_id}/unschedule", response_model=BroadcastOut)
def unschedule_broadcast(broadcast_id: str, uow: WriteUow) -> Broadcast:
    return broadcasts.unschedule(uow, broadcast_id)


@router.post("/{broadcast_id}/send", response_model=BroadcastOut)
def send_broadcast(broadcast_id: str, uow: WriteUow) -> Broadcast:
    return broadcasts.send(uow, broadcast_id)


@router.post("/{broadcast_id}/pause", response_model=BroadcastOut)
def pause_broadcast(broadcast_id: str, uow: WriteUow) -> Broadcast:
    return broadcasts.pause(uow, broadcast_id)


@router.post("/{broadcast_id}/resume", response_model=BroadcastOut)
def resume_broadcast(broadcast_id: str, uow: WriteUow) -> Broadcast:
    return broadcasts.resume(uow, broadcast_id)


@router.post("/{broadcast_id}/archive", response_model=BroadcastOut)
def archive_broadcast(broadcast_id: str, uow: WriteUow) -> Broadcast:
    """Keep a sent (or paused) broadcast with its delivery records and release its list or segment, so
    those can be deleted; a broadcast that went out to anyone cannot be deleted."""
    return broadcasts.archive(uow, broadcast_id)
