"""Alerts: what the detectors found, and the account's alert policy (API.md part 2, "Alerts")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, Field

from activitylog.alerts import policy, store
from activitylog.alerts.policy import ALL_KINDS, Policy
from activitylog.services.auth import Principal
from activitylog.services.uow import UnitOfWork
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit
from activitylog.web.deps import Db, allowed, uow_for
from activitylog.web.schemas import Page

router = APIRouter(tags=["alerts"], responses=ERROR_RESPONSES)

Readers = Annotated[Principal, Depends(allowed("alerts:read"))]
AlertsUow = Annotated[UnitOfWork, Depends(uow_for("alerts:manage"))]
PolicyUow = Annotated[UnitOfWork, Depends(uow_for("alert_policy:manage"))]
Kind = Literal[ALL_KINDS]  # type: ignore[valid-type]


class AlertActor(BaseModel):
    type: str
    id: str
    name: str | None


class AlertOut(BaseModel):
    id: str = Field(description="`alr_…`")
    kind: str = Field(description="the detector that raised it: " + ", ".join(f"`{k}`" for k in ALL_KINDS))
    status: Literal["open", "acknowledged"]
    raised_at: datetime
    actor: AlertActor | None = Field(description="who acted, when the alert is about one actor")
    ip: str | None
    summary: str
    figures: dict[str, Any] = Field(description="the numbers the detector acted on")
    seqs: list[int] = Field(description="the entries that tripped it (`GET /api/v1/activity/{seq}`)")
    acknowledged_at: datetime | None
    acknowledged_by: str | None = Field(
        description="`session:<user id>` (or `api_key:<id>`) who acknowledged it"
    )


@router.get("/api/v1/alerts", response_model=Page[AlertOut])
def list_alerts(
    caller: Readers,
    db: Db,
    status: Annotated[
        Literal["open", "acknowledged"] | None, Query(description="open or acknowledged")
    ] = None,
    kind: Annotated[Kind | None, Query(description="one detector's alerts")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The account's alerts, newest first."""
    rows, next_cursor = store.page(
        db, caller.account_id, status=status, kind=kind, limit=limit, cursor=cursor
    )
    return {"data": [store.as_api(a) for a in rows], "next_cursor": next_cursor}


@router.get("/api/v1/alerts/{alert_id}", response_model=AlertOut)
def get_alert(alert_id: Annotated[str, Path(max_length=40)], caller: Readers, db: Db) -> dict[str, Any]:
    return store.as_api(store.get(db, caller.account_id, alert_id))


@router.post("/api/v1/alerts/{alert_id}/acknowledge", response_model=AlertOut)
def acknowledge_alert(alert_id: Annotated[str, Path(max_length=40)], uow: AlertsUow) -> dict[str, Any]:
    """Mark the alert handled: an `alert.acknowledge` entry by the caller (409 if it already is)."""
    return store.as_api(store.acknowledge(uow, alert_id))


@router.get("/api/v1/alert-policy", response_model=Policy, response_model_by_alias=True)
def get_policy(caller: Readers, db: Db) -> dict[str, Any]:
    return policy.of_account(db, caller.account_id).as_api()


PolicyPatch = Annotated[
    dict[str, Any],
    Body(
        description="Only the settings to change, by detector, e.g. "
        '`{"burst.delete": {"count": 50}, "credential.new_ip": {"enabled": false}}`; '
        "owners and admins (signed in) only. Logged as an `account.update` entry.",
        max_length=20,
    ),
]


@router.patch("/api/v1/alert-policy", response_model=Policy, response_model_by_alias=True)
def patch_policy(body: PolicyPatch, uow: PolicyUow) -> dict[str, Any]:
    return policy.update(uow, body).as_api()
