"""The Streams page: where each stream's delivery stands (state, delivered seq, lag, last error), a create
form that shows the new stream's secret once, and a page per stream with pause/resume, test, replay,
delete and its recent deliveries. Every change goes through ``services.streams`` in the viewer's unit of
work, so it is logged with the session as its actor, exactly like the API's."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select

from activitylog.db.models import Stream
from activitylog.errors import DomainError, InvalidInput
from activitylog.relay.senders import Senders, send_test
from activitylog.services import streams
from activitylog.web.dashboard.links import history_link
from activitylog.web.dashboard.render import (
    FormDep,
    PageRoute,
    Viewer,
    ViewerDep,
    current_viewer,
    page,
    redirect,
    typed_filter,
    whole_number,
)
from activitylog.web.deps import get_db, get_settings

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PERMISSION = "streams:manage"
StreamId = Annotated[str, Path(max_length=40)]
A_SEQ = "a seq: a whole number from 1"
SHOWN_DELIVERIES = 25
NOTICES = {
    "created": "Created.",
    "paused": "Paused.",
    "resumed": "Resumed: delivering from where it stopped.",
    "replayed": "Replaying: the events go out again with the same ids.",
}


def _views(request: Request, viewer: Viewer) -> list[dict[str, Any]]:
    db = get_db(request)
    with db.reader() as session:
        rows = list(
            session.scalars(select(Stream).where(Stream.account_id == viewer.account_id).order_by(Stream.id))
        )
    return streams.views(db, rows)


def _filter_text(values: dict[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in values.items())


def _values(form: dict[str, Any]) -> dict[str, Any]:
    """The create form as the service takes it; the filter is written as a query string. A format or a
    signing the form does not offer is refused, not replaced by the default (only an empty one is); the
    fields of the other type (the webhook's URL and signing for NATS) are the form's, hidden, not the
    stream's."""
    kind = str(form.get("type") or "")
    from_seq = str(form.get("from_seq") or "").strip()
    return {
        "name": str(form.get("name") or "").strip() or _missing("name"),
        "type": kind if kind in streams.TYPES else _missing("type"),
        "url": (str(form.get("url") or "").strip() or None) if kind == "webhook" else None,
        "subject": (str(form.get("subject") or "").strip() or None) if kind == "nats" else None,
        "format": _offered(form, "format", streams.FORMATS) or "json",
        "filter": typed_filter(form),
        "signing": _offered(form, "signing", streams.SIGNINGS) if kind == "webhook" else None,
        "from_seq": whole_number(from_seq, "from_seq", A_SEQ) if from_seq else None,
    }


def _offered(form: dict[str, Any], field: str, choices: tuple[str, ...]) -> str | None:
    given = str(form.get(field) or "").strip()
    if given and given not in choices:
        raise InvalidInput(field, f"one of {', '.join(choices)}")
    return given or None


def _missing(field: str) -> Any:
    raise InvalidInput(field, "required")


def list_page(
    request: Request, viewer: Viewer, error: DomainError | None = None, values: dict[str, Any] | None = None
) -> Response:
    return page(
        request,
        "streams.html",
        status_code=error.status if error else 200,
        viewer=viewer,
        streams=_views(request, viewer),
        error=error,
        values=values or {},
        history_url="/activity?resource_type=stream",
    )


def detail_page(
    request: Request,
    viewer: Viewer,
    stream_id: str,
    error: DomainError | None = None,
    notice: str | None = None,
    test: dict[str, Any] | None = None,
) -> Response:
    db = get_db(request)
    stream = streams.get_stream(db, viewer.account_id, stream_id)
    return page(
        request,
        "stream.html",
        status_code=error.status if error else 200,
        viewer=viewer,
        s=streams.view(db, stream),
        filter_text=_filter_text(stream.filter),
        deliveries=streams.recent_deliveries(db, viewer.account_id, stream.id, SHOWN_DELIVERIES),
        error=error,
        notice=notice,
        test=test,
        history_url=history_link("stream", stream.id),
    )


@router.get("/streams")
def list_streams(request: Request, viewer: ViewerDep) -> Response:
    viewer.require(PERMISSION)
    return list_page(request, viewer)


@router.post("/streams")
def create_stream(request: Request, form: FormDep) -> Response:
    viewer = current_viewer(request)
    viewer.require(PERMISSION)
    try:
        created = streams.create_stream(viewer.uow(request), _values(form), get_settings(request))
    except DomainError as exc:
        return list_page(request, viewer, error=exc, values=form)
    if created.secret is None and created.stream.public_key is None:
        return redirect(f"/streams/{quote(created.stream.id, safe='')}?saved=created")
    return page(request, "stream_secret.html", status_code=201, viewer=viewer, created=created)


@router.get("/streams/{stream_id}")
def show_stream(
    stream_id: StreamId,
    request: Request,
    viewer: ViewerDep,
    saved: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    viewer.require(PERMISSION)
    return detail_page(request, viewer, stream_id, notice=NOTICES.get(saved or ""))


def _act(request: Request, stream_id: str, run: Any, saved: str) -> Response:
    viewer = current_viewer(request)
    viewer.require(PERMISSION)
    try:
        run(viewer.uow(request))
    except DomainError as exc:
        return detail_page(request, viewer, stream_id, error=exc)
    return redirect(f"/streams/{quote(stream_id, safe='')}?saved={saved}")


@router.post("/streams/{stream_id}/pause")
def pause_stream(stream_id: StreamId, request: Request, _form: FormDep) -> Response:
    return _act(request, stream_id, lambda uow: streams.pause_stream(uow, stream_id), "paused")


@router.post("/streams/{stream_id}/resume")
def resume_stream(stream_id: StreamId, request: Request, _form: FormDep) -> Response:
    return _act(request, stream_id, lambda uow: streams.resume_stream(uow, stream_id), "resumed")


@router.post("/streams/{stream_id}/replay")
def replay_stream(stream_id: StreamId, request: Request, form: FormDep) -> Response:
    text = str(form.get("from_seq") or "").strip()

    def replay(uow: Any) -> Any:
        seq = whole_number(text, "from_seq", A_SEQ)
        if seq < 1:
            raise InvalidInput("from_seq", A_SEQ)
        return streams.replay_stream(uow, stream_id, seq)

    return _act(request, stream_id, replay, "replayed")


@router.post("/streams/{stream_id}/delete")
def delete_stream(stream_id: StreamId, request: Request, _form: FormDep) -> Response:
    viewer = current_viewer(request)
    viewer.require(PERMISSION)
    try:
        streams.delete_stream(viewer.uow(request), stream_id)
    except DomainError as exc:
        return detail_page(request, viewer, stream_id, error=exc)
    return redirect("/streams")


@router.post("/streams/{stream_id}/test")
def test_stream(stream_id: StreamId, request: Request, _form: FormDep) -> Response:
    """Send one test event now and show how it went (an attempt among the deliveries, not an entry)."""
    viewer = current_viewer(request)
    viewer.require(PERMISSION)
    db = get_db(request)
    stream = streams.get_stream(db, viewer.account_id, stream_id)
    senders: Senders | None = getattr(request.app.state, "stream_senders", None)
    if senders is None:
        senders = request.app.state.stream_senders = Senders(get_settings(request))
    result = send_test(db, senders, stream)
    return detail_page(request, viewer, stream_id, test=result)
