"""What a refused request attempted, read off its route, and its entry (``services/refusals.py``).

One rule serves the API and the dashboard, whose paths name the same collections: ``POST /lists`` creates,
``PATCH /lists/{id}`` (the dashboard: ``POST /lists/{id}``) updates, ``DELETE /lists/{id}`` (``POST
…/{id}/delete``) deletes, ``POST /broadcasts/{id}/send`` (``POST …/{id}/actions/send``) sends. A request
whose allowed twin logs nothing (a read, a stream's test event) leaves no entry when refused either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from activitylog.log.actions import ALL_ACTIONS
from activitylog.services.auth import Refused
from activitylog.services.refusals import Attempt, log_refusal
from activitylog.web.deps import get_context, get_db

API_PREFIX = "/api/v1"
# collections not named "<type>s" (the alert policy is the account's, and logged as its update)
_TYPES = {"suppressions": "address", "activity": "activity_log", "alert-policy": "account"}
_VERBS = {  # the log's word
    ("address", "create"): "suppress",
    ("address", "delete"): "unsuppress",
    ("saved_view", "update"): "rename",  # a saved view's one change
}


def attempt_of(method: str, template: str, params: Mapping[str, Any]) -> Attempt | None:
    """The action an allowed request to this route would have logged, or None when it would log none."""
    segments = template.removeprefix(API_PREFIX).strip("/").split("/")
    parts = [str(params.get(p[1:-1], p)) if p.startswith("{") else p for p in segments]
    collection, rest = parts[0], parts[1:]
    rtype = _TYPES.get(collection, collection.replace("-", "_").removesuffix("s"))
    ident = rest[0] if rest and segments[1].startswith("{") else None  # the id the URL names, if any
    match method, rest:
        case "POST", [] if collection == "erasures":
            rtype, verb = "contact", "erase"
        case "GET", ["export"]:
            verb = "export"
        case "POST", []:
            verb = "create"
        case "PATCH", []:
            verb = "update"  # the account, the one of its kind
        case (("PATCH" | "POST"), [_]) if ident is not None:
            verb = "update"
        case ("DELETE", [_]) | ("POST", [_, "delete"]) if ident is not None:
            verb = "delete"
        case "POST", [_, "contacts"]:
            rtype, verb, ident = "contact", "create", None
        case "POST", [_, "contacts", "import"]:
            verb = "import"
        case ("POST", [_, "actions", name]) | ("POST", [_, name]) if ident is not None:
            verb = name
        case _:
            return None
    verb = _VERBS.get((rtype, verb), verb)
    if f"{rtype}.{verb}" not in ALL_ACTIONS or verb == "denied":
        return None
    return Attempt(rtype, verb, ident)


async def log_refused(request: Request, refused: Refused) -> None:
    """Log a refused request in the caller's account, off the event loop (it writes to the database)."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return
    attempt = attempt_of(request.method, template, request.path_params)
    if attempt is None:
        return
    principal = refused.principal
    await run_in_threadpool(
        log_refusal,
        get_db(request),
        principal.account_id,
        principal.actor,
        attempt,
        refused.message,
        get_context(request),
    )
