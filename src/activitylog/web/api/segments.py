"""Segments of a list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from activitylog.db.models import Segment
from activitylog.services import segments
from activitylog.services.listing import one, page
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit
from activitylog.web.deps import Db, Reader, WriteUow
from activitylog.web.schemas import Page, SegmentIn, SegmentOut, SegmentPatch

router = APIRouter(prefix="/api/v1/segments", tags=["segments"], responses=ERROR_RESPONSES)


@router.get("", response_model=Page[SegmentOut])
def list_segments(caller: Reader, db: Db, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    rows, next_cursor = page(db, Segment, caller.account_id, limit=limit, cursor=cursor)
    return {"data": rows, "next_cursor": next_cursor}


@router.get("/{segment_id}", response_model=SegmentOut)
def get_segment(segment_id: str, caller: Reader, db: Db) -> Any:
    return one(db, Segment, caller.account_id, segment_id, "segment")


@router.post("", response_model=SegmentOut, status_code=201)
def create_segment(body: SegmentIn, uow: WriteUow) -> Segment:
    return segments.create_segment(uow, body.model_dump(mode="json"))


@router.patch("/{segment_id}", response_model=SegmentOut)
def patch_segment(segment_id: str, body: SegmentPatch, uow: WriteUow) -> Segment:
    return segments.update_segment(uow, segment_id, body.changes())


@router.delete("/{segment_id}", status_code=204)
def delete_segment(segment_id: str, uow: WriteUow) -> Response:
    segments.delete_segment(uow, segment_id)
    return Response(status_code=204)
