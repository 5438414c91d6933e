"""Legal holds: windows of the log that the retention purge must keep (owners, admins, keys with ``full``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from activitylog.db.models import LegalHold
from activitylog.services import retention
from activitylog.services.auth import Principal
from activitylog.services.listing import page
from activitylog.services.uow import UnitOfWork
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit
from activitylog.web.deps import Db, allowed, uow_for
from activitylog.web.schemas import Input, Page, UtcInstant

router = APIRouter(prefix="/api/v1/legal-holds", tags=["retention"], responses=ERROR_RESPONSES)

Manager = Annotated[Principal, Depends(allowed("holds:manage"))]
HoldsUow = Annotated[UnitOfWork, Depends(uow_for("holds:manage"))]


def _text(value: str) -> str:
    if any(not ch.isprintable() for ch in value) or not value.strip():
        raise ValueError("must be printable text, not blank")
    return value.strip()


Reason = Annotated[
    str,
    Field(min_length=1, max_length=500, description="why the entries must be kept"),
    AfterValidator(_text),
]


class LegalHoldIn(Input):
    reason: Reason
    since: UtcInstant | None = Field(
        default=None, description="the first instant held (default: the log's beginning); with a time zone"
    )
    until: UtcInstant | None = Field(
        default=None, description="the last instant held (default: open, every later entry too)"
    )


class LegalHoldOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    reason: str
    since: datetime | None
    until: datetime | None
    created_at: datetime
    released_at: datetime | None
    active: bool = Field(description="true until the hold is released")


def _out(hold: LegalHold) -> LegalHoldOut:
    return LegalHoldOut(
        id=hold.id,
        reason=hold.reason,
        since=hold.since,
        until=hold.until,
        created_at=hold.created_at,
        released_at=hold.released_at,
        active=hold.released_at is None,
    )


@router.post("", response_model=LegalHoldOut, status_code=201)
def create_hold(body: LegalHoldIn, uow: HoldsUow) -> LegalHoldOut:
    return _out(retention.create_hold(uow, reason=body.reason, since=body.since, until=body.until))


@router.get("", response_model=Page[LegalHoldOut])
def list_holds(caller: Manager, db: Db, limit: Limit = 50, cursor: Cursor = None) -> dict[str, object]:
    rows, next_cursor = page(db, LegalHold, caller.account_id, limit=limit, cursor=cursor)
    return {"data": [_out(h) for h in rows], "next_cursor": next_cursor}


@router.post("/{hold_id}/release", response_model=LegalHoldOut)
def release_hold(hold_id: str, uow: HoldsUow) -> LegalHoldOut:
    return _out(retention.release_hold(uow, hold_id))
