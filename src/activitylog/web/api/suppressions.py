"""The suppression list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Response

from activitylog.db.models import Suppression
from activitylog.services import suppressions
from activitylog.services.listing import page
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit
from activitylog.web.deps import Db, Reader, WriteUow
from activitylog.web.schemas import Page, SuppressionIn, SuppressionOut

router = APIRouter(prefix="/api/v1/suppressions", tags=["suppressions"], responses=ERROR_RESPONSES)


@router.get("", response_model=Page[SuppressionOut])
def list_suppressions(caller: Reader, db: Db, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    rows, next_cursor = page(
        db, Suppression, caller.account_id, limit=limit, cursor=cursor, key=Suppression.email
    )
    return {"data": rows, "next_cursor": next_cursor}


@router.post("", response_model=SuppressionOut, status_code=201)
def suppress(body: SuppressionIn, uow: WriteUow) -> Suppression:
    return suppressions.suppress(uow, str(body.email), body.reason)


@router.delete("/{email}", status_code=204)
def unsuppress(email: str = Path(max_length=320), *, uow: WriteUow) -> Response:
    suppressions.unsuppress(uow, email)
    return Response(status_code=204)
