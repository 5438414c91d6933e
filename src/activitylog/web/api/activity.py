"""Reading the log: filtered, keyset-paginated, newest first; one entry; chain verification."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from activitylog.db.models import Checkpoint, SigningKey
from activitylog.log.checkpoints import checkpoint_to_api, register_key
from activitylog.log.export import filename as export_filename
from activitylog.log.export import manifest, stream
from activitylog.log.query import (
    MAX_SEQ,
    ActivityFilter,
    decode_cursor,
    encode_cursor,
    entries_page,
    one_entry,
    parse_filter,
)
from activitylog.log.signing import public_pem
from activitylog.log.verify import verify_account
from activitylog.services.exports import log_export
from activitylog.services.uow import UnitOfWork
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit, json_page
from activitylog.web.deps import Db, LogReader, get_context, get_signer
from activitylog.web.schemas import CheckpointOut, EntryOut, ManifestOut, Page, PublicKeysOut, VerifyOut

router = APIRouter(prefix="/api/v1/activity", tags=["activity log"], responses=ERROR_RESPONSES)
AS_OF_HEADER = "X-Activity-As-Of-Seq"
Text = Annotated[str | None, Query(max_length=4000)]


async def activity_filter(
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
    """The contract's filters (comma = OR inside one, AND across them). Parsing only, no I/O: on the event
    loop, not a worker thread."""
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
def list_activity(caller: LogReader, db: Db, f: Filter, limit: Limit = 50, cursor: Cursor = None) -> Response:
    return json_page(*entries_page(db, caller.account_id, f, cursor=cursor, limit=limit))


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
    as_of = log_export(uow, f, format)
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    name = export_filename(caller.account_id, f, format)
    manifest_url = request.url.replace(path=request.url.path + "/manifest").include_query_params(
        as_of_seq=as_of
    )
    return StreamingResponse(
        stream(db, caller.account_id, f, format, as_of),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            AS_OF_HEADER: str(as_of),
            "Link": f'<{manifest_url}>; rel="describedby"',
        },
    )


@router.get("/export/manifest", response_model=ManifestOut)
def export_manifest(
    caller: LogReader,
    request: Request,
    db: Db,
    f: Filter,
    as_of_seq: Annotated[int, Query(ge=1, le=MAX_SEQ, description=f"the export's {AS_OF_HEADER} header")],
    format: Annotated[Literal["csv", "jsonl"], Query()] = "csv",
) -> dict[str, Any]:
    """The signed manifest of an export: which rows the slice held as of ``as_of_seq``, and a checkpoint."""
    return manifest(db, get_signer(request), caller.account_id, f, format, as_of_seq)


@router.get("/checkpoints", response_model=Page[CheckpointOut])
def list_checkpoints(caller: LogReader, db: Db, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    """Signed checkpoints of this account's chain head, newest first."""
    before = decode_cursor(cursor)
    stmt = select(Checkpoint).where(Checkpoint.account_id == caller.account_id)
    if before is not None:
        stmt = stmt.where(Checkpoint.seq < before)
    with db.reader() as session:
        rows = list(session.scalars(stmt.order_by(Checkpoint.seq.desc()).limit(limit + 1)))
    data = [checkpoint_to_api(r) for r in rows[:limit]]
    return {"data": data, "next_cursor": encode_cursor(data[-1]["seq"]) if len(rows) > limit else None}


@router.get("/checkpoints/public-key", response_model=PublicKeysOut)
def public_key(request: Request, db: Db) -> dict[str, Any]:
    """Every key that has signed checkpoints (public halves only): publish, pin and verify with them.
    Public on purpose: an auditor must be able to fetch it without an account."""
    signer = get_signer(request)
    with db.reader() as session:
        known = session.get(SigningKey, signer.key_id) is not None
    if not known:
        with db.writer() as session:
            register_key(session, signer)
            session.commit()
    with db.reader() as session:
        keys = list(session.scalars(select(SigningKey).order_by(SigningKey.created_at)))
    return {
        "current": signer.key_id,
        "keys": [
            {
                "id": k.id,
                "algorithm": "Ed25519",
                "public_key": k.public_key,
                "pem": public_pem(k.public_key),
                "created_at": k.created_at,
                "retired_at": k.retired_at,
            }
            for k in keys
        ],
    }


@router.get("/verify", response_model=VerifyOut, response_model_exclude_none=True)
def verify(caller: LogReader, db: Db) -> dict[str, Any]:
    with db.reader() as session:
        return verify_account(session, caller.account_id).as_api()


@router.get("/{seq}", response_model=EntryOut)
def get_entry(seq: int, caller: LogReader, db: Db) -> dict[str, Any]:
    return one_entry(db, caller.account_id, seq)
