"""Reading the log: filtered, keyset-paginated, newest first; one entry; chain verification."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from activitylog.db.models import ActivityEntry
from activitylog.errors import NotFound
from activitylog.log.entry import entry_to_api
from activitylog.log.export import filename as export_filename
from activitylog.log.export import stream
from activitylog.log.query import ActivityFilter, decode_cursor, encode_cursor, page_statement, parse_filter
from activitylog.log.verify import verify_account
from activitylog.services.exports import log_export
from activitylog.services.uow import UnitOfWork
from activitylog.web.api import Cursor, Limit
from activitylog.web.deps import Db, LogReader, get_context
from activitylog.web.schemas import EntryOut, Page, VerifyOut

router = APIRouter(prefix="/api/v1/activity", tags=["activity log"])
Text = Annotated[str | None, Query(max_length=4000)]


def activity_filter(
    actor: Text = None,
    actor_type: Text = None,
    action: Text = None,
    resource_type: Text = None,
    resource_id: Text = None,
    ip: Text = None,
    since: Text = None,
    until: Text = None,
    q: Text = None,
) -> ActivityFilter:
    """The contract's filters (comma = OR inside one, AND across them)."""
    return parse_filter(
        actor=actor,
        actor_type=actor_type,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        ip=ip,
        since=since,
        until=until,
        q=q,
    )


Filter = Annotated[ActivityFilter, Depends(activity_filter)]


@router.get("", response_model=Page[EntryOut])
def list_activity(
    caller: LogReader, db: Db, f: Filter, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    before = decode_cursor(cursor)
    with db.reader() as session:
        rows = session.execute(page_statement(caller.account_id, f, before_seq=before, limit=limit)).all()
    more = len(rows) > limit
    data = [entry_to_api(r) for r in rows[:limit]]
    return {"data": data, "next_cursor": encode_cursor(data[-1]["seq"]) if more else None}


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
)
def export(
    caller: LogReader,
    request: Request,
    db: Db,
    f: Filter,
    format: Annotated[Literal["csv", "jsonl"], Query(description="csv (default) or jsonl")] = "csv",
) -> StreamingResponse:
    """The whole filtered slice, oldest first, streamed; the export itself is logged first."""
    uow = UnitOfWork(db, account_id=caller.account_id, actor=caller.actor, context=get_context(request))
    log_export(uow, f, format)
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    name = export_filename(caller.account_id, f, format)
    return StreamingResponse(
        stream(db, caller.account_id, f, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/verify", response_model=VerifyOut, response_model_exclude_none=True)
def verify(caller: LogReader, db: Db) -> dict[str, Any]:
    with db.reader() as session:
        return verify_account(session, caller.account_id).as_api()


@router.get("/{seq}", response_model=EntryOut)
def get_entry(seq: int, caller: LogReader, db: Db) -> dict[str, Any]:
    table = ActivityEntry.__table__
    with db.reader() as session:
        row = session.execute(
            select(table).where(table.c.account_id == caller.account_id, table.c.seq == seq)
        ).one_or_none()
    if row is None:
        raise NotFound(f"activity entry {seq} not found")
    return entry_to_api(row)
