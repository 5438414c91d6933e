"""Erasure of a subscriber's personal data (owners, admins, keys with ``full``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from activitylog.services import erasure
from activitylog.services.uow import UnitOfWork
from activitylog.web.api import ERROR_RESPONSES
from activitylog.web.deps import uow_for
from activitylog.web.schemas import Input

router = APIRouter(prefix="/api/v1/erasures", tags=["retention"], responses=ERROR_RESPONSES)

EraseUow = Annotated[UnitOfWork, Depends(uow_for("subscribers:erase"))]


class ErasureIn(Input):
    email: str = Field(min_length=3, max_length=erasure.MAX_ADDRESS, description="the subscriber's address")


class ErasureOut(BaseModel):
    id: str = Field(description="the pseudonym the erased entries show as the address's resource id")
    entries_erased: int = Field(description="entries whose personal values were erased")
    contacts_deleted: int
    suppression_deleted: bool
    entry_seq: int = Field(description="the erasure's own entry, contact.erase")


@router.post("", response_model=ErasureOut, status_code=201)
def erase(body: ErasureIn, uow: EraseUow) -> ErasureOut:
    """Remove the address, names and other fields from the account's tables and from every entry that holds
    them; the chain, tree, checkpoints and proofs still verify. 404 if the address is nowhere, 409 naming the
    legal hold that covers one of its entries."""
    return ErasureOut(**erasure.erase_subscriber(uow, body.email).as_api())
