"""Feedback from the mail transfer agent: delivered, bounced, complained. Idempotent by event id."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, EmailStr, Field, model_validator

from activitylog.services.feedback import ingest
from activitylog.web.api import ERROR_RESPONSES
from activitylog.web.deps import Context, Db, Writer
from activitylog.web.schemas import Input

router = APIRouter(prefix="/api/v1/delivery-events", tags=["delivery events"], responses=ERROR_RESPONSES)


class DeliveryEventIn(Input):
    id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
    type: Literal["delivered", "bounce", "complaint"]
    email: EmailStr
    broadcast_id: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    bounce_type: Literal["hard", "soft"] | None = None

    @model_validator(mode="after")
    def _bounce_type(self) -> DeliveryEventIn:
        if (self.type == "bounce") != (self.bounce_type is not None):
            raise ValueError("bounce_type: give it for a bounce (hard or soft), and only for a bounce")
        return self


class IngestedOut(BaseModel):
    accepted: int
    duplicates: int
    actions: int = Field(description="state changes made by reputation rules (each one logged)")


@router.post("", response_model=IngestedOut)
def post_events(
    events: Annotated[list[DeliveryEventIn], Field(min_length=1, max_length=1000)],
    caller: Writer,
    db: Db,
    context: Context,
) -> dict[str, Any]:
    rows = [e.model_dump(mode="python") for e in events]
    result = ingest(db, caller.account_id, rows, caller.actor, context)
    return {"accepted": result.accepted, "duplicates": result.duplicates, "actions": result.actions}
