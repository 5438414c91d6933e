"""Reading the log: filtered, keyset-paginated, newest first; one entry; chain verification."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from activitylog.log.export import filename as export_filename
from activitylog.log.export import manifest, stream
from activitylog.log.filters import FILTERS
from activitylog.log.query import (
    MAX_SEQ,
    ActivityFilter,
    entries_page,
    one_entry,
    parse_filter,
)
from activitylog.services.exports import log_export
from activitylog.services.uow import UnitOfWork
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit, json_page
from activitylog.web.deps import Db, LogReader, get_context, get_signer, get_verify_runs
from activitylog.web.schemas import EntryOut, ManifestOut, Page, VerifyOut

router = APIRouter(prefix="/api/v1/activity", tags=["activity log"], responses=ERROR_RESPONSES)
AS_OF_HEADER = "X-Activity-As-Of-Seq"


def _filter_dependency() -> Callable[..., Awaitable[ActivityFilter]]:
    """The filters of ``log/filters.py`` as query parameters, each with its declared description and
    length, so the OpenAPI schema and the parsing read the one table."""

    async def activity_filter(**values: str | None) -> ActivityFilter:
        """The contract's filters (comma = OR inside one, AND across them). Parsing only, no I/O: on the
        event loop, not a worker thread. (A parameter the endpoint does not take, or one given twice or
        empty, was refused before: every API route checks its query, ``web/params.py``.)"""
        return parse_filter(**values)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter(
            spec.name,
            keyword,
            default=None,
            annotation=Annotated[str | None, Query(max_length=spec.max_length, description=spec.description)],
        )
        for spec in FILTERS
    ]
    signature = inspect.Signature(parameters, return_annotation=ActivityFilter)
    activity_filter.__signature__ = signature  # type: ignore[attr-defined]
    return activity_filter


activity_filter = _filter_dependency()


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


@router.get("/export/manifest", response_model=ManifestOut, response_model_exclude_unset=True)
def export_manifest(
    caller: LogReader,
    request: Request,
    db: Db,
    f: Filter,
    as_of_seq: Annotated[int, Query(ge=1, le=MAX_SEQ, description=f"the export's {AS_OF_HEADER} header")],
    format: Annotated[Literal["csv", "jsonl"], Query(description="the export's format")] = "csv",
) -> dict[str, Any]:
    """The signed manifest of an export: which rows the slice held as of ``as_of_seq``, and a checkpoint."""
    return manifest(db, get_signer(request), caller.account_id, f, format, as_of_seq)


@router.get("/verify", response_model=VerifyOut, response_model_exclude_none=True)
def verify(
    caller: LogReader,
    request: Request,
    mode: Annotated[
        Literal["full", "incremental"],
        Query(description="full: every entry from seq 1; incremental: the entries after the last checkpoint"),
    ] = "full",
) -> dict[str, Any]:
    """The chain and tree re-computed and checked against the last checkpoint the signer signed. One run per
    account and mode at a time: a request while one runs waits for it and gets its verdict."""
    run = get_verify_runs(request).verify(caller.account_id, incremental=mode == "incremental")
    return run.as_api()


@router.get("/{seq}", response_model=EntryOut, response_model_exclude_unset=True)
def get_entry(seq: int, caller: LogReader, db: Db) -> dict[str, Any]:
    return one_entry(db, caller.account_id, seq)
