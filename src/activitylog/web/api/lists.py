"""Lists and contacts, including bulk import from CSV or a JSON array."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from activitylog.db.models import Contact, MailingList
from activitylog.errors import InvalidInput
from activitylog.services import lists
from activitylog.services.listing import one, page
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit
from activitylog.web.deps import Db, Reader, WriteUow
from activitylog.web.errors import validation_error
from activitylog.web.schemas import ContactIn, ContactOut, ContactPatch, ImportResult, ListIn, ListOut, Page

router = APIRouter(prefix="/api/v1", tags=["lists and contacts"], responses=ERROR_RESPONSES)
MAX_IMPORT_ROWS = 10_000
MAX_IMPORT_BYTES = 5_000_000


@router.get("/lists", response_model=Page[ListOut])
def list_lists(caller: Reader, db: Db, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    rows, next_cursor = page(db, MailingList, caller.account_id, limit=limit, cursor=cursor)
    return {"data": rows, "next_cursor": next_cursor}


@router.get("/lists/{list_id}", response_model=ListOut)
def get_list(list_id: str, caller: Reader, db: Db) -> Any:
    return one(db, MailingList, caller.account_id, list_id, "list")


@router.post("/lists", response_model=ListOut, status_code=201)
def create_list(body: ListIn, uow: WriteUow) -> MailingList:
    return lists.create_list(uow, body.name)


@router.patch("/lists/{list_id}", response_model=ListOut)
def patch_list(list_id: str, body: ListIn, uow: WriteUow) -> MailingList:
    return lists.update_list(uow, list_id, body.changes())


@router.delete("/lists/{list_id}", status_code=204)
def delete_list(list_id: str, uow: WriteUow) -> Response:
    lists.delete_list(uow, list_id)
    return Response(status_code=204)


@router.get("/lists/{list_id}/contacts", response_model=Page[ContactOut])
def list_contacts(
    list_id: str, caller: Reader, db: Db, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    one(db, MailingList, caller.account_id, list_id, "list")
    rows, next_cursor = page(
        db, Contact, caller.account_id, limit=limit, cursor=cursor, where=[Contact.list_id == list_id]
    )
    return {"data": rows, "next_cursor": next_cursor}


@router.post("/lists/{list_id}/contacts", response_model=ContactOut, status_code=201)
def create_contact(list_id: str, body: ContactIn, uow: WriteUow) -> Contact:
    return lists.create_contact(uow, list_id, body.model_dump(mode="python"))


_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "maxItems": MAX_IMPORT_ROWS,
                    "items": ContactIn.model_json_schema(),
                }
            },
            "text/csv": {
                "schema": {"type": "string", "description": "header row: email,first_name,last_name"}
            },
        },
    }
}


def _csv_rows(text: str) -> list[Any]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = list(reader.fieldnames or [])
    except csv.Error as exc:
        raise InvalidInput("body", f"CSV header not readable: {exc}") from None
    if "email" not in header:
        raise InvalidInput("body", "CSV needs a header row with an 'email' column")
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise InvalidInput("body", f"CSV header names a column twice: {', '.join(twice)}")
    unknown = set(header) - {"email", "first_name", "last_name"}
    if unknown:
        raise InvalidInput("body", f"unknown CSV columns: {', '.join(sorted(unknown))}")
    rows = []
    try:
        for row in reader:
            rows.append({k: (v or None) for k, v in row.items()})
    except csv.Error as exc:
        raise InvalidInput(f"[{len(rows)}]", f"not readable as CSV: {exc}") from None
    return rows


def _import_rows(content_type: str, raw: bytes) -> list[Any]:
    if len(raw) > MAX_IMPORT_BYTES:
        raise InvalidInput("body", f"larger than {MAX_IMPORT_BYTES} bytes; split the import")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("body", "not UTF-8") from None
    if content_type.startswith("text/csv"):
        return _csv_rows(text)
    if content_type.startswith("application/json"):
        try:
            rows = json.loads(text)
        except (ValueError, RecursionError):  # nested past the parser's depth is no contact list either
            raise InvalidInput("body", "not valid JSON") from None
        if not isinstance(rows, list):
            raise InvalidInput("body", "expected a JSON array of contacts")
        return rows
    raise InvalidInput("content-type", "send text/csv or application/json")


@router.post("/lists/{list_id}/contacts/import", response_model=ImportResult, openapi_extra=_IMPORT_BODY)
async def import_contacts(list_id: str, request: Request, uow: WriteUow) -> dict[str, Any]:
    rows = _import_rows(request.headers.get("content-type", ""), await request.body())
    if not rows:
        raise InvalidInput("body", "no contacts to import")
    if len(rows) > MAX_IMPORT_ROWS:
        raise InvalidInput("body", f"at most {MAX_IMPORT_ROWS} contacts per import")
    valid = []
    for index, row in enumerate(rows):
        try:
            valid.append(ContactIn.model_validate(row).model_dump(mode="python"))
        except ValidationError as exc:
            field, message = validation_error(exc.errors()[0])
            where = f"[{index}].{field}" if field else f"[{index}]"
            raise InvalidInput(where, message.removeprefix(f"{field}: ")) from None
    result: dict[str, Any] = await run_in_threadpool(lists.import_contacts, uow, list_id, valid)
    return result


@router.get("/contacts/{contact_id}", response_model=ContactOut)
def get_contact(contact_id: str, caller: Reader, db: Db) -> Any:
    return one(db, Contact, caller.account_id, contact_id, "contact")


@router.patch("/contacts/{contact_id}", response_model=ContactOut)
def patch_contact(contact_id: str, body: ContactPatch, uow: WriteUow) -> Contact:
    return lists.update_contact(uow, contact_id, body.changes())


@router.delete("/contacts/{contact_id}", status_code=204)
def delete_contact(contact_id: str, uow: WriteUow) -> Response:
    lists.delete_contact(uow, contact_id)
    return Response(status_code=204)
