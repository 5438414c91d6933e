"""Sending domains."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from activitylog.db.models import SendingDomain
from activitylog.services import sending_domains
from activitylog.services.listing import one, page
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit
from activitylog.web.deps import Db, Reader, WriteUow
from activitylog.web.schemas import DomainIn, DomainOut, DomainPatch, Page

router = APIRouter(prefix="/api/v1/sending-domains", tags=["sending domains"], responses=ERROR_RESPONSES)


@router.get("", response_model=Page[DomainOut])
def list_domains(caller: Reader, db: Db, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    rows, next_cursor = page(db, SendingDomain, caller.account_id, limit=limit, cursor=cursor)
    return {"data": rows, "next_cursor": next_cursor}


@router.get("/{domain_id}", response_model=DomainOut)
def get_domain(domain_id: str, caller: Reader, db: Db) -> Any:
    return one(db, SendingDomain, caller.account_id, domain_id, "sending domain")


@router.post("", response_model=DomainOut, status_code=201)
def create_domain(body: DomainIn, uow: WriteUow) -> SendingDomain:
    return sending_domains.create_domain(uow, body.domain)


@router.patch("/{domain_id}", response_model=DomainOut)
def patch_domain(domain_id: str, body: DomainPatch, uow: WriteUow) -> SendingDomain:
    return sending_domains.update_domain(uow, domain_id, body.changes())


@router.delete("/{domain_id}", status_code=204)
def delete_domain(domain_id: str, uow: WriteUow) -> Response:
    sending_domains.delete_domain(uow, domain_id)
    return Response(status_code=204)


@router.post("/{domain_id}/verify", response_model=DomainOut)
def verify_domain(domain_id: str, uow: WriteUow) -> SendingDomain:
    return sending_domains.verify_domain(uow, domain_id)
