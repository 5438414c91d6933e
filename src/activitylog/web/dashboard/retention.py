"""The Retention page (owners and admins; members never see it): how long the log keeps entries, the legal
holds that keep them regardless, the purge history, and the erasure of a subscriber behind a confirmation.
Every change goes through the services the API uses (``services.accounts``, ``services.retention``,
``services.erasure``) in the viewer's unit of work, so it is logged with the session as its actor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select

from activitylog.db.models import MIN_RETENTION_DAYS, LegalHold
from activitylog.errors import DomainError, InvalidInput, NotFound
from activitylog.log.query import entries_page, one_entry, parse_filter
from activitylog.services import accounts, erasure, retention
from activitylog.web.api.legal_holds import LegalHoldIn
from activitylog.web.dashboard.catalog import FormField, cleaned, validated
from activitylog.web.dashboard.render import (
    FormDep,
    PageRoute,
    Viewer,
    ViewerDep,
    current_viewer,
    page,
    redirect,
    whole_number,
)
from activitylog.web.deps import get_db

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PERMISSION = "holds:manage"  # owners and admins: who may see the page at all
RETENTION, ERASE = "account:manage", "subscribers:erase"
HoldId = Annotated[str, Path(max_length=40)]
SHOWN = 50
HOLD_FIELDS = (
    FormField("reason", "Reason", required=True),
    FormField("since", "Held from", "datetime"),
    FormField("until", "Held until", "datetime"),
)
NOTICES = {
    "retention": "Retention saved.",
    "hold": "Legal hold placed: nothing it covers is purged or erased until it is released.",
    "released": "Legal hold released.",
}


def _history(request: Request, viewer: Viewer, action: str) -> list[dict[str, Any]]:
    """The newest entries of one action (purge runs, erasures), as the activity list shows them."""
    rows, _ = entries_page(
        get_db(request), viewer.account_id, parse_filter(action=action), cursor=None, limit=SHOWN
    )
    return rows


def _holds(request: Request, viewer: Viewer) -> list[LegalHold]:
    """Every active hold (none may go unseen: each one stops the purge), then the latest released ones."""
    active, released = LegalHold.released_at.is_(None), LegalHold.released_at.is_not(None)
    mine = select(LegalHold).where(LegalHold.account_id == viewer.account_id)
    with get_db(request).reader() as session:
        held = list(session.scalars(mine.where(active).order_by(LegalHold.id.desc())))
        gone = session.scalars(mine.where(released).order_by(LegalHold.released_at.desc()).limit(SHOWN))
        return held + list(gone)


def _erased(request: Request, viewer: Viewer, seq: int | None) -> dict[str, Any] | None:
    """The ``contact.erase`` entry a finished erasure redirected with (its body holds no personal data)."""
    if seq is None:
        return None
    entry = one_entry(get_db(request), viewer.account_id, seq)
    if entry["action"] != "contact.erase":
        raise NotFound(f"seq {seq} is not an erasure")
    return entry


def settings_page(
    request: Request,
    viewer: Viewer,
    *,
    error: DomainError | None = None,
    failed: str = "",
    values: dict[str, Any] | None = None,
    notice: str | None = None,
    erased_seq: int | None = None,
) -> Response:
    db = get_db(request)
    account = accounts.get_account(db, viewer.account_id)
    return page(
        request,
        "retention.html",
        status_code=error.status if error else 200,
        viewer=viewer,
        days=account.log_retention_days,
        cutoff=datetime.now(UTC) - timedelta(days=account.log_retention_days),
        limits=(MIN_RETENTION_DAYS, retention.MAX_RETENTION_DAYS),
        holds=_holds(request, viewer),
        hold_fields=HOLD_FIELDS,
        purges=_history(request, viewer, "activity_log.purge"),
        erasures=_history(request, viewer, "contact.erase"),
        erased=_erased(request, viewer, erased_seq),
        error=error,
        failed=failed,
        values=values or {},
        notice=notice,
        can_retain=viewer.can(RETENTION),
        can_erase=viewer.can(ERASE),
    )


@router.get("/retention")
def show_settings(
    request: Request,
    viewer: ViewerDep,
    saved: Annotated[str | None, Query(max_length=20)] = None,
    erased: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    viewer.require(PERMISSION)
    if saved is not None and saved not in NOTICES:
        raise InvalidInput("saved", "not a notice of this page")
    return settings_page(request, viewer, notice=NOTICES.get(saved or ""), erased_seq=erased)


@router.post("/retention")
def change_retention(request: Request, form: FormDep) -> Response:
    viewer = current_viewer(request)
    viewer.require(PERMISSION)
    viewer.require(RETENTION)
    text = str(form.get("log_retention_days") or "").strip()
    try:
        days = whole_number(text, "log_retention_days", "must be a whole number of days")
        accounts.update_account(viewer.uow(request), log_retention_days=days)
    except DomainError as exc:
        return settings_page(request, viewer, error=exc, failed="retention", values=form)
    return redirect("/retention?saved=retention")


@router.post("/retention/holds")
def create_hold(request: Request, form: FormDep) -> Response:
    viewer = current_viewer(request)
    viewer.require(PERMISSION)
    try:
        body: LegalHoldIn = validated(LegalHoldIn, cleaned(HOLD_FIELDS, form, editing=False))
        retention.create_hold(viewer.uow(request), reason=body.reason, since=body.since, until=body.until)
    except DomainError as exc:
        return settings_page(request, viewer, error=exc, failed="hold", values=form)
    return redirect("/retention?saved=hold")


@router.post("/retention/holds/{hold_id}/release")
def release_hold(hold_id: HoldId, request: Request, _form: FormDep) -> Response:
    viewer = current_viewer(request)
    viewer.require(PERMISSION)
    try:
        retention.release_hold(viewer.uow(request), hold_id)
    except DomainError as exc:
        return settings_page(request, viewer, error=exc, failed="holds")
    return redirect("/retention?saved=released")


@router.post("/retention/erasures")
def erase(request: Request, form: FormDep) -> Response:
    """Erase only when the address was typed twice alike: the confirmation is checked here, not only by
    the browser's dialog. A refused erasure shows the form again without the address."""
    viewer = current_viewer(request)
    viewer.require(PERMISSION)
    viewer.require(ERASE)
    email, again = (str(form.get(name) or "").strip() for name in ("email", "confirm"))
    try:
        if again.lower() != erasure.normalized(email):
            raise InvalidInput("confirm", "type the same address again to confirm the erasure")
        done = erasure.erase_subscriber(viewer.uow(request), email)
    except DomainError as exc:
        return settings_page(request, viewer, error=exc, failed="erasure")
    return redirect(f"/retention?erased={done.entry_seq}")
