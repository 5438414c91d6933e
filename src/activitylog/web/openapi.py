"""The OpenAPI schema as its readers need it: every parameter described, both ways to authenticate declared
(``web/deps.py``), and the interactive docs served from this process — their assets come from the
``fastapi-offline`` package, so ``/docs`` and ``/redoc`` work on a machine with no internet.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

DOCS_ASSETS = "/docs/assets"

PATH_PARAMETERS = {
    "account_id": "The account's id (`acc_…`).",
    "broadcast_id": "The broadcast's id (`brd_…`).",
    "contact_id": "The contact's id (`con_…`).",
    "domain_id": "The sending domain's id (`dom_…`).",
    "email": "The suppressed address (case-insensitive).",
    "key_id": "The API key's public id (`key_…`).",
    "list_id": "The list's id (`lst_…`).",
    "rule_id": "The reputation rule's id (`rul_…`).",
    "segment_id": "The segment's id (`seg_…`).",
    "seq": "The entry's sequence number in the account's log (1, 2, …).",
    "stream_id": "The stream's id.",
    "user_id": "The user's id (`usr_…`).",
}
"""What each path parameter names, for the operations whose route does not say."""


def schema(app: FastAPI) -> dict[str, Any]:
    """The app's schema, built once, with a description for every path parameter the routes leave bare."""
    if app.openapi_schema is None:
        built = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for operations in built.get("paths", {}).values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter.get("in") == "path" and not parameter.get("description"):
                        name = parameter["name"]
                        parameter["description"] = PATH_PARAMETERS.get(name, name.replace("_", " "))
        app.openapi_schema = built
    return app.openapi_schema


def install(app: FastAPI) -> None:
    app.openapi = lambda: schema(app)  # type: ignore[method-assign]
