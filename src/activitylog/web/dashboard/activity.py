"""The Activity page: the log filtered by actor, action, resource, window and text, newest first.

Its query string is the API's filter (plus ``window`` for the relative presets), so a URL is a shareable
view and the Export link downloads exactly the slice on screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select

from activitylog.db.models import ApiKey, ReputationRule, User
from activitylog.errors import InvalidInput
from activitylog.log.actions import ACTIONS, ACTOR_TYPES, RESOURCE_TYPES, VERBS
from activitylog.log.query import entries_page, one_entry, parse_filter
from activitylog.web.dashboard.links import resource_link
from activitylog.web.dashboard.render import PageRoute, ViewerDep, page, redirect
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
FILTER_FIELDS = ("actor", "actor_type", "action", "resource_type", "resource_id", "ip", "since", "until", "q")
PAGE_PARAMS = (*FILTER_FIELDS, "window", "cursor", "fragment")
SYSTEM_ACTORS = (("scheduler", "Scheduler"), ("dispatcher", "Dispatcher"), ("cli", "Command line"))


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


def _rows(request: Request, viewer: ViewerDep, params: dict[str, str], cursor: str | None) -> dict[str, Any]:
    entries, next_cursor = entries_page(
        get_db(request), viewer.account_id, parse_filter(**params), cursor=cursor, limit=PAGE_SIZE
    )
    return {"entries": entries, "next_cursor": next_cursor}


@router.get("/activity")
def activity_page(
    request: Request,
    viewer: ViewerDep,
    window: Annotated[str | None, Query(max_length=10)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    fragment: Annotated[bool, Query()] = False,
) -> Response:
    viewer.require("activity:read")
    # An unknown or repeated parameter is refused, as by the API; an empty one is what a form submitted
    # without script sends for "any", so it is dropped by sending the browser to the URL without it.
    check_query(request, PAGE_PARAMS, empty_ok=PAGE_PARAMS)
    if any(not value.strip() for value in request.query_params.values()):
        kept = [(k, v) for k, v in request.query_params.multi_items() if v.strip()]
        return redirect("/activity" + (f"?{urlencode(kept)}" if kept else ""))
    # The API's filter parameters, read as given (parse_filter validates them, naming each one).
    given = {name: request.query_params.get(name) for name in FILTER_FIELDS}
    params = {k: v.strip() for k, v in given.items() if v and v.strip()}
    if window and "since" not in params:
        params["since"] = resolve_window(window, datetime.now(UTC)) or ""
    result = _rows(request, viewer, params, cursor)
    shown = {k: v for k, v in given.items() if v}
    if window:
        shown["window"] = window
    more_url = None
    if result["next_cursor"]:
        more_url = "/activity?" + urlencode({**shown, "cursor": result["next_cursor"]})
    template = "_activity_rows.html" if fragment else "activity.html"
    return page(
        request,
        template,
        viewer=viewer,
        entries=result["entries"],
        more_url=more_url,
        filters=shown,
        filtered=bool(params),
        deeper=cursor is not None,
        export_url="/api/v1/activity/export?" + urlencode(params),
        actors=actor_choices(get_db(request), viewer.account_id),
        actions=action_choices(),
        actor_types=ACTOR_TYPES,
        resource_types=RESOURCE_TYPES,
        windows=tuple(WINDOWS),
        link=resource_link,
    )


@router.get("/activity/{seq}")
def entry_page(seq: int, request: Request, viewer: ViewerDep) -> Response:
    viewer.require("activity:read")
    entry = one_entry(get_db(request), viewer.account_id, seq)
    return page(request, "entry.html", viewer=viewer, entry=entry, link=resource_link)
