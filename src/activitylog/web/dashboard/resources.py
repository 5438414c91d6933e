"""Account pages: a list, a create form, a detail page with edit, lifecycle actions, delete and History.

One set of routes serves every kind in :mod:`catalog`; each write builds the viewer's unit of work, so a
dashboard edit is logged with the session as its actor, exactly like the same call through the API.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select

from activitylog.errors import DomainError, NotFound
from activitylog.services.listing import decode_after, encode_after
from activitylog.web.dashboard.catalog import KINDS, Column, FormField, Kind, Ref, cleaned
from activitylog.web.dashboard.links import activity_links, history_link
from activitylog.web.dashboard.render import (
    FormDep,
    Link,
    PageRoute,
    Viewer,
    ViewerDep,
    current_viewer,
    page,
    redirect,
)
from activitylog.web.deps import get_db

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE_SIZE = 50
Slug = Annotated[str, Path(max_length=40)]
Key = Annotated[str, Path(max_length=320)]


def kind_for(slug: str, viewer: Viewer) -> Kind:
    kind = KINDS.get(slug)
    if kind is None:
        raise NotFound(f"/{slug}: no such page")
    viewer.require(kind.read_permission)
    return kind


def rows_of(
    request: Request, kind: Kind, account_id: str, cursor: str | None = None, **where: str
) -> tuple[list[Any], str | None]:
    """One page of the account's rows of this kind, by key (ULIDs: creation order)."""
    key = getattr(kind.model, kind.key)
    stmt = select(kind.model).where(kind.model.account_id == account_id)
    for name, value in where.items():
        stmt = stmt.where(getattr(kind.model, name) == value)
    after = decode_after(cursor)
    if after is not None:
        stmt = stmt.where(key > after)
    with get_db(request).reader() as session:
        rows = list(session.scalars(stmt.order_by(key).limit(PAGE_SIZE + 1)))
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return rows, encode_after(getattr(rows[-1], kind.key)) if more else None


def find(request: Request, kind: Kind, account_id: str, key: str) -> Any:
    model = kind.model
    with get_db(request).reader() as session:
        row = session.execute(
            select(model).where(model.account_id == account_id, getattr(model, kind.key) == key)
        ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{kind.noun} {key} not found")
    return row


def url_of(kind: Kind, row: Any) -> str:
    return f"/{kind.slug}/{quote(str(getattr(row, kind.key)), safe='')}"


def cells(request: Request, account_id: str, rows: list[Any], columns: tuple[Column, ...]) -> list[list[Any]]:
    """Each row's cell values, with every :class:`Ref` shown as the named resource's name, linked to its page
    (one query per kind referred to); one that no longer exists links to its history instead."""
    values = [[c.value(r) for c in columns] for r in rows]
    wanted: dict[str, set[str]] = {}
    for value in (v for row in values for v in row):
        if isinstance(value, Ref):
            wanted.setdefault(value.kind, set()).add(value.id)
    names: dict[tuple[str, str], str] = {}
    for slug, ids in wanted.items():
        model = KINDS[slug].model
        with get_db(request).reader() as session:
            found = session.execute(
                select(model.id, model.name).where(model.account_id == account_id, model.id.in_(sorted(ids)))
            ).all()
        names.update({(slug, i): name for i, name in found})

    def shown(value: Any) -> Any:
        if not isinstance(value, Ref):
            return value
        name = names.get((value.kind, value.id))
        if name is None:
            audit_type = KINDS[value.kind].audit_type
            return Link(f"{value.label} {value.id}", history_link(audit_type, value.id), after="(deleted)")
        return Link(name, f"/{value.kind}/{quote(value.id, safe='')}", before=value.label)

    return [[shown(v) for v in row] for row in values]


def options_for(request: Request, kind: Kind, viewer: Viewer) -> dict[str, list[tuple[str, str]]]:
    fields = (*kind.create_fields, *kind.edit_fields, *(f for a in kind.actions for f in a.fields))
    db = get_db(request)
    return {f.name: f.options(db, viewer.account_id) if f.options else list(f.choices) for f in fields}


def list_page(
    request: Request,
    viewer: Viewer,
    kind: Kind,
    cursor: str | None = None,
    error: DomainError | None = None,
    values: dict[str, Any] | None = None,
) -> Response:
    rows, next_cursor = rows_of(request, kind, viewer.account_id, cursor)
    return page(
        request,
        "resource_list.html",
        status_code=error.status if error else 200,
        viewer=viewer,
        kind=kind,
        rows=list(zip(rows, cells(request, viewer.account_id, rows, kind.columns), strict=True)),
        url_of=url_of,
        next_url=f"/{kind.slug}?cursor={next_cursor}" if next_cursor else None,
        options=options_for(request, kind, viewer),
        error=error,
        values=values or {},
        history_url=f"/activity?resource_type={kind.audit_type}",
    )


def detail_page(
    request: Request,
    viewer: Viewer,
    kind: Kind,
    key: str,
    error: DomainError | None = None,
    values: dict[str, Any] | None = None,
    notice: str | None = None,
) -> Response:
    row = find(request, kind, viewer.account_id, key)
    children = []
    for slug in kind.children:
        child = KINDS[slug]
        assert child.parent is not None
        child_rows, _ = rows_of(request, child, viewer.account_id, **{child.parent[0]: key})
        table = list(
            zip(child_rows, cells(request, viewer.account_id, child_rows, child.columns), strict=True)
        )
        children.append((child, table, options_for(request, child, viewer)))
    parent_url = None
    if kind.parent is not None:
        parent_url = f"/{kind.parent[1]}/{quote(getattr(row, kind.parent[0]), safe='')}"
    db = get_db(request)
    offer = kind.offer(db, viewer.account_id, row) if kind.offer else None
    facts = kind.columns + kind.details
    return page(
        request,
        "resource_detail.html",
        status_code=error.status if error else 200,
        viewer=viewer,
        kind=kind,
        row=row,
        key=key,
        url_of=url_of,
        facts=list(
            zip((c.label for c in facts), cells(request, viewer.account_id, [row], facts)[0], strict=True)
        ),
        offers=lambda name: offer is None or name in offer.actions,
        actions=[a for a in kind.actions if a.when(row) and (offer is None or a.name in offer.actions)],
        notes=offer.notes if offer else (),
        children=children,
        parent_url=parent_url,
        options=options_for(request, kind, viewer),
        error=error,
        notice=notice,
        values=values,
        panel=kind.panel(db, viewer.account_id, row) if kind.panel else None,
        history_url=history_link(kind.audit_type, str(row.audit_id)),
        activity_links=activity_links(kind.audit_type, str(row.audit_id)),
    )


@router.get("/{slug}")
def list_resources(
    slug: Slug,
    request: Request,
    viewer: ViewerDep,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> Response:
    return list_page(request, viewer, kind_for(slug, viewer), cursor)


@router.post("/{slug}")
def create_resource(slug: Slug, request: Request, form: FormDep) -> Response:
    viewer = current_viewer(request)
    kind = kind_for(slug, viewer)
    viewer.require(kind.write_permission)
    fields = kind.create_fields
    if kind.parent is not None:
        fields = (*fields, *_parent_field(kind))
    try:
        created = kind.create(viewer.uow(request), cleaned(fields, form, editing=False))
    except DomainError as exc:
        if kind.parent is not None:
            raise
        return list_page(request, viewer, kind, error=exc, values=form)
    if kind.creates_secret:
        return page(request, "secret.html", status_code=201, viewer=viewer, kind=kind, issued=created)
    if kind.parent is not None:
        return redirect(f"/{kind.parent[1]}/{quote(getattr(created, kind.parent[0]), safe='')}?saved=created")
    return redirect(url_of(kind, created) + "?saved=created")


@router.get("/{slug}/{key}")
def show_resource(
    slug: Slug,
    key: Key,
    request: Request,
    viewer: ViewerDep,
    saved: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    notice = {"created": "Created.", "updated": "Saved."}.get(saved or "")
    if saved and saved.startswith("action:"):
        notice = "Done."
    return detail_page(request, viewer, kind_for(slug, viewer), key, notice=notice)


@router.post("/{slug}/{key}")
def update_resource(slug: Slug, key: Key, request: Request, form: FormDep) -> Response:
    viewer = current_viewer(request)
    kind = kind_for(slug, viewer)
    viewer.require(kind.write_permission)
    if kind.update is None:
        raise NotFound(f"a {kind.noun} cannot be edited")
    try:
        kind.update(viewer.uow(request), key, cleaned(kind.edit_fields, form, editing=True))
    except DomainError as exc:
        return detail_page(request, viewer, kind, key, error=exc, values=form)
    return redirect(f"/{kind.slug}/{quote(key, safe='')}?saved=updated")


@router.post("/{slug}/{key}/delete")
def delete_resource(slug: Slug, key: Key, request: Request, form: FormDep) -> Response:
    viewer = current_viewer(request)
    kind = kind_for(slug, viewer)
    viewer.require(kind.write_permission)
    if kind.delete is None:
        raise NotFound(f"a {kind.noun} cannot be deleted")
    parent_url = None
    if kind.parent is not None:
        row = find(request, kind, viewer.account_id, key)
        parent_url = f"/{kind.parent[1]}/{quote(getattr(row, kind.parent[0]), safe='')}"
    try:
        kind.delete(viewer.uow(request), key)
    except DomainError as exc:
        return detail_page(request, viewer, kind, key, error=exc)
    return redirect(parent_url or f"/{kind.slug}")


@router.post("/{slug}/{key}/actions/{name}")
def act_on_resource(
    slug: Slug, key: Key, name: Annotated[str, Path(max_length=40)], request: Request, form: FormDep
) -> Response:
    viewer = current_viewer(request)
    kind = kind_for(slug, viewer)
    viewer.require(kind.write_permission)
    action = next((a for a in kind.actions if a.name == name), None)
    if action is None:
        raise NotFound(f"a {kind.noun} has no action {name!r}")
    try:
        result = action.run(viewer.uow(request), key, form)
    except DomainError as exc:
        return detail_page(request, viewer, kind, key, error=exc, values=form)
    if action.shows_secret:
        return page(request, "secret.html", viewer=viewer, kind=kind, issued=result)
    return redirect(f"/{kind.slug}/{quote(key, safe='')}?saved=action:{name}")


def _parent_field(kind: Kind) -> tuple[FormField, ...]:
    assert kind.parent is not None
    return (FormField(kind.parent[0], "Parent", required=True),)
