"""API keys (session only: a key cannot manage keys). The secret is in the create/rotate response only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from activitylog.db.models import ApiKey
from activitylog.services import api_keys
from activitylog.services.listing import one, page
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit
from activitylog.web.deps import Db, KeysReader, KeysUow
from activitylog.web.schemas import ApiKeyIn, ApiKeyIssued, ApiKeyOut, Page

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"], responses=ERROR_RESPONSES)


def _issued(issued: api_keys.IssuedKey) -> ApiKeyIssued:
    return ApiKeyIssued.model_validate(
        {**ApiKeyOut.model_validate(issued.key).model_dump(), "key": issued.secret}
    )


@router.get("", response_model=Page[ApiKeyOut])
def list_keys(caller: KeysReader, db: Db, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    rows, next_cursor = page(db, ApiKey, caller.account_id, limit=limit, cursor=cursor)
    return {"data": rows, "next_cursor": next_cursor}


@router.get("/{key_id}", response_model=ApiKeyOut)
def get_key(key_id: str, caller: KeysReader, db: Db) -> Any:
    return one(db, ApiKey, caller.account_id, key_id, "API key")


@router.post("", response_model=ApiKeyIssued, status_code=201)
def create_key(body: ApiKeyIn, uow: KeysUow) -> ApiKeyIssued:
    return _issued(api_keys.create_api_key(uow, name=body.name, scopes=list(body.scopes)))


@router.post("/{key_id}/rotate", response_model=ApiKeyIssued)
def rotate_key(key_id: str, uow: KeysUow) -> ApiKeyIssued:
    return _issued(api_keys.rotate_api_key(uow, key_id))


@router.post("/{key_id}/revoke", response_model=ApiKeyOut)
def revoke_key(key_id: str, uow: KeysUow) -> ApiKey:
    return api_keys.revoke_api_key(uow, key_id)
