"""Query strings taken as given: a parameter an endpoint does not know, one given twice, or one given empty
is refused (422 naming it) instead of being silently dropped.

A typo such as ``?resource=dom_…`` for ``resource_id`` used to answer the whole log with 200 (and log an
export of it with an empty filter); for a log whose reader needs to know exactly which slice it got, a
filter that was not applied must never look like one that was.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import unquote_plus

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request

from activitylog.errors import InvalidInput


def check_query(request: Request, known: Collection[str], *, empty_ok: Collection[str] = ()) -> None:
    """Refuse unknown, repeated and empty parameters (every parameter here takes one value; a comma inside
    it means OR). ``empty_ok`` names those whose empty value means "not given"."""
    _refuse_bytes_not_utf8(request)
    seen: set[str] = set()
    for name, value in request.query_params.multi_items():
        if name not in known:
            raise InvalidInput(name, f"unknown parameter; this endpoint takes {', '.join(sorted(known))}")
        if name in seen:
            raise InvalidInput(name, "given more than once; give it once (separate values with commas)")
        seen.add(name)
        if not value.strip() and name not in empty_ok:
            raise InvalidInput(name, "empty; leave the parameter out or give it a value")


def _refuse_bytes_not_utf8(request: Request) -> None:
    """The query as parsed has each byte sequence that is not UTF-8 replaced (U+FFFD): a filter no entry
    can hold, which would answer an empty page as if it were a real one. Refused, naming the parameter."""
    raw = request.scope.get("query_string", b"").decode("latin-1")
    for pair in raw.split("&"):
        name, _, value = pair.partition("=")
        for part in (name, value):
            try:
                unquote_plus(part, errors="strict")
            except UnicodeDecodeError:
                raise InvalidInput(unquote_plus(name), "not valid UTF-8") from None


async def check_route_query(request: Request) -> None:
    """:func:`check_query` against the query parameters the matched route declares, its dependencies'
    included, so the set can never drift from the endpoint's signature. Async, as it does no I/O: run on
    the event loop, not handed to a worker thread on every request."""
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        check_query(request, declared_query(route))


_DECLARED = "activitylog_query_params"


def declared_query(route: APIRoute) -> frozenset[str]:
    """Computed once per route and kept on it (routes are not hashable)."""
    names: frozenset[str] | None = getattr(route, _DECLARED, None)
    if names is None:
        found: set[str] = set()
        pending: list[Dependant] = [route.dependant]
        while pending:
            dependant = pending.pop()
            found.update(field.alias for field in dependant.query_params)
            pending.extend(dependant.dependencies)
        names = frozenset(found)
        setattr(route, _DECLARED, names)
    return names
