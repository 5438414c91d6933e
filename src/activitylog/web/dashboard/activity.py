"""The Activity page: the log filtered by actor, action, resource, window and text, newest first.

Its query string is the API's filter (plus ``window`` for the relative presets), so a URL is a shareable
view; the form's Export CSV button submits the form as it stands (applied or not) to ``/activity/export``,
which sends the browser to the API's export of exactly that slice. A filter value the log refuses keeps the
form as typed, with the message beside its field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select

from activitylog.db.models import ApiKey, ReputationRule, User
from activitylog.errors import InvalidInput
from activitylog.log.actions import ACTIONS, ACTOR_TYPES, RESOURCE_TYPES, VERBS
from activitylog.log.filters import BY_NAME, NAMES
from activitylog.log.neighbours import neighbours
from activitylog.log.query import ActivityFilter, encode_cursor, entries_page, one_entry, parse_filter
from activitylog.log.timeline import summarize
from activitylog.web.dashboard.links import actor_link, resource_link
from activitylog.web.dashboard.render import PageRoute, Viewer, ViewerDep, page, redirect
from activitylog.web.dashboard.timeline import facets_view, timeline_view
from activitylog.web.deps import get_db
from activitylog.web.params import check_query

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE_SIZE = 50
WINDOWS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
FILTER_FIELDS = NAMES  # log/filters.py
PAGE_PARAMS = (*FILTER_FIELDS, "window", "cursor", "fragment")
EXPORT_PARAMS = (*FILTER_FIELDS, "window")
SYSTEM_ACTORS = (("scheduler", "Scheduler"), ("dispatcher", "Dispatcher"), ("cli", "Command line"))


PageExtra = Callable[[Request, Viewer, dict[str, str] | None, ActivityFilter | None], dict[str, Any]]
PAGE_EXTRAS: list[PageExtra] = []
"""What other modules add to the page's context (saved views, the downloads), registered when they are
imported; each gets the applied filter, or None when the form's filter was refused."""


def with_extras(
    request: Request, viewer: Viewer, params: dict[str, str] | None, f: ActivityFilter | None
) -> dict[str, Any]:
    context: dict[str, Any] = {}
    for extra in PAGE_EXTRAS:
        context.update(extra(request, viewer, params, f))
    return context


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


def actor_choices(db: Any, account_id: str) -> list[tuple[str, list[Choice]]]:
    """Who can appear in this account's log: its users, keys and rules, and the system's workers."""
    with db.reader() as session:
        users = session.execute(
            select(User.id, User.email).where(User.account_id == account_id).order_by(User.email)
        ).all()
        keys = session.execute(
            select(ApiKey.id, ApiKey.name).where(ApiKey.account_id == account_id).order_by(ApiKey.name)
        ).all()
        rules = session.execute(
            select(ReputationRule.id, ReputationRule.name)
            .where(ReputationRule.account_id == account_id)
            .order_by(ReputationRule.name)
        ).all()
    return [
        ("Users", [Choice(u.id, u.email) for u in users]),
        # A closed menu shows the label alone: it names the kind, and the id tells same-named ones apart.
        ("API keys", [Choice(k.id, f"API key: {k.name} ({k.id})") for k in keys]),
        ("Reputation rules", [Choice(r.id, f"Rule: {r.name} ({r.id})") for r in rules]),
        ("System", [Choice(v, label) for v, label in SYSTEM_ACTORS]),
    ]


def action_choices() -> list[tuple[str, list[Choice]]]:
    groups = [("Any resource", [Choice(v, v.replace("_", " ")) for v in VERBS])]
    for rtype, verbs in ACTIONS.items():
        options = [Choice(f"{rtype}.*", f"{rtype} (any)")]
        options += [Choice(f"{rtype}.{v}", f"{rtype}.{v}") for v in verbs]
        groups.append((rtype.replace("_", " "), options))
    return groups


def resolve_window(window: str | None, now: datetime) -> str | None:
    """A preset window as the ISO ``since`` it means at this moment."""
    if not window or window == "custom":  # custom: the range is in since/until
        return None
    if window not in WINDOWS:
        raise InvalidInput("window", f"one of {', '.join(WINDOWS)}")
    return (now - WINDOWS[window]).isoformat(timespec="seconds").replace("+00:00", "Z")


def given_filter(request: Request) -> dict[str, str]:
    """The filters as the form or URL gave them (empty ones dropped), ``window`` turned into ``since``."""
    params = {k: v.strip() for k in FILTER_FIELDS if (v := request.query_params.get(k)) and v.strip()}
    window = request.query_params.get("window")
    if window and "since" not in params:
        params["since"] = resolve_window(window, datetime.now(UTC)) or ""
    return params


def _without_empties(request: Request, path: str) -> Response | None:
    """A form submitted without script sends every field, empty for "any": the browser is sent to the URL
    without them, so the URL a view is shared by holds only the filters in use."""
    if any(not value.strip() for value in request.query_params.values()):
        kept = [(k, v) for k, v in request.query_params.multi_items() if v.strip()]
        return redirect(path + (f"?{urlencode(kept)}" if kept else ""))
    return None


@dataclass(frozen=True)
class Behalf:
    """Whom an entry's work was for, as the page shows it: a name and, when it has one, its page."""

    ref: str
    type: str
    name: str
    href: str | None


def behalf_of(db: Any, account_id: str, refs: set[str]) -> dict[str, Behalf]:
    """The users, keys and rules that ``on_behalf_of`` refs name, found in one query per kind."""
    ids: dict[str, set[str]] = {}
    for ref in refs:
        kind, _, ident = ref.partition(":")
        ids.setdefault(kind, set()).add(ident)
    names: dict[str, str] = {}
    lookups = (("session", User.id, User.email), ("api_key", ApiKey.id, ApiKey.name))
    with db.reader() as session:
        for kind, key, label in (*lookups, ("rule", ReputationRule.id, ReputationRule.name)):
            if ids.get(kind):
                model = key.class_
                found = session.execute(
                    select(key, label).where(model.account_id == account_id, key.in_(ids[kind]))
                ).all()
                names.update((f"{kind}:{i}", n) for i, n in found)
    out = {}
    for ref in refs:
        kind, _, ident = ref.partition(":")
        known = ref in names
        out[ref] = Behalf(ref, kind, names.get(ref, ident), actor_link(kind, ident) if known else None)
    return out


def _behalf_for(request: Request, viewer: ViewerDep, entries: list[dict[str, Any]]) -> dict[str, Behalf]:
    refs = {e["on_behalf_of"] for e in entries if e["on_behalf_of"]}
    return behalf_of(get_db(request), viewer.account_id, refs) if refs else {}


@router.get("/activity")
def activity_page(
    request: Request,
    viewer: ViewerDep,
    window: Annotated[str | None, Query(max_length=10)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    fragment: Annotated[bool, Query()] = False,
) -> Response:
    viewer.require("activity:read")
    # An unknown or repeated parameter is refused, as by the API; an empty one means "any".
    check_query(request, PAGE_PARAMS, empty_ok=PAGE_PARAMS)
    if (bare := _without_empties(request, "/activity")) is not None:
        return bare
    shown = {k: v for k in FILTER_FIELDS if (v := request.query_params.get(k))}
    if window:
        shown["window"] = window
    actors = actor_choices(get_db(request), viewer.account_id)
    context: dict[str, Any] = {
        "viewer": viewer,
        "filters": shown,
        "fields": BY_NAME,
        "errors": {},
        "actors": actors,
        "actor_values": {c.value for _, choices in actors for c in choices},
        "actions": action_choices(),
        "actor_types": ACTOR_TYPES,
        "resource_types": RESOURCE_TYPES,
        "windows": tuple(WINDOWS),
        "link": resource_link,
        "behalf": {},
        "entries": [],
        "more_url": None,
        "deeper": cursor is not None,
        "timeline": None,
        "facets": [],
        "entry_query": f"?{urlencode(shown)}" if shown else "",  # each entry's page keeps the filter
    }
    try:
        params = given_filter(request)
        f = parse_filter(**params)
    except InvalidInput as exc:
        # The form stays as typed, the message (which names the parameter, as the label does) beside its
        # field, or above the form for the others.
        field = exc.field if exc.field in (*FILTER_FIELDS, "window") else "form"
        context.update(errors={field: exc.message}, filtered=True, **with_extras(request, viewer, None, None))
        return page(request, "activity.html", status_code=exc.status, **context)
    entries, next_cursor = entries_page(get_db(request), viewer.account_id, f, cursor=cursor, limit=PAGE_SIZE)
    if next_cursor:
        context["more_url"] = "/activity?" + urlencode({**shown, "cursor": next_cursor})
    context.update(entries=entries, filtered=bool(params), behalf=_behalf_for(request, viewer, entries))
    if fragment:  # "Load more": the rows alone
        return page(request, "_activity_rows.html", **context)
    # the timeline and facet counts of the same filter (web/dashboard/timeline.py)
    try:
        summary = summarize(get_db(request), viewer.account_id, f, None, datetime.now(UTC))
    except InvalidInput:  # a window no bucket fits (centuries): the rows without a timeline
        summary = None
    if summary is not None:
        context.update(timeline=timeline_view(summary, shown), facets=facets_view(summary, shown))
    context.update(with_extras(request, viewer, params, f))
    return page(request, "activity.html", **context)


@router.get("/activity/export")
def export_form(request: Request, viewer: ViewerDep) -> Response:
    """The filter form as it stands, to the API's export of that slice (the session's cookie reads it)."""
    viewer.require("activity:read")
    check_query(request, EXPORT_PARAMS, empty_ok=EXPORT_PARAMS)
    if (bare := _without_empties(request, "/activity/export")) is not None:
        return bare
    params = given_filter(request)
    parse_filter(**params)  # a refused value is an error page here, before any export is logged
    return redirect("/api/v1/activity/export?" + urlencode({**params, "format": "csv"}))


def scheduled_in(db: Any, account_id: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    """For the scheduler's send of a broadcast: the schedule entry, before it, that set it up."""
    if entry["action"] != "broadcast.send" or not entry["on_behalf_of"]:
        return None
    f: ActivityFilter = parse_filter(
        resource_type="broadcast", resource_id=entry["resource"]["id"], action="broadcast.schedule"
    )
    found, _ = entries_page(db, account_id, f, cursor=encode_cursor(entry["seq"]), limit=1)
    return found[0] if found else None


def dispatched_after(db: Any, account_id: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    """For the dispatcher's update of a broadcast (its delivery finished): the send entry that started it."""
    if entry["actor"]["type"] != "system" or entry["actor"]["id"] != "dispatcher":
        return None
    if entry["resource"]["type"] != "broadcast":
        return None
    f = parse_filter(resource_type="broadcast", resource_id=entry["resource"]["id"], action="broadcast.send")
    found, _ = entries_page(db, account_id, f, cursor=encode_cursor(entry["seq"]), limit=1)
    return found[0] if found else None


@dataclass(frozen=True)
class Step:
    """The entries before and after one, in the whole log and within the filter it was opened from."""

    older: int | None
    newer: int | None
    older_in_filter: int | None
    newer_in_filter: int | None
    query: str  # the filter as the URL carried it ("" for none)


def steps(db: Any, account_id: str, seq: int, request: Request) -> Step:
    params = given_filter(request)
    everything = neighbours(db, account_id, seq, parse_filter())
    within = neighbours(db, account_id, seq, parse_filter(**params)) if params else (None, None)
    shown = {k: v for k, v in request.query_params.items() if v.strip()}
    return Step(*everything, *within, query=f"?{urlencode(shown)}" if params else "")


@router.get("/activity/{seq}")
def entry_page(seq: int, request: Request, viewer: ViewerDep) -> Response:
    viewer.require("activity:read")
    # The filter the entry was opened from, carried in the URL (the activity page's parameters).
    check_query(request, EXPORT_PARAMS, empty_ok=EXPORT_PARAMS)
    db = get_db(request)
    entry = one_entry(db, viewer.account_id, seq)
    return page(
        request,
        "entry.html",
        viewer=viewer,
        entry=entry,
        link=resource_link,
        behalf=_behalf_for(request, viewer, [entry]),
        scheduled_in=scheduled_in(db, viewer.account_id, entry),
        dispatched_after=dispatched_after(db, viewer.account_id, entry),
        step=steps(db, viewer.account_id, seq, request),
    )
