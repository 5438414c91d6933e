"""The REST API, one router per resource."""

from __future__ import annotations

from typing import Annotated, Any

import pydantic_core
from fastapi import Query, Response

from activitylog.web.schemas import ErrorOut

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size, 1-1000")]
Cursor = Annotated[str | None, Query(max_length=500, description="next_cursor of the previous page")]

_ERRORS = {
    400: "the body could not be read",
    401: "no valid session or API key",
    403: "the caller may not do this, or the CSRF token is missing",
    404: "no such resource in this account",
    409: "the resource's state or other resources do not allow it",
    413: "the body is larger than 6 MB",
    414: "the query string is longer than 16 KiB",
    422: "invalid input; the message and field name it",
    429: "too many failed sign-ins",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text} for status, text in _ERRORS.items()
}
"""Declared on every router, so the OpenAPI schema documents the error answers the API really gives."""


def json_page(data: list[dict[str, Any]], next_cursor: str | None) -> Response:
    """A page whose entries are already in the contract's shape, serialized once: returning the dict would
    have the framework validate it into models and serialize those again (about a third of a page's
    time). The route keeps its ``response_model`` for the schema; the body is the same bytes it would give."""
    body = pydantic_core.to_json({"data": data, "next_cursor": next_cursor})
    return Response(body, media_type="application/json")
